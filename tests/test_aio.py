"""The asyncio producer API on every topology: jobs enqueued with ``AsyncQueue`` are the jobs the sync API
writes (run by the ordinary Worker, read by the sync Job and the other way round); idempotent ids,
cancel and delete; a flushed script cache; the cluster pipeline's command budget; connection errors.

pytest-asyncio is not needed: each test runs its coroutines with ``asyncio.run``, and the sync Worker
runs between them, in the test's own thread, as a separate worker process would.
"""

from __future__ import annotations

import asyncio
import gc
import socket
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import SimpleNamespace
from typing import Any

import pytest
import redis
import redis.asyncio
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.asyncio.sentinel import SentinelConnectionPool

import jobs
from clusterq import (
    ConnectionFailed,
    InvalidJobOperation,
    Job,
    JobStatus,
    NoSuchJobError,
    Queue,
    Worker,
    queue_slot,
)
from clusterq.api.aio_queue import AsyncJob, AsyncQueue, AsyncStore, connect_async, disconnect_async
from clusterq.state import store as T
from clusterq.testing import Topology


def _work(url: str, *queues: str) -> int:
    return Worker(list(queues), url, install_signal_handlers=False).work(burst=True)


def _flush_scripts_everywhere(topology: Topology) -> None:
    for node in topology.processes:
        if not node.sentinel and node.is_running():
            node.admin.script_flush()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _primary_ports(topology: Topology, names: list[str]) -> set[int]:
    """The cluster primaries serving these queues (one port per server elsewhere)."""
    if topology.kind != "cluster":
        return {0}
    return {topology.node_for_slot(queue_slot(name)).port for name in names}  # type: ignore[attr-defined]


# --- the round trip ---------------------------------------------------------------------------------

def test_jobs_enqueued_from_asyncio_are_run_by_the_sync_worker_and_read_by_both_apis(url: str, qname: str) -> None:
    async def enqueue() -> tuple[str, str, list[str]]:
        async with AsyncQueue(qname, url) as q:
            ok = await q.enqueue(jobs.add, 20, b=22, description="adds", meta={"owner": "me"}, job_timeout="2m")
            bad = await q.enqueue("jobs.fail", "nope")
            many = await q.enqueue_many([q.prepare_data("jobs.add", (i, i)) for i in range(3)])
            assert await q.count() == 5
            assert await q.get_job_ids() == [ok.id, bad.id, *(job.id for job in many)]
            fetched = await q.fetch_job(ok.id)
            assert fetched is not None and await fetched.get_status(refresh=False) == JobStatus.QUEUED
            assert (fetched.func_name, fetched.args, fetched.kwargs) == ("jobs.add", [20], {"b": 22})
            assert (fetched.description, fetched.meta, fetched.timeout) == ("adds", {"owner": "me"}, 120.0)
            assert fetched.enqueued_at is not None and fetched.started_at is None
            assert await q.fetch_job("no-such-id") is None
            return ok.handle, bad.handle, [job.handle for job in many]

    ok, bad, many = asyncio.run(enqueue())
    assert Queue(qname, url).count == 5
    assert Job.fetch(ok, url).description == "adds", "the sync Job reads what AsyncQueue wrote"
    assert _work(url, qname) == 5

    async def read() -> None:
        client = await connect_async(url)
        try:
            done = await AsyncJob.fetch(ok, client)
            assert await done.get_status() == JobStatus.FINISHED and await done.return_value() == 42
            assert done.attempts == 1 and done.ended_at is not None and done.worker_name
            failed = await AsyncJob.fetch(bad, client)
            assert await failed.get_status() == JobStatus.FAILED and await failed.return_value() is None
            assert failed.exc_info is not None and "ValueError: nope" in failed.exc_info
            assert [await (await AsyncJob.fetch(h, client)).return_value() for h in many] == [0, 2, 4]
        finally:
            await disconnect_async(client)

    asyncio.run(read())
    assert Job.fetch(ok, url).return_value() == 42


def test_a_job_enqueued_by_the_sync_api_is_read_by_the_async_one(url: str, qname: str) -> None:
    handle = Queue(qname, url).enqueue("jobs.echo", 1, x="y", meta={"k": 1}).handle

    async def read() -> AsyncJob:
        job = await AsyncJob.fetch(handle, url)  # a URL: the job opens (and must close) its own client
        try:
            assert await job.get_status() == JobStatus.QUEUED
            assert (job.args, job.kwargs, job.meta) == ([1], {"x": "y"}, {"k": 1})
            return job
        finally:
            await job.aclose()

    assert asyncio.run(read()) == AsyncJob(qname, handle.rpartition("/")[2])


