"""Periodic jobs across failovers (opt-in: ``pytest -m fault tests/fault``): two schedulers keep
enqueuing a one-second job while the Sentinel primary, or the Cluster primary of its queue's slot, fails
over. Afterwards every tick is still taken once: no duplicate job id, no gap outside the failover, and
both schedulers survive it."""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timezone

import pytest

from clusterq import CronScheduler, Periodic, Queue
from clusterq.testing import Cluster, SentinelGroup

pytestmark = [pytest.mark.fault, pytest.mark.timeout(240)]
DEADLINE_S = 90.0


@pytest.fixture(scope="module")
def sentinel() -> Iterator[SentinelGroup]:
    with SentinelGroup(down_after_ms=5000) as topology:
        yield topology


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with Cluster() as topology:
        yield topology


def _tick(job_id: str) -> int:
    stamp = ":".join(job_id.rsplit(":", 3)[-3:])
    return int(datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc).timestamp())


def _wait(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def _ticks(queue: Queue) -> list[int]:
    for _ in range(50):  # the queue's node may still be settling right after the failover
        try:
            return [_tick(i) for i in queue.get_job_ids(0, 10_000) if i.startswith("cron:")]
        except Exception:  # retried; the last attempt below raises
            time.sleep(0.2)
    return [_tick(i) for i in queue.get_job_ids(0, 10_000) if i.startswith("cron:")]


def _run_through(url: str, fault: Callable[[Queue], None]) -> None:
    queue = Queue(f"cron-fault-{uuid.uuid4().hex[:8]}", url)
    job = Periodic("jobs.noop", every=1, queue=queue.name, name=f"beat-{queue.name}")
    schedulers = [CronScheduler(url, [job], install_signal_handlers=False) for _ in range(2)]
    threads = [threading.Thread(target=s.run, daemon=True) for s in schedulers]
    for thread in threads:
        thread.start()
    try:
        _wait(lambda: len(_ticks(queue)) >= 3, "three ticks before the fault")
        started = int(time.time())
        fault(queue)
        ended = int(time.time()) + 1
        _wait(lambda: len([t for t in _ticks(queue) if t > ended]) >= 4, "four ticks after the fault")
    finally:
        for s in schedulers:
            s.stop()
        for thread in threads:
            thread.join(DEADLINE_S)
    assert not any(thread.is_alive() for thread in threads)
    ticks = _ticks(queue)
    assert len(ticks) == len(set(ticks)), f"a tick was enqueued twice: {ticks}"
    gaps = [(a, b) for a, b in itertools.pairwise(ticks) if b - a != 1]
    assert all(started - 1 <= a and b <= ended + 2 for a, b in gaps), f"gap outside the failover: {gaps}"
    assert ticks == sorted(ticks)


def test_cron_ticks_survive_a_sentinel_failover(sentinel: SentinelGroup) -> None:
    sentinel.wait_healthy()
    _run_through(sentinel.url, lambda queue: sentinel.failover())


def test_cron_ticks_survive_a_cluster_failover_of_the_queues_slot(cluster: Cluster) -> None:
    cluster.wait_converged()

    def fault(queue: Queue) -> None:
        primary = cluster.node_for_slot(queue.slot)
        replica = next(node for node in cluster.replicas()
                       if int(node.info("replication").get("master_port", 0)) == primary.port)
        cluster.failover(replica)

    _run_through(cluster.url, fault)
