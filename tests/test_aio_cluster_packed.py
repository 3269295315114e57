"""The asyncio producer's packed path on a Redis Cluster: the auto-pipeline's enqueues are packed whole and
written per primary (``AsyncStore._cluster_packed``), not through redis.asyncio's ``ClusterPipeline``.

Every test runs on the real 3-primary cluster of the test plugin, with queues whose slots cover all three
primaries. What is checked: concurrent enqueues each land as their own job with their own record (read by
the sync API, run by the sync Worker); a flushed script cache, a MOVED from a stale slot map, an error
reply for one call, a node whose connections the server closed and a task canceled mid-exchange are each
dealt with without touching the other calls; and the path is really the packed one (no
``ClusterPipeline``, a few reads per primary for a whole batch, counted by the servers).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest
import redis
from redis.asyncio.cluster import ClusterNode as AsyncClusterNode
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster

from clusterq import Job, JobStatus, Queue, Worker, queue_slot
from clusterq.api.aio_queue import AsyncQueue, AsyncStore, connect_async, disconnect_async
from clusterq.state import store as T
from clusterq.testing import Topology

pytestmark = pytest.mark.parametrize("clusterq_topology", ["cluster"], indirect=True)


def _names_on_every_primary(topology: Topology, qname: str, per_node: int = 2) -> list[str]:
    """Queue names whose slots are spread over the three primaries, ``per_node`` on each."""
    by_port: dict[int, list[str]] = {}
    for i in range(200):
        name = f"{qname}-{i}"
        port = topology.node_for_slot(queue_slot(name)).port  # type: ignore[attr-defined]
        if len(by_port.setdefault(port, [])) < per_node:
            by_port[port].append(name)
        if len(by_port) == 3 and all(len(names) == per_node for names in by_port.values()):
            return [name for names in by_port.values() for name in names]
    raise AssertionError("no queue names on every primary")


def _primary_of(topology: Topology, name: str) -> Any:
    return topology.node_for_slot(queue_slot(name))  # type: ignore[attr-defined]


def _stat(topology: Topology, section: str, field: str) -> dict[int, int]:
    """``field`` of ``INFO section`` on each primary (0 when absent), by port."""
    totals = {}
    for node in topology.primaries():  # type: ignore[attr-defined]
        value = node.admin.info(section).get(field, 0)
        totals[node.port] = int(value["calls"] if isinstance(value, dict) else value)
    return totals


def _errorstat(topology: Topology, error: str) -> dict[int, int]:
    totals = {}
    for node in topology.primaries():  # type: ignore[attr-defined]
        stats = node.admin.info("errorstats").get(f"errorstat_{error}", {})
        totals[node.port] = int(stats.get("count", 0)) if isinstance(stats, dict) else 0
    return totals


def _work(url: str, *queues: str) -> int:
    return Worker(list(queues), url, install_signal_handlers=False).work(burst=True)


def _calls(client: Any, names: list[str], job_id: str, jobs_per_call: int = 1) -> list[T.Call]:
    """An enqueue call per name (a name may come twice), each with jobs of ids of its own."""
    return [T.enqueue_call(AsyncQueue(name, client).keys,
                           [T.NewJob(id=f"{job_id}-{i}-{j}", func="jobs.noop") for j in range(jobs_per_call)])
            for i, name in enumerate(names)]


class _NoPipelineCluster(AsyncRedisCluster):
    """A cluster client whose ``ClusterPipeline`` cannot be used: a batch that went that way fails."""

    def pipeline(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        raise AssertionError("the batch went through redis.asyncio's ClusterPipeline")


def test_concurrent_async_enqueues_on_a_cluster_each_land_as_their_own_job(
        clusterq_topology: Topology, url: str, qname: str) -> None:
    names = _names_on_every_primary(clusterq_topology, qname)
    tasks, each = 100, 4

    async def scenario() -> list[tuple[str, str, int]]:
        client = await connect_async(url)
        try:
            queues = [AsyncQueue(name, client) for name in names]

            async def produce(task: int) -> list[tuple[str, str, int]]:
                done = []
                for i in range(each):
                    queue = queues[(task + i) % len(queues)]
                    job = await queue.enqueue("jobs.add", task, i)
                    done.append((queue.name, job.id, task * 1000 + i))
                return done

            return [entry for part in await asyncio.gather(*(produce(t) for t in range(tasks))) for entry in part]
        finally:
            await disconnect_async(client)

    enqueued = asyncio.run(scenario())
    assert len({job_id for _, job_id, _ in enqueued}) == tasks * each, "every enqueue got its own id"
    for name in names:
        assert Queue(name, url).count == sum(1 for queue, _, _ in enqueued if queue == name)
    for name, job_id, tag in enqueued:  # each record holds its own call, in its own queue
        job = Job.fetch(job_id, url)
        assert job.queue_name == name and job.func_name == "jobs.add"
        assert tuple(job.args) == (tag // 1000, tag % 1000)
    assert _work(url, *names) == tasks * each
    for _, job_id, tag in enqueued[::37]:
        job = Job.fetch(job_id, url)
        assert job.get_status() == JobStatus.FINISHED and job.result == tag // 1000 + tag % 1000


def test_a_batch_goes_to_each_primary_in_one_write_without_the_cluster_pipeline(
        clusterq_topology: Topology, qname: str) -> None:
    names = _names_on_every_primary(clusterq_topology, qname, per_node=30)
    seed = clusterq_topology.primaries()[0].port  # type: ignore[attr-defined]

    async def scenario() -> tuple[dict[int, int], dict[int, int], dict[int, int]]:
        client = _NoPipelineCluster(startup_nodes=[AsyncClusterNode("127.0.0.1", seed)])
        try:
            await client.initialize()
            store = AsyncStore(client)
            assert await store.run_many(_calls(client, names, "warm-up"), packed=True) == [[1]] * len(names)
            evalsha = _stat(clusterq_topology, "commandstats", "cmdstat_evalsha")
            reads = _stat(clusterq_topology, "stats", "total_reads_processed")
            assert await store.run_many(_calls(client, names, "measured"), packed=True) == [[1]] * len(names)
            after_reads = _stat(clusterq_topology, "stats", "total_reads_processed")
            after_evalsha = _stat(clusterq_topology, "commandstats", "cmdstat_evalsha")
            return ({port: after_reads[port] - reads[port] for port in reads},
                    {port: after_evalsha[port] - evalsha[port] for port in evalsha},
                    {port: sum(1 for name in names if _primary_of(clusterq_topology, name).port == port)
                     for port in reads})
        finally:
            await client.aclose()

    reads, evalsha, expected = asyncio.run(scenario())
    assert evalsha == expected and set(expected.values()) == {30}, "each call ran once, on its own primary"
    # Counted on each primary: the batch's one write (read in a few parts at most, however the socket
    # splits its 30 calls), the second INFO's own read, perhaps a replica's once-a-second REPLCONF ACK;
    # a call-by-call fallback would be 30 round trips there.
    assert all(count <= 8 for count in reads.values()), reads


def test_a_flushed_script_cache_is_recovered_on_every_primary(clusterq_topology: Topology, url: str,
                                                              qname: str) -> None:
    names = _names_on_every_primary(clusterq_topology, qname)

    async def scenario() -> list[str]:
        client = await connect_async(url)
        try:
            queues = [AsyncQueue(name, client) for name in names]
            await asyncio.gather(*(queue.enqueue("jobs.noop") for queue in queues))  # the scripts are cached
            for node in clusterq_topology.primaries():  # type: ignore[attr-defined]
                node.admin.script_flush()
            jobs = await asyncio.gather(*(queues[i % len(queues)].enqueue("jobs.noop") for i in range(60)))
            return [job.id for job in jobs]
        finally:
            await disconnect_async(client)

    noscript = _errorstat(clusterq_topology, "NOSCRIPT")
    ids = asyncio.run(scenario())
    after = _errorstat(clusterq_topology, "NOSCRIPT")
    assert all(after[port] > noscript[port] for port in noscript), "every primary answered NOSCRIPT"
    assert len(set(ids)) == 60
    assert sum(Queue(name, url).count for name in names) == 60 + len(names)
    assert all(Job.fetch(job_id, url).get_status() == JobStatus.QUEUED for job_id in ids)
    assert _work(url, *names) == 60 + len(names)


def test_an_error_reply_stays_in_its_calls_place_and_the_other_calls_run(clusterq_topology: Topology,
                                                                        url: str, qname: str) -> None:
    names = _names_on_every_primary(clusterq_topology, qname)
    broken = names[0]
    neighbour = next(name for name in names[1:]
                     if _primary_of(clusterq_topology, name).port == _primary_of(clusterq_topology, broken).port)

    async def scenario() -> tuple[list[Any], list[Any]]:
        client = await connect_async(url)
        try:
            await client.set(AsyncQueue(broken, client).keys.pending, "not a list")  # its enqueue fails
            order = [neighbour, broken, *names[1:], broken]  # the broken queue's calls among its node's others
            replies = await AsyncStore(client).run_many(_calls(client, order, "direct"), raise_on_error=False,
                                                        packed=True)
            queues = {name: AsyncQueue(name, client) for name in names}
            outcomes = await asyncio.gather(*(queues[name].enqueue("jobs.noop") for name in order),
                                            return_exceptions=True)
            return replies, list(outcomes)
        finally:
            await disconnect_async(client)

    replies, outcomes = asyncio.run(scenario())
    order = [neighbour, broken, *names[1:], broken]
    for name, reply, outcome in zip(order, replies, outcomes):
        if name == broken:
            assert isinstance(reply, redis.ResponseError) and "WRONGTYPE" in str(reply)
            assert isinstance(outcome, Exception) and "WRONGTYPE" in str(outcome)
        else:
            assert reply == [1]
            assert not isinstance(outcome, BaseException), outcome
    for name in names[1:]:
        assert Queue(name, url).count == 2 * order.count(name)


def test_a_node_whose_connections_were_closed_gets_its_calls_through_the_cluster_client(
        clusterq_topology: Topology, url: str, qname: str) -> None:
    names = _names_on_every_primary(clusterq_topology, qname)
    victim = _primary_of(clusterq_topology, names[0])

    async def scenario() -> list[Any]:
        client = await connect_async(url)
        try:
            store = AsyncStore(client)
            assert await store.run_many(_calls(client, names, "warm-up"), packed=True) == [[1]] * len(names)
            victim.admin.client_kill_filter(_type="normal", skipme=True)  # the store's pooled connection too
            return await store.run_many(_calls(client, names, "after-kill"), raise_on_error=False, packed=True)
        finally:
            await disconnect_async(client)

    assert asyncio.run(scenario()) == [[1]] * len(names)
    for name in names:
        assert Queue(name, url).count == 2
    assert _work(url, *names) == 2 * len(names)


def test_a_task_canceled_mid_exchange_leaves_no_reply_for_the_connections_next_user(
        clusterq_topology: Topology, url: str, qname: str) -> None:
    names = _names_on_every_primary(clusterq_topology, qname, per_node=3)
    node = _primary_of(clusterq_topology, names[0])
    names = [name for name in names if _primary_of(clusterq_topology, name).port == node.port]

    async def scenario() -> list[Any]:
        client = await connect_async(url)
        try:
            store = AsyncStore(client)
            assert await store.run_many(_calls(client, names, "warm-up"), packed=True) == [[1]] * len(names)
            node.admin.execute_command("CLIENT", "PAUSE", 300, "ALL")  # the node holds its replies back
            in_flight = asyncio.ensure_future(store.run_many(_calls(client, names, "canceled", 3), packed=True))
            await asyncio.sleep(0.1)  # written, its replies awaited
            assert not in_flight.done()
            in_flight.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await in_flight
            # The same node's (single) pooled connection is taken again: a three-job reply left on it
            # would be read as this one-job call's.
            return await store.run_many(_calls(client, names, "next"), packed=True)
        finally:
            await disconnect_async(client)

    assert asyncio.run(scenario()) == [[1]] * len(names)
    for name in names:  # the canceled call ran whole or not at all (the server may drop a closed client's)
        assert Queue(name, url).count in (1 + 1, 1 + 3 + 1)


def test_a_moved_reply_from_a_stale_slot_map_is_followed_through_the_cluster_client(
        clusterq_topology: Topology, url: str, qname: str) -> None:
    names = _names_on_every_primary(clusterq_topology, qname)
    moved_name = names[0]
    right = _primary_of(clusterq_topology, moved_name)

    async def scenario() -> list[Any]:
        client = await connect_async(url)
        try:
            store = AsyncStore(client)
            assert await store.run_many(_calls(client, names, "warm-up"), packed=True) == [[1]] * len(names)
            # The client's map says another primary owns the queue's slot, as after a resharding it has not
            # seen yet: that primary answers MOVED.
            slot = client.keyslot(AsyncQueue(moved_name, client).keys.pending)
            wrong = next(node for node in client.get_primaries() if int(node.port) != right.port)
            client.nodes_manager.slots_cache[slot] = [wrong]
            return await store.run_many(_calls(client, names, "stale"), raise_on_error=False, packed=True)
        finally:
            await disconnect_async(client)

    moved = _errorstat(clusterq_topology, "MOVED")
    assert asyncio.run(scenario()) == [[1]] * len(names)
    after = _errorstat(clusterq_topology, "MOVED")
    assert sum(after.values()) > sum(moved.values()), "the call went to the wrong primary first"
    for name in names:
        assert Queue(name, url).count == 2
    assert _work(url, *names) == 2 * len(names)