def test_a_job_handle_finds_the_job_asynchronously_from_the_string_alone(url: str, qname: str) -> None:
    async def scenario() -> None:
        client = await connect_async(url)
        try:
            job = await AsyncQueue(qname, client).enqueue("jobs.add", 2, 3)
            with pytest.raises(InvalidJobOperation, match=r"await job\.refresh"):
                _ = job.args  # the enqueued job has not been read: no hidden blocking read
            found = await AsyncJob.fetch(job.handle, client)
            assert found == job and found.args == [2, 3]
            assert (await AsyncJob.fetch(job.id, client, queue=qname)).handle == job.handle
            assert await job.exists()
            with pytest.raises(NoSuchJobError):
                await AsyncJob.fetch(f"{job.handle}-nope", client)
            # An id alone is looked up through the known queues, as Job.fetch(id) does (RQ's spelling).
            assert (await AsyncJob.fetch(job.id, client)).handle == job.handle
            with pytest.raises(NoSuchJobError, match="no job 'no-slash-here' in any of"):
                await AsyncJob.fetch("no-slash-here", client)
        finally:
            await disconnect_async(client)

    asyncio.run(scenario())


# Enqueue order, at_front, empty, args=/kwargs=, bad input and idempotent ids run on both APIs in
# tests/test_api_parity.py.

def test_jobs_canceled_from_asyncio_never_run_and_deleted_ones_disappear(url: str, qname: str, tmp_path) -> None:
    marker = tmp_path / "ran"

    async def change() -> tuple[str, str]:
        async with AsyncQueue(qname, url) as q:
            keep = await q.enqueue("jobs.record", str(marker), "kept")
            drop = await q.enqueue("jobs.record", str(marker), "dropped")
            gone = await q.enqueue("jobs.record", str(marker), "deleted")
            await drop.cancel()
            assert await drop.get_status() == JobStatus.CANCELED
            with pytest.raises(InvalidJobOperation, match="already canceled"):
                await drop.cancel()
            await gone.delete()
            await gone.delete()  # deleting twice is fine
            assert await q.fetch_job(gone.id) is None and await gone.get_status() is None
            with pytest.raises(NoSuchJobError):
                await gone.cancel()
            assert await q.count() == 1
            return keep.handle, drop.handle

    keep, drop = asyncio.run(change())
    assert Job.fetch(drop, url).id in Queue(qname, url).canceled_job_registry
    assert _work(url, qname) == 1
    assert marker.read_text().split() == ["kept"] and Job.fetch(keep, url).is_finished


# --- scripts and pipelines ------------------------------------------------------------------------

def test_a_flushed_script_cache_does_not_fail_an_async_enqueue(url: str, qname: str,
                                                             clusterq_topology: Topology) -> None:
    names = [f"{qname}-{i}" for i in range(12)]

    async def scenario() -> None:
        client = await connect_async(url)
        try:
            q = AsyncQueue(qname, client)
            await q.enqueue("jobs.noop")  # the scripts are cached now
            _flush_scripts_everywhere(clusterq_topology)
            await q.enqueue("jobs.noop")  # one call: EVALSHA, NOSCRIPT, EVAL
            _flush_scripts_everywhere(clusterq_topology)
            await q.enqueue_many([q.prepare_data("jobs.noop") for _ in range(1001)])  # a pipeline of 3 calls
            assert await q.count() == 1003
            _flush_scripts_everywhere(clusterq_topology)
            calls = [T.enqueue_call(AsyncQueue(name, client).keys, [T.NewJob(id="j", func="jobs.noop")])
                     for name in names]
            assert await AsyncStore(client).run_many(calls) == [[1]] * len(names)  # a pipeline per node
            _flush_scripts_everywhere(clusterq_topology)
            await (await q.enqueue("jobs.noop")).cancel()
        finally:
            await disconnect_async(client)

    asyncio.run(scenario())
    assert len(_primary_ports(clusterq_topology, names)) == (3 if clusterq_topology.kind == "cluster" else 1)
    assert [Queue(name, url).count for name in names] == [1] * len(names)
    assert _work(url, qname, *names) == 1003 + len(names)


