"""The enqueue fast path and asyncio auto-pipelining, on every topology.

- A job enqueued without options (``enqueue(f, *args)``, ``enqueue_many`` of plain ``prepare_data``) is
  written by arguments built directly (``QueueCore._fast_argv``/``_plain_jobs``): its record is the one
  the general path writes, signed the same way, run by the ordinary worker.
- Concurrent ``AsyncQueue.enqueue`` calls made in one event-loop tick share one pipeline
  (``AutoPipeline``), and each caller still gets its own job or its own error.
- A generated id that another job already has is refused by enqueue.lua itself (atomically, it never
  overwrites that job); the client draws another id. A resent call (same id, same job) is not a collision.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
import uuid
from typing import Any

import pytest
import redis
from redis.exceptions import ResponseError

import jobs
from clusterq import Queue, SerializationError, Worker
from clusterq.api import queue_core
from clusterq.api.aio_queue import AsyncQueue, connect_async, disconnect_async
from clusterq.exceptions import ServerError
from clusterq.signing import make_signer
from clusterq.state import aio_store
from clusterq.state import keys as K
from clusterq.state import store as T
from clusterq.state import transitions as TR

KEY = b"k" * 32


def test_a_job_without_options_gets_the_record_the_general_path_writes(url: str, qname: str) -> None:
    q = Queue(qname, url, signing_key=KEY, result_ttl=60, max_attempts=3)
    first = q.enqueue(jobs.add, 1, 2)  # the first enqueue registers the queue: the general path
    fast = q.enqueue(jobs.add, 1, 2)
    general = q.enqueue(jobs.add, 1, 2, description=None)  # an option (its default): the general path
    records = [dict(q.connection.hgetall(q.keys.job(job.id))) for job in (first, fast, general)]
    for record in records:
        record.pop(b"c")  # the creation time
        record.pop(b"sg")  # the signature covers the id
    assert records[0] == records[1] == records[2]
    signer = make_signer(KEY)
    assert signer is not None
    raw = q.connection.hgetall(q.keys.job(fast.id))
    assert signer.problem(qname, fast.id, raw[b"f"].decode(), raw.get(b"p", b""), raw.get(b"o", b""),
                          raw[b"sg"]) is None
    many = q.enqueue_many([q.prepare_data(jobs.add, (i, i)) for i in range(3)])
    assert q.get_job_ids() == [first.id, fast.id, general.id, *(job.id for job in many)]
    assert Worker([qname], url, install_signal_handlers=False, signing_key=KEY).work(burst=True) == 6
    assert [job.return_value() for job in many] == [0, 2, 4] and fast.return_value() == 3


def test_bad_input_on_the_fast_path_fails_at_the_call_with_nothing_written(url: str, qname: str) -> None:
    q = Queue(qname, url)
    q.enqueue(jobs.noop)
    with pytest.raises(SerializationError):
        q.enqueue(jobs.echo, object())
    with pytest.raises(ValueError, match="function path"):
        q.enqueue("nodots")
    with pytest.raises(SerializationError):
        q.enqueue_many([q.prepare_data(jobs.echo, (1,)), q.prepare_data(jobs.echo, (object(),))])
    assert q.count == 1


def test_concurrent_async_enqueues_share_a_pipeline_and_each_gets_its_own_outcome(
        url: str, qname: str, monkeypatch: pytest.MonkeyPatch) -> None:
    batches: list[int] = []
    run_many = aio_store.AsyncStore.run_many

    async def recording(self: aio_store.AsyncStore, calls: Any, **kwargs: Any) -> list[Any]:
        batches.append(len(calls))
        return await run_many(self, calls, **kwargs)

    monkeypatch.setattr(aio_store.AsyncStore, "run_many", recording)
    broken = f"{qname}-broken"

    async def scenario() -> tuple[list[Any], list[str]]:
        client = await connect_async(url)
        try:
            q, b = AsyncQueue(qname, client), AsyncQueue(broken, client)
            await q.enqueue(jobs.noop)  # registers the queues (the general path)
            await b.enqueue(jobs.noop)
            await client.set(b.keys.pending, "not a list")  # the enqueue script fails on that queue only
            batches.clear()

            async def one(i: int) -> Any:
                if i == 7:
                    return await q.enqueue(jobs.echo, object())  # bad input: refused before any I/O
                if i == 13:
                    return await b.enqueue(jobs.echo, i)  # a server error, in the middle of a batch
                return await q.enqueue(jobs.echo, i)

            outcomes = await asyncio.gather(*(one(i) for i in range(40)), return_exceptions=True)
            return outcomes, await q.get_job_ids(0, 100)
        finally:
            await disconnect_async(client)

    outcomes, ids = asyncio.run(scenario())
    assert isinstance(outcomes[7], SerializationError)
    assert isinstance(outcomes[13], ServerError) and "WRONGTYPE" in str(outcomes[13]) and broken in str(outcomes[13])
    fine = [outcome for i, outcome in enumerate(outcomes) if i not in (7, 13)]
    assert all(not isinstance(outcome, BaseException) for outcome in fine)
    assert ids[1:] == [job.id for job in fine], "every other call wrote its job, in call order"
    assert max(batches) == 39, "the concurrent calls went out as one pipeline"
    sync = Queue(qname, url)
    assert [sync.fetch_job(job.id).args for job in fine[:3]] == [[0], [1], [2]]  # type: ignore[union-attr]


class _Ids:
    """The id generator replaced for one test: the given ids first, then fresh ones."""

    def __init__(self, *first: str) -> None:
        self.first = list(first)
        self.real = queue_core.new_job_id

    def __call__(self) -> str:
        return self.first.pop(0) if self.first else self.real()


@pytest.mark.parametrize("how", ["fast", "general", "many", "async"])
def test_a_generated_id_that_another_job_has_is_refused_by_the_script_and_drawn_again(
        url: str, qname: str, monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    taken = uuid.uuid4().hex
    q = Queue(qname, url)
    existing = q.enqueue(jobs.add, 1, 2, job_id=taken)
    monkeypatch.setattr(queue_core, "new_job_id", _Ids(taken, taken))  # the next two ids drawn collide
    if how == "fast":
        job = q.enqueue(jobs.echo, "new")
    elif how == "general":
        job = q.enqueue(jobs.echo, "new", description="the general path")
    elif how == "many":
        job = q.enqueue_many([q.prepare_data(jobs.echo, ("new",))])[0]
    else:
        async def scenario() -> str:
            async with AsyncQueue(qname, url) as aq:
                await aq.enqueue(jobs.noop, job_id="registers-the-queue")
                return (await aq.enqueue(jobs.echo, "new")).id
        job = q.fetch_job(asyncio.run(scenario()))  # type: ignore[assignment]
    assert job is not None and job.id != taken
    fetched = q.fetch_job(job.id)
    assert fetched is not None and (fetched.func_name, fetched.args) == ("jobs.echo", ["new"])
    kept = q.fetch_job(existing.id)
    assert kept is not None and (kept.func_name, kept.args) == ("jobs.add", [1, 2]), "never overwritten"


def test_generated_ids_are_version_4_uuids() -> None:
    ids = {queue_core.new_job_id() for _ in range(1000)} | set(queue_core.new_job_ids(1000))
    assert len(ids) == 2000 and queue_core.new_job_ids(0) == []
    assert all(len(i) == 32 and uuid.UUID(hex=i).version == 4 and uuid.UUID(hex=i).variant == uuid.RFC_4122
               for i in ids)


def test_the_script_tells_a_resent_call_from_a_collision(url: str, qname: str) -> None:
    q = Queue(qname, url)
    q.enqueue(jobs.noop)
    job_id = uuid.uuid4().hex

    def send(func: str, payload: bytes) -> list[Any]:
        job = T.NewJob(id=job_id, func=func, payload=payload, fresh_id=True)
        return list(q.store.run(T.enqueue_call(q.keys, [job])))

    assert send("jobs.echo", b"[[1],{}]") == [1]
    assert send("jobs.echo", b"[[1],{}]") == [0], "the same job sent again (a lost reply): EXISTED"
    assert send("jobs.echo", b"[[2],{}]") == [-1], "another job under that id: DUPLICATE, nothing written"
    assert send("jobs.add", b"[[1],{}]") == [-1]
    assert q.fetch_job(job_id).args == [1]  # type: ignore[union-attr]
    assert q.count == 2


def test_the_created_time_is_the_clients_clock_and_a_bad_one_is_refused_with_nothing_written(
        url: str, qname: str) -> None:
    q = Queue(qname, url)
    q.enqueue(jobs.noop)  # registers the queue: later enqueues take the fast path
    before = int(time.time() * 1000)
    fast = q.enqueue(jobs.noop)
    many = q.enqueue_many([q.prepare_data(jobs.noop), q.prepare_data(jobs.add, (1, 2))])
    general = q.enqueue(jobs.noop, description="d")
    after = int(time.time() * 1000)
    for job in (fast, *many, general):
        assert before <= int(q.connection.hget(q.keys.job(job.id), "c")) <= after
    # The script's own call: "c" is the now_ms it is given (no TIME), and the history counts that minute.
    call = T.enqueue_call(q.keys, [T.NewJob(id="then", func="jobs.noop")], now=1_000_000_000.0)
    assert list(q.store.run(call)) == [1]
    assert q.connection.hget(q.keys.job("then"), "c") == b"1000000000000"
    assert q.connection.hget(q.keys.counts(1_000_000_000 // K.HISTORY_KEY_S), "16666666:enqueued") == b"1"
    count = q.count
    for bad in ("", "x", "-1", "1.5", "1e12", "0x10", " 1", "1" * 16):
        call = T.enqueue_call(q.keys, [T.NewJob(id="bad", func="jobs.noop")])
        args = list(call.args)
        args[TR.ENQUEUE.args.index("now_ms")] = bad
        with pytest.raises(ResponseError, match=r"now_ms .* is not 1 to 15 digits; nothing was written"):
            q.store.run(T.Call(call.script, call.keys, tuple(args)))
    assert q.count == count and not q.connection.exists(q.keys.job("bad"))


# --- commands packed whole (clusterq.connection.packed) -------------------------------------------

def _flush_scripts_everywhere(topology: Any) -> None:
    for node in topology.processes:
        if not node.sentinel and node.is_running():
            client = node.client()
            client.script_flush()
            client.close()


@pytest.mark.parametrize("api", ["sync", "async"])
def test_the_packed_fast_paths_send_the_source_to_a_server_that_lost_the_script(
        url: str, clusterq_topology: Any, qname: str, api: str) -> None:
    q = Queue(qname, url)
    if api == "sync":
        first = q.enqueue(jobs.add, 1, 1)  # registers the queue (general path)
        _flush_scripts_everywhere(clusterq_topology)
        one = q.enqueue(jobs.add, 2, 2)  # packed EVALSHA: NOSCRIPT, then redis-py's EVAL with the source
        _flush_scripts_everywhere(clusterq_topology)
        many = q.enqueue_many([q.prepare_data(jobs.add, (i, i)) for i in range(1200)])  # three packed calls
    else:
        async def scenario() -> tuple[Any, Any, list[Any]]:
            client = await connect_async(url)
            try:
                aq = AsyncQueue(qname, client)
                first = await aq.enqueue(jobs.add, 1, 1)
                _flush_scripts_everywhere(clusterq_topology)
                one, two = await asyncio.gather(aq.enqueue(jobs.add, 2, 2), aq.enqueue(jobs.add, 3, 3))
                _flush_scripts_everywhere(clusterq_topology)
                many = await aq.enqueue_many([aq.prepare_data(jobs.add, (i, i)) for i in range(1200)])
                return first, one, [two, *many[1:]]
            finally:
                await disconnect_async(client)

        first, one, many = asyncio.run(scenario())
    assert q.get_job_ids(0, 3) == [first.id, one.id, many[0].id]
    assert q.count == (1202 if api == "sync" else 1203) and len({job.id for job in many}) == 1200
    assert q.fetch_job(many[-1].id) is not None and q.fetch_job(many[-1].id).get_status() == "queued"
    assert Worker([qname], url, install_signal_handlers=False).work(burst=True, max_jobs=2) == 2
    assert q.fetch_job(one.id).return_value() == 4  # type: ignore[union-attr]


@pytest.mark.parametrize("args", [
    ("EVALSHA", "ab" * 20, 2, b"k1", "k\u00e9", "0", 0, -7, 10**20, 1.5, 0.1, 1e300, b"", "", b"\x00\xff"),
    ("SET", "clé", "\U0001f600" * 3),
])
def test_a_packed_command_is_byte_for_byte_what_redis_py_sends(args: tuple[Any, ...], monkeypatch: Any) -> None:
    from redis._parsers.encoders import Encoder
    from redis.connection import PythonRespSerializer

    from clusterq.connection import packed

    expected = b"".join(PythonRespSerializer(6000, Encoder("utf-8", "strict", False).encode).pack(*args))
    assert packed.pack_command(args) == expected
    monkeypatch.setattr(packed, "_hiredis_pack", None)  # the pure-Python packer (no hiredis installed)
    assert packed.pack_command(args) == expected


@pytest.mark.parametrize("bad", [None, True, "\ud800", object()])
def test_an_argument_that_cannot_be_packed_is_left_to_redis_py(bad: Any, monkeypatch: Any) -> None:
    from clusterq.connection import packed

    assert packed.pack_command(("SET", "k", bad)) is None
    monkeypatch.setattr(packed, "_hiredis_pack", None)
    assert packed.pack_command(("SET", "k", bad)) is None


def test_a_client_whose_commands_are_wrapped_or_encoded_otherwise_is_not_bypassed(
        clusterq_standalone: Any, qname: str) -> None:
    import redis
    import redis.asyncio

    from clusterq.connection.packed import packable

    seen: list[Any] = []

    class AsyncInstrumented(redis.asyncio.Redis):
        async def execute_command(self, *args: Any, **options: Any) -> Any:
            seen.append(args[0])
            return await super().execute_command(*args, **options)

    class Instrumented(redis.Redis):
        def execute_command(self, *args: Any, **options: Any) -> Any:
            seen.append(args[0])
            return super().execute_command(*args, **options)

    clusterq_standalone.flush()
    instrumented = Instrumented.from_url(clusterq_standalone.url)
    q = Queue(qname, instrumented)
    q.enqueue(jobs.noop)
    seen.clear()
    q.enqueue(jobs.noop)
    q.enqueue_many([q.prepare_data(jobs.noop) for _ in range(3)])
    assert seen.count("EVALSHA") == 2  # both went through the application's execute_command
    assert not packable(instrumented)
    assert not packable(redis.Redis.from_url(clusterq_standalone.url, encoding="latin-1"))
    assert not packable(redis.Redis.from_url(clusterq_standalone.url, single_connection_client=True))
    plain = redis.Redis.from_url(clusterq_standalone.url)
    assert packable(plain) and packable(redis.Redis.from_url(clusterq_standalone.url, decode_responses=True))
    latin = Queue(qname, redis.Redis.from_url(clusterq_standalone.url, encoding="latin-1"))
    assert latin.enqueue(jobs.echo, "\u00e9").id in latin.get_job_ids()
    assert Queue(qname, plain).count == 6

    async def scenario() -> None:
        client = AsyncInstrumented.from_url(clusterq_standalone.url)
        try:
            aq = AsyncQueue(qname, client)
            await aq.enqueue(jobs.noop)
            seen.clear()
            await asyncio.gather(aq.enqueue(jobs.noop), aq.enqueue(jobs.noop))
            await aq.enqueue_many([aq.prepare_data(jobs.noop) for _ in range(3)])
        finally:
            await client.aclose()

    asyncio.run(scenario())
    assert not packable(AsyncInstrumented.from_url(clusterq_standalone.url))
    assert packable(redis.asyncio.Redis.from_url(clusterq_standalone.url))
    assert "EVALSHA" in seen and Queue(qname, plain).count == 12


# --- the connection kept for one-job enqueues (clusterq.connection.packed.exchange_one) ------------------

def test_one_job_enqueues_from_many_threads_each_write_their_own_job(url: str, qname: str) -> None:
    q = Queue(qname, url)
    q.enqueue(jobs.noop)
    made: list[list[str]] = [[] for _ in range(8)]

    def produce(mine: list[str]) -> None:
        for i in range(150):
            mine.append(q.enqueue(jobs.add, i, 1).id)

    threads = [threading.Thread(target=produce, args=(mine,)) for mine in made]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ids = [job_id for mine in made for job_id in mine]
    assert len(ids) == len(set(ids)) == 8 * 150
    waiting = q.get_job_ids(0, 2000)
    assert len(waiting) == 1 + len(ids) and set(ids) <= set(waiting)
    assert Worker([qname], url, install_signal_handlers=False).work(burst=True) == 1 + len(ids)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_enqueues_on_a_connection_of_its_own(url: str, qname: str) -> None:
    q = Queue(qname, url)
    q.enqueue(jobs.noop)  # the parent's kept connection is open
    pid = os.fork()
    if pid == 0:  # the child: its replies must not be read by the parent, nor the parent's by it
        code = 1
        try:
            code = 0 if all(q.enqueue(jobs.add, i, 2).id for i in range(100)) else 1
        finally:
            os._exit(code)
    parent = [q.enqueue(jobs.add, i, 3).id for i in range(100)]
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert len(set(parent)) == 100
    assert q.count == 201
    assert Worker([qname], url, install_signal_handlers=False).work(burst=True) == 201


@pytest.mark.parametrize("clusterq_topology", ["standalone"], indirect=True)
def test_a_kept_connection_the_server_closed_is_replaced_and_the_job_written_once(url: str, qname: str) -> None:
    q = Queue(qname, url)
    first = q.enqueue(jobs.noop)
    q.enqueue(jobs.noop)  # the first fast-path enqueue: it keeps a connection
    assert getattr(q.connection, "_clusterq_held", None).conn is not None
    for _ in range(3):
        assert q.connection.client_kill_filter(_type="normal", skipme=True) >= 1  # the kept one among them
        q.enqueue(jobs.add, 1, 2)
    ids = q.get_job_ids()
    assert len(ids) == len(set(ids)) == 5 and ids[0] == first.id


@pytest.mark.parametrize("clusterq_topology", ["standalone"], indirect=True)
def test_a_small_pool_keeps_no_connection_out_of_it(url: str, qname: str) -> None:
    client = redis.Redis.from_url(url, max_connections=1)  # a kept connection would starve every other call
    q = Queue(qname, client)
    for i in range(3):
        q.enqueue(jobs.add, i, i)
        assert q.count == i + 1
    assert not getattr(client, "_clusterq_held", None)


def test_a_stream_of_packed_commands_sends_each_as_made_and_stops_at_one_it_cannot_pack(
        clusterq_standalone: Any) -> None:
    from clusterq.connection.packed import exchange_stream, pack_command

    client = clusterq_standalone.client()
    made: list[str] = []

    def commands() -> Any:
        for args in (("SET", "s:1", "a"), ("INCR", "s:1"), ("GET", "s:1"), ("SET", "s:2", True), ("SET", "s:3", "c")):
            made.append(args[1])
            yield pack_command(args)

    replies = exchange_stream(client, commands())
    assert replies[0] is True or replies[0] == b"OK"
    assert isinstance(replies[1], ResponseError) and replies[2] == b"a"  # an error reply in its place
    assert len(replies) == 3 and made == ["s:1", "s:1", "s:1", "s:2"]  # stopped at the unpackable one
    assert client.exists("s:2", "s:3") == 0
    assert client.ping()  # the connection went back to the pool with nothing left to read
