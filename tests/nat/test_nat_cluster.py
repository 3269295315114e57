"""A Redis Cluster behind real kernel NAT, used through clusterq's ``remap`` (docs/nat.md).

The cluster (three primaries, three replicas: :mod:`nat_network`) runs in its own network namespace and
announces addresses the test process has no route to; the test reaches it only through iptables DNAT
rules, one published port per node (where the machine has no usable iptables, through a userspace port
forwarder in the namespace instead; ``-s`` shows which). Shown here, all through the remap:

- the producer (sync and asyncio, including waiting for a result over sharded pub/sub), a worker, the
  worker's wake-up subscriptions (the worker polls only every 300 s, so a job that starts within the
  deadline was started by a wake-up message), the dashboard over HTTP and ``clusterq info``;
- the same after a primary is killed and its replica (reached through its own remap entry) takes over;
- without the remap, a clear :class:`ConnectionFailed` naming the announced address and telling what to
  do, within the client's configured timeouts, both when the announced addresses have no route (fails at
  once) and when packets to them are silently dropped (fails after ``socket_connect_timeout``).

Needs root and ``ip netns`` (and ``iptables`` for kernel NAT, which CI installs); skipped otherwise, saying
why. ``CLUSTERQ_NAT_MODE=forwarder`` forces the userspace forwarder, ``=kernel`` refuses to fall back to it.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import redis
from nat_network import KERNEL, NatCluster, choose_mode

import clusterq
from clusterq import AsyncQueue, Job, JobStatus, Queue, Worker, connect, connect_async, disconnect_async
from clusterq.connection import sync as connection_sync
from clusterq.dashboard import create_app
from clusterq.dashboard import data as dashboard_data
from clusterq.exceptions import ConnectionFailed
from clusterq.state.keys import QueueKeys
from dashboard_support import serving
from worker_thread import running

pytestmark = pytest.mark.nat

T_ = TypeVar("T_")
DEADLINE_S = 10.0
NEVER_S = 300.0  # the worker's fallback poll and maintenance: far beyond every deadline here
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def wait_for(check: Callable[[], T_], what: str, timeout_s: float = DEADLINE_S) -> T_:
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {timeout_s:g} s waiting for {what}")
        time.sleep(0.02)


@pytest.fixture(scope="module")
def nat(clusterq_server_binary: Any) -> Iterator[NatCluster]:
    mode, why = choose_mode()
    if mode is None:
        pytest.skip(why)
    cluster = NatCluster(clusterq_server_binary.path, mode=mode)
    try:
        cluster.start()
        print(f"\n[nat] through {why}")
        print(f"[nat] namespace {cluster.namespace}: nodes announce {cluster.announced(0)[0]}..{cluster.count + 10} "
              f"port 6379 (no route from here); published only at {cluster.gateway}:"
              f"{cluster.exposed(0)[1]}..{cluster.exposed(cluster.count - 1)[1]}")
        yield cluster
    finally:
        forget_clients(cluster)
        cluster.stop()
    assert not cluster.leftovers(), f"the NAT test left behind: {cluster.leftovers()}"


def forget_clients(nat: NatCluster) -> None:
    """Close the clients that connect() shared per URL for this run's URLs: nothing later in the session
    may use an address of a network that no longer exists (it would no longer be routed to this machine)."""
    for key in [k for k in connection_sync._cache if f"//{nat.gateway}:" in k[1]]:
        client = connection_sync._cache.pop(key)
        try:
            client.close()
        except Exception:
            pass


def one_queue_per_primary(nat: NatCluster, prefix: str) -> list[str]:
    """Queue names whose slots are served by every primary in turn (so every node's NAT path is used)."""
    primaries = {nat.index_of(p) for _, _, p, _ in nat.slots()}
    names: dict[int, str] = {}
    for i in range(10_000):
        name = f"{prefix}-{i}"
        names.setdefault(nat.node_for_slot(clusterq.queue_slot(name)), name)
        if set(names) == primaries:
            return [names[n] for n in sorted(names)]
    raise AssertionError("no queue name found for every primary")


def wake_subscribers(nat: NatCluster, queue: str) -> list[dict[str, Any]]:
    """The connections subscribed to ``queue``'s wake channel on the node that owns it, as that node lists
    them (CLIENT LIST): who they come from tells whether they came through the NAT."""
    channel = QueueKeys(queue).wake_channel
    node = nat.admin(nat.node_for_slot(clusterq.queue_slot(queue)))
    counts = node.execute_command("PUBSUB", "SHARDNUMSUB", channel)
    if int(counts[1]) == 0:
        return []
    return [c for c in node.client_list() if int(c.get("ssub", 0)) > 0]


def finished(job: Job) -> bool:
    return job.get_status() == JobStatus.FINISHED


def run_job(queue: Queue, *args: Any) -> Job:
    job = queue.enqueue("jobs.add", *args)
    wait_for(lambda: finished(job), f"a job on {queue.name} to finish")
    return job


def cli_info(url: str, env: dict[str, str]) -> str:
    result = subprocess.run([sys.executable, "-m", "clusterq.cli", "info", "--url", url], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"clusterq info failed: {result.stderr}"
    return result.stdout


def test_the_cluster_is_reachable_only_through_the_nat(nat: NatCluster) -> None:
    # What the nodes announce is the in-namespace "pod" address of each node...
    announced = {p for _, _, p, _ in nat.slots()} | {r for _, _, _, rs in nat.slots() for r in rs}
    assert announced <= {nat.announced(i) for i in range(nat.count)}
    # ... which the test's namespace has no route to.
    host, port = nat.announced(0)
    with pytest.raises(redis.ConnectionError, match="No route to host"):
        redis.Redis(host=host, port=port, socket_connect_timeout=2).ping()
    # Through the remap (given as a dict here, as a URL option below) every node answers, and it sees the
    # connection come from the host's side of the NAT, to its own announced address.
    client = connect(nat.url(remap=False), address_remap=nat.remap)
    assert client.ping()
    assert {n.host for n in client.get_nodes()} == {nat.gateway}
    seen = [c for c in nat.admin(nat.live()[0]).client_list() if c["addr"].startswith(nat.client_source + ":")]
    assert seen and {c["laddr"] for c in seen} == {"{}:{}".format(*nat.announced(nat.live()[0]))}
    client.close()


def test_a_remap_that_leaves_out_the_replicas_is_warned_about_at_connect(
        nat: NatCluster, caplog: pytest.LogCaptureFixture) -> None:
    """Without their entries the replicas seem fine until a failover makes one of them a primary that the
    client cannot reach; clusterq says so when it opens the client."""
    ranges = nat.slots()
    primaries = {p for _, _, p, _ in ranges}
    replicas = {r for _, _, _, rs in ranges for r in rs}
    assert replicas, "no replica listed"
    only_primaries = {a: nat.exposed(nat.index_of(a)) for a in primaries}
    with caplog.at_level("WARNING", logger="clusterq.connection.sync"):
        client = connect(nat.url(remap=False), address_remap=only_primaries)
    assert client.ping()  # the primaries serve every slot: nothing fails yet
    client.close()
    warnings = [r.getMessage() for r in caplog.records if "remap does not cover" in r.getMessage()]
    assert len(warnings) == 1, caplog.text
    assert all("{}:{}".format(*r) in warnings[0] for r in replicas), warnings[0]
    assert not any("{}:{}".format(*p) in warnings[0] for p in primaries), warnings[0]
    # The full table: no warning.
    caplog.clear()
    with caplog.at_level("WARNING", logger="clusterq.connection.sync"):
        connect(nat.url(remap=False), address_remap=nat.remap).close()
    assert "remap does not cover" not in caplog.text


@pytest.mark.timeout(90)  # the bound is the client's own timeouts (below); this only turns a hang into a failure
@pytest.mark.parametrize("network", ["unroutable", "filtered"])
def test_without_the_remap_the_error_names_the_announced_address(nat: NatCluster, network: str,
                                                                  subprocess_env: dict[str, str]) -> None:
    if network == "filtered":
        nat.filtered()  # packets to the announced addresses vanish: only socket_connect_timeout ends a connect
    try:
        url = nat.url(remap=False, socket_connect_timeout=1, socket_timeout=2)
        with pytest.raises(ConnectionFailed) as caught:
            connect(url)
        message = str(caught.value)
        print(f"\n[nat] without the remap ({network}): ConnectionFailed: {message}")
        assert f"10.77.{nat.octet}." in message, message  # the announced address that cannot be reached
        assert "remap" in message, message  # and what to do about it
        if network == "unroutable":
            assert "No route to host" in message, message
        elif nat.mode == KERNEL:
            assert "Timeout" in message or "timed out" in message, message
        else:  # no iptables to drop packets: a neighbour that never answers ARP, which the kernel gives up on
            assert "Timeout" in message or "timed out" in message or "No route to host" in message, message

        async def connect_asyncio() -> None:
            client = await connect_async(url)
            await disconnect_async(client)

        with pytest.raises(ConnectionFailed) as caught:
            asyncio.run(connect_asyncio())
        assert f"10.77.{nat.octet}." in str(caught.value) and "remap" in str(caught.value), str(caught.value)
        if network == "unroutable":
            # The same error from the first use of a queue, from a worker, and from the CLI (on stderr, failing).
            with pytest.raises(ConnectionFailed, match=rf"10\.77\.{nat.octet}\..*remap="):
                Queue("nowhere", url).enqueue("jobs.add", 1, 2)
            with pytest.raises(ConnectionFailed, match=rf"10\.77\.{nat.octet}\..*remap="):
                Worker(["nowhere"], url, install_signal_handlers=False)
            result = subprocess.run([sys.executable, "-m", "clusterq.cli", "info", "--url", url], env=subprocess_env,
                                    capture_output=True, text=True, timeout=60)
            assert result.returncode != 0
            assert f"10.77.{nat.octet}." in result.stderr and "remap=" in result.stderr, result.stderr
    finally:
        nat.unroutable()


def test_producer_worker_dashboard_and_info_through_the_nat_and_a_failover(
        nat: NatCluster, subprocess_env: dict[str, str]) -> None:
    url = nat.url(socket_connect_timeout=2, socket_timeout=10)
    names = one_queue_per_primary(nat, f"nat-{nat.token}")
    queues = [Queue(name, url) for name in names]
    worker = Worker(names, url, install_signal_handlers=False, idle_poll_s=NEVER_S, maintenance_interval_s=NEVER_S)
    with running(worker):
        # Warm up: once the second job has finished, the worker's next empty poll puts it to sleep until a
        # wake-up message (or the 300 s fallback poll).
        run_job(queues[0], 0, 0)
        run_job(queues[0], 0, 1)
        for queue in queues:
            # The worker's wake-up subscription for this queue lives on the node that owns it, and reached
            # that node through the NAT.
            subscribers = wait_for(lambda queue=queue: wake_subscribers(nat, queue.name),
                                   f"the worker's wake-up subscription for {queue.name}")
            assert any(c["addr"].startswith(nat.client_source + ":") for c in subscribers), subscribers
            # A job on an idle worker's queue starts now: a wake-up message, not the 300 s poll.
            assert run_job(queue, 20, 22).latest_result().return_value == 42

        # The sync producer waits for a result over sharded pub/sub on the owning node (remapped too).
        job = queues[1].enqueue("jobs.add", 1, 2)
        result = job.latest_result(timeout=DEADLINE_S)
        assert result is not None and result.return_value == 3

        # The asyncio client: enqueue, then wait for the result over its own pub/sub connection.
        async def produce_asyncio(name: str) -> Any:
            client = await connect_async(url)
            try:
                job = await AsyncQueue(name, client).enqueue("jobs.add", 2, 3)
                return await job.latest_result(timeout=DEADLINE_S)
            finally:
                await disconnect_async(client)

        result = asyncio.run(produce_asyncio(names[2]))
        assert result is not None and result.return_value == 5

        check_dashboard_and_info(nat, url, names, subprocess_env)

        # Fail over: kill the primary that serves names[0]; its replica, reachable only through its own
        # remap entry, takes over.
        victim = nat.node_for_slot(clusterq.queue_slot(names[0]))
        nat.kill(victim)
        promoted = nat.wait_promoted(victim)
        print(f"\n[nat] killed primary {'{}:{}'.format(*nat.announced(victim))}; replica "
              f"{'{}:{}'.format(*nat.announced(promoted))} (published as {'{}:{}'.format(*nat.exposed(promoted))}) "
              "took over")
        assert promoted >= nat.primary_count, "the new primary was a replica"
        assert nat.node_for_slot(clusterq.queue_slot(names[0])) == promoted
        # The worker lost that subscription with the node, and subscribes again on the new primary.
        subscribers = wait_for(lambda: wake_subscribers(nat, names[0]),
                               "the worker to subscribe again on the promoted replica", timeout_s=30)
        assert any(c["addr"].startswith(nat.client_source + ":") for c in subscribers), subscribers
        for queue in queues:
            assert run_job(queue, 40, 2).latest_result().return_value == 42
        assert Queue(names[0], url).count == 0
        result = asyncio.run(produce_asyncio(names[0]))  # on the promoted replica, through its remap entry
        assert result is not None and result.return_value == 5

        check_dashboard_and_info(nat, url, names, subprocess_env, promoted=promoted)


def check_dashboard_and_info(nat: NatCluster, url: str, names: list[str], env: dict[str, str],
                             promoted: int | None = None) -> None:
    # The dashboard's data layer: every queue, and on which primary (by its reachable address) it lives.
    rows = {row.name: row for row in dashboard_data.overview(connect(url)).queues}
    assert set(names) <= set(rows)
    for name in names:
        assert rows[name].counts["finished"] >= 1
    if promoted is not None:
        owner = "{}:{}".format(*nat.exposed(promoted))
        assert rows[names[0]].primary == owner, (rows[names[0]].primary, owner)
    # The dashboard over HTTP.
    with serving(create_app(url)) as base, httpx.Client(base_url=base, timeout=30) as http:
        page = http.get("/")
        assert page.status_code == 200, page.text[:500]
        for name in names:
            assert name in page.text
        page = http.get("/queue", params={"name": names[0], "state": "finished"})
        assert page.status_code == 200, page.text[:500]
        assert "jobs.add" in page.text
    # clusterq info, a separate process given the same URL.
    text = cli_info(url, env)
    for name in names:
        assert name in text


def test_the_examples_of_docs_nat_run_through_the_nat(nat: NatCluster, capsys: pytest.CaptureFixture[str]) -> None:
    """docs/nat.md's Python blocks (marked as skipped for tests/test_docs_examples.py, which has no NAT),
    run here against this run's addresses: the docs' 10.77.0.x / 10.78.0.x with this run's octet."""
    text = Path(ROOT, "docs", "nat.md").read_text()
    blocks = re.findall(r"^```python\n(.*?)^```$", text, flags=re.S | re.M)
    assert len(blocks) == 2, "docs/nat.md's examples changed: update this test"
    namespace: dict[str, Any] = {"__name__": "__main__"}
    for block in blocks:
        code = block.replace("10.77.0.", f"10.77.{nat.octet}.").replace("10.78.0.", f"10.78.{nat.octet}.")
        exec(compile(code, "docs/nat.md", "exec"), namespace)
    printed = capsys.readouterr().out.split("\n")
    assert printed[0] in ("queued", "JobStatus.QUEUED", "finished", "JobStatus.FINISHED"), printed
    assert printed[1] == "True True", printed