def test_a_failing_call_in_an_async_pipeline_is_reported_in_its_own_place(url: str, qname: str) -> None:
    names = [f"{qname}-{i}" for i in range(3)]

    async def scenario() -> list[Any]:
        client = await connect_async(url)
        try:
            keys = [AsyncQueue(name, client).keys for name in names]
            await client.set(keys[1].pending, "not a list")  # the enqueue script fails on this queue only

            def calls(job_id: str) -> list[T.Call]:
                return [T.enqueue_call(k, [T.NewJob(id=job_id, func="jobs.noop")]) for k in keys]

            with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
                await AsyncStore(client).run_many(calls("a"))
            return await AsyncStore(client).run_many(calls("b"), raise_on_error=False)
        finally:
            await disconnect_async(client)

    first, failed, last = asyncio.run(scenario())
    assert first == [1] and last == [1], "the other calls ran"
    assert isinstance(failed, redis.ResponseError) and "WRONGTYPE" in str(failed)


@pytest.mark.parametrize("clusterq_topology", ["cluster"], indirect=True)
def test_async_cluster_pipelines_cost_no_command_getkeys_round_trips(clusterq_topology: Topology, url: str,
                                                                     qname: str) -> None:
    """redis-py's sync ClusterPipeline asks ``COMMAND GETKEYS`` for every EVALSHA; the asyncio one must not."""

    def command_calls() -> dict[str, int]:
        totals: dict[str, int] = {}
        for node in clusterq_topology.primaries():  # type: ignore[attr-defined]
            for name, stats in node.admin.info("commandstats").items():
                if name.startswith(("cmdstat_command", "cmdstat_eval")):
                    totals[name] = totals.get(name, 0) + int(stats["calls"])
        return totals

    names = [f"{qname}-{i}" for i in range(30)]

    async def scenario() -> dict[str, int]:
        client = await connect_async(url)
        try:
            store = AsyncStore(client)

            def calls(job_id: str) -> list[T.Call]:
                return [T.enqueue_call(AsyncQueue(name, client).keys, [T.NewJob(id=job_id, func="jobs.noop")])
                        for name in names]

            await store.run_many(calls("warm-up"))  # the scripts are cached on every primary now
            before = command_calls()
            assert await store.run_many(calls("measured")) == [[1]] * len(names)
            after = command_calls()
            return {name: after[name] - before.get(name, 0) for name in after}
        finally:
            await disconnect_async(client)

    assert len(_primary_ports(clusterq_topology, names)) == 3
    spent = asyncio.run(scenario())
    assert spent.get("cmdstat_command|getkeys", 0) == 0
    assert {name: n for name, n in spent.items() if n} == {"cmdstat_evalsha": len(names)}


# --- connecting -------------------------------------------------------------------------------------

def test_each_topologys_url_opens_the_matching_asyncio_client(clusterq_topology: Topology, url: str) -> None:
    async def scenario() -> None:
        client = await connect_async(url)
        try:
            if clusterq_topology.kind == "cluster":
                assert isinstance(client, AsyncRedisCluster)
            else:
                assert isinstance(client, redis.asyncio.Redis)
                assert isinstance(client.connection_pool, SentinelConnectionPool) == (
                    clusterq_topology.kind == "sentinel")
            assert await client.ping()
        finally:
            await disconnect_async(client)

    asyncio.run(scenario())


@pytest.mark.parametrize("clusterq_topology", ["cluster"], indirect=True)
def test_a_plain_redis_url_to_a_cluster_node_opens_an_asyncio_cluster(clusterq_topology: Topology, qname: str) -> None:
    node = clusterq_topology.primaries()[1]  # type: ignore[attr-defined]

    async def scenario() -> None:
        client = await connect_async(f"redis://127.0.0.1:{node.port}")
        try:
            assert isinstance(client, AsyncRedisCluster)
            job = await AsyncQueue(qname, client).enqueue("jobs.add", 1, 2)
            assert await job.exists()
        finally:
            await disconnect_async(client)

    asyncio.run(scenario())


@pytest.mark.parametrize("clusterq_topology", ["cluster"], indirect=True)
def test_an_address_remap_is_applied_to_every_asyncio_cluster_node(clusterq_topology: Topology, qname: str) -> None:
    seen: set[tuple[str, int]] = set()

    def remap(address: tuple[str, int]) -> tuple[str, int]:
        seen.add(address)
        return address

    seed = clusterq_topology.primaries()[0].port  # type: ignore[attr-defined]

    async def scenario() -> None:
        client = await connect_async(f"redis+cluster://127.0.0.1:{seed}", address_remap=remap)
        try:
            await AsyncQueue(qname, client).enqueue("jobs.noop")
        finally:
            await disconnect_async(client)

    asyncio.run(scenario())
    assert {port for _, port in seen} >= {n.port for n in clusterq_topology.primaries()}  # type: ignore[attr-defined]


def test_an_existing_asyncio_client_is_used_as_is_and_left_open(url: str, qname: str) -> None:
    async def scenario() -> None:
        mine = await connect_async(url, socket_timeout=3)
        try:
            assert await connect_async(mine) is mine
            async with AsyncQueue(qname, mine) as q:
                job = await q.enqueue("jobs.noop")
            assert await mine.ping(), "closing a queue must not close the application's client"
            assert await AsyncJob(qname, job.id, mine).get_status() == JobStatus.QUEUED
        finally:
            await disconnect_async(mine)

    asyncio.run(scenario())


def test_a_queue_opened_from_a_url_follows_the_application_to_a_new_event_loop(url: str, qname: str) -> None:
    q = AsyncQueue(qname, url)  # created outside any loop, as a module-level queue would be
    first = asyncio.run(q.enqueue("jobs.noop"))

    async def in_a_new_loop() -> tuple[AsyncJob, int, JobStatus | None]:
        try:
            second = await q.enqueue("jobs.noop")  # the queue opens a fresh client in this loop
            return second, await q.count(), await first.get_status()
        finally:
            await q.aclose()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)  # the first loop's client is dropped unclosed: by design
        second, count, status = asyncio.run(in_a_new_loop())
        gc.collect()
    assert (count, status) == (2, JobStatus.QUEUED) and second != first


@pytest.mark.parametrize("scheme,topology", [
    ("redis", "standalone server"), ("redis+sentinel", "Sentinel"), ("redis+cluster", "Redis Cluster"),
])
def test_an_unreachable_url_is_a_connection_failure_naming_the_host(scheme: str, topology: str) -> None:
    port = _closed_port()
    target = f"{scheme}://127.0.0.1:{port}{'/mymaster' if 'sentinel' in scheme else ''}"

    async def scenario() -> list[str]:
        messages = []
        with pytest.raises(ConnectionFailed) as info:
            await connect_async(target, socket_connect_timeout=1)
        messages.append(str(info.value))
        async with AsyncQueue("q", target) as q:
            with pytest.raises(ConnectionFailed) as info:
                await q.enqueue("jobs.noop")
        messages.append(str(info.value))
        return messages

    for message in asyncio.run(scenario()):
        assert f"127.0.0.1:{port}" in message and topology in message


def test_a_synchronous_client_is_refused_with_a_clear_error() -> None:
    with pytest.raises(TypeError, match="synchronous redis-py client"):
        AsyncQueue("q", redis.Redis())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"URL or a redis\.asyncio client"):
        AsyncJob("q", "id", 42)  # type: ignore[arg-type]


# --- in a web application -------------------------------------------------------------------------

def test_a_web_app_shares_one_client_and_its_handles_outlive_a_restart(url: str, qname: str) -> None:
    """The usage ``clusterq.aio`` documents, run without a web framework. With FastAPI it reads::

        @asynccontextmanager
        async def lifespan(app: FastAPI):
            app.state.redis = await connect_async(CLUSTERQ_URL)
            app.state.emails = AsyncQueue("emails", app.state.redis)
            yield
            await disconnect_async(app.state.redis)

        app = FastAPI(lifespan=lifespan)

        @app.post("/signup")
        async def signup(request: Request, address: str) -> dict:
            job = await request.app.state.emails.enqueue("jobs.echo", address, job_id=f"welcome:{address}")
            return {"job": job.handle}

        @app.get("/jobs")
        async def job_status(request: Request, handle: str) -> dict:
            job = await AsyncJob.fetch(handle, request.app.state.redis)
            status = await job.get_status(refresh=False)
            return {"status": status.value if status else None, "result": await job.return_value(refresh=False)}
    """

    @asynccontextmanager
    async def lifespan(app: SimpleNamespace) -> AsyncIterator[None]:
        app.redis = await connect_async(url)
        app.emails = AsyncQueue(qname, app.redis)
        yield
        await disconnect_async(app.redis)

    async def signup(app: SimpleNamespace, address: str) -> dict[str, Any]:
        job = await app.emails.enqueue("jobs.echo", address, job_id=f"welcome:{address}")
        return {"job": job.handle}

    async def job_status(app: SimpleNamespace, handle: str) -> dict[str, Any]:
        job = await AsyncJob.fetch(handle, app.redis)
        status = await job.get_status(refresh=False)
        return {"status": status.value if status else None, "result": await job.return_value(refresh=False)}

    async def serve(requests: list[tuple[Any, str]]) -> list[dict[str, Any]]:
        app = SimpleNamespace()
        async with lifespan(app):
            return [await handler(app, arg) for handler, arg in requests]

    a, retried = asyncio.run(serve([(signup, "a@example.com"), (signup, "a@example.com")]))
    assert a == retried, "a retried request enqueues once"
    assert asyncio.run(serve([(job_status, a["job"])])) == [{"status": "queued", "result": None}]
    assert _work(url, qname) == 1
    assert asyncio.run(serve([(job_status, a["job"])])) == [
        {"status": "finished", "result": {"args": ["a@example.com"], "kwargs": {}}}
    ]


# --- delayed jobs ------------------------------------------------------------------------------------

def test_enqueue_at_and_enqueue_in_from_asyncio_schedule_jobs_the_worker_promotes(url: str, qname: str) -> None:
    from datetime import datetime, timedelta, timezone

    async def schedule() -> tuple[str, str, str]:
        async with AsyncQueue(qname, url) as q:
            past = await q.enqueue_at(datetime.now(timezone.utc) - timedelta(seconds=5), jobs.add, 1, 2,
                                      description="past")
            soon = await q.enqueue_in(0, "jobs.add", 3, b=4, job_id="soon-job")
            later = await q.enqueue_in(timedelta(hours=1), jobs.add, 5, 6)
            for job in (past, soon, later):
                assert await job.get_status() == JobStatus.SCHEDULED
            assert soon.id == "soon-job" and past.description == "past"
            assert await q.count() == 0, "scheduled jobs do not wait in the queue yet"
            with pytest.raises(TypeError, match="not supported"):
                await q.enqueue_in(1, jobs.add, 1, 2, depends_on="x")
            return past.handle, soon.handle, later.handle

    past, soon, later = asyncio.run(schedule())
    q = Queue(qname, url)
    assert q.scheduled_job_registry.count == 3
    assert set(q.scheduled_job_registry.get_job_ids()) == {h.rpartition("/")[2] for h in (past, soon, later)}
    assert _work(url, qname) == 2, "the due jobs run; the one an hour away waits"
    assert Job.fetch(past, url).return_value() == 3 and Job.fetch(soon, url).return_value() == 7
    assert Job.fetch(later, url).get_status() == JobStatus.SCHEDULED


# --- controlling a running job -------------------------------------------------------------------------

def test_an_async_job_reads_progress_and_stops_a_running_job(url: str, qname: str, tmp_path) -> None:
    import threading
    import time

    path = tmp_path / "started"
    q = Queue(qname, url)
    job = q.enqueue("control_jobs.progress_then_wait", str(path), 120)
    queued = q.enqueue("jobs.noop")  # behind it: one thread, so it waits
    worker = Worker([q], url, pool="thread", concurrency=1, install_signal_handlers=False)
    thread = threading.Thread(target=worker.work, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while not (path.exists() and "started" in path.read_text()):
            assert time.monotonic() < deadline, "the job did not start"
            time.sleep(0.02)

        async def control() -> None:
            async with AsyncQueue(qname, url) as aq:
                running = await aq.fetch_job(job.id)
                assert running is not None and running.progress is not None
                assert (running.progress.value, running.progress.message) == (42, "halfway")
                waiting = await aq.fetch_job(queued.id)
                assert waiting is not None and waiting.progress is None
                with pytest.raises(InvalidJobOperation, match="not running"):
                    await waiting.stop()
                await running.stop("from asyncio")
                with pytest.raises(NoSuchJobError):
                    await AsyncJob._bound(qname, "no-such-job", aq._lazy, aq.serializer).stop()

        asyncio.run(control())
        while job.get_status() != JobStatus.STOPPED or queued.get_status() != JobStatus.FINISHED:
            assert time.monotonic() < deadline, "the job was not stopped, or the thread did not go on"
            time.sleep(0.02)
    finally:
        worker.request_stop()
        thread.join(60)
    assert job.exc_info == "JobStopped: from asyncio"
