"""Counter buffers on every topology: increments summed per key, flushed as one job per key in bounded
batches, nothing lost or doubled through a flusher that dies between its steps, one API body for sync and
asyncio producers, and bad input refused at the call."""

from __future__ import annotations

import asyncio
import json
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from clusterq import AsyncBuffer, Buffer, BufferError, Queue, Worker
from clusterq.api import buffer_core as B
from clusterq.state import store as T
from clusterq.state.keys import key_slot
from test_dependencies import wait_for
from worker_thread import running

pytestmark = pytest.mark.compat


class SyncThrough:
    """An AsyncBuffer driven from a sync test body (its coroutines run on a loop the test owns)."""

    def __init__(self, buffer: AsyncBuffer, loop: asyncio.AbstractEventLoop) -> None:
        self.buffer, self.loop = buffer, loop

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.buffer, name)
        return lambda *a, **kw: self.loop.run_until_complete(method(*a, **kw))


@pytest.fixture(params=["sync", "asyncio"])
def producer(request: pytest.FixtureRequest, url: str) -> Iterator[Any]:
    """make(name, **options): a buffer producer of the API under test."""
    if request.param == "sync":
        yield lambda name, **kw: Buffer(name, url, **kw)
        return
    loop = asyncio.new_event_loop()
    made: list[AsyncBuffer] = []

    def make(name: str, **kw: Any) -> SyncThrough:
        made.append(AsyncBuffer(name, url, **kw))
        return SyncThrough(made[-1], loop)

    yield make
    for buffer in made:
        loop.run_until_complete(buffer.aclose())
    loop.close()


@pytest.fixture
def out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "applied.jsonl"
    monkeypatch.setenv("CLUSTERQ_TEST_BUFFER_OUT", str(path))
    return path


def applied(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def totals(path: Path) -> dict[str, Counter[str]]:
    sums: dict[str, Counter[str]] = defaultdict(Counter)
    for row in applied(path):
        sums[row["key"]].update(row["increments"])
    return sums


def drain(queue: Queue) -> None:
    Worker([queue], queue.connection, pool="thread", concurrency=4, install_signal_handlers=False).work(burst=True)


def test_increments_are_summed_per_key_and_flushed_as_one_job_each(url: str, qname: str, out: Path,
                                                                  producer: Any) -> None:
    name = f"{qname}-counts"
    hot = producer(name, partitions=4, flush_to="buffer_jobs.apply", queue=qname)
    expected: dict[str, Counter[str]] = defaultdict(Counter)
    for i in range(300):
        key = f"group:{i % 30}"
        hot.incr(key, {"times_seen": 1, "bytes": i})
        expected[key].update({"times_seen": 1, "bytes": i})
    hot.incr_many([(f"group:{i}", {"times_seen": 2}) for i in range(5)])
    for i in range(5):
        expected[f"group:{i}"].update({"times_seen": 2})
    assert hot.pending() == 30
    flusher = Buffer(name, url, partitions=4, flush_to="buffer_jobs.apply", queue=qname)
    result = flusher.flush()
    assert (result.records, result.failed) == (30, {})
    assert hot.pending() == 0 and hot.in_flight() == 0
    queue = Queue(qname, url)
    assert queue.count == 30
    drain(queue)
    assert totals(out) == expected
    rows = applied(out)
    assert len({row["flush_id"] for row in rows}) == 30
    assert all(row["flush_id"].startswith(f"buffer:{name}:") for row in rows)


def test_the_partitions_spread_the_pending_keys_over_their_own_slots(url: str, qname: str, producer: Any) -> None:
    hot = producer(f"{qname}-spread", partitions=8)
    hot.incr_many([(f"k{i}", {"n": 1}) for i in range(400)])
    buffer = Buffer(f"{qname}-spread", url, partitions=8)
    sizes = [buffer.client.zcard(buffer.spec.keys(p).pending) for p in range(8)]
    assert sum(sizes) == 400 and all(size > 0 for size in sizes)
    slots = {key_slot(buffer.spec.keys(p).pending) for p in range(8)}
    assert len(slots) == 8
    for p in range(8):  # every key of a partition shares its slot, whatever the user's key holds
        keys = buffer.spec.keys(p)
        assert {key_slot(k) for k in (keys.pending, keys.inflight, keys.values("{x}y"), keys.seq)} == {
            key_slot(keys.pending)}


def test_decimal_and_whole_amounts_sum_exactly(url: str, qname: str, out: Path, producer: Any) -> None:
    hot = producer(f"{qname}-dec", flush_to="buffer_jobs.apply", queue=qname)
    hot.incr("k", {"n": 2, "score": 0.25})
    hot.incr("k", {"n": 3, "score": 0.5})
    hot.incr("k", {"score": 1})  # a whole amount onto a decimal sum
    Buffer(f"{qname}-dec", url, flush_to="buffer_jobs.apply", queue=qname).flush()
    drain(Queue(qname, url))
    [row] = applied(out)
    assert row["increments"] == {"n": 5, "score": 1.75}


def test_a_flush_takes_bounded_batches_oldest_first(url: str, qname: str) -> None:
    buffer = Buffer(f"{qname}-batch", url, flush_to="buffer_jobs.apply", queue=qname, batch=100)
    buffer.incr_many([(f"k{i:03}", {"n": 1}) for i in range(250)])
    first = buffer.flush(max_rounds=1)
    assert (first.records, first.rounds) == (100, 1)
    assert buffer.pending() == 150
    queue = Queue(qname, url)
    taken = {job.args[0] for job in (queue.fetch_job(i) for i in queue.get_job_ids()) if job is not None}
    assert taken == {f"k{i:03}" for i in range(100)}  # the oldest hundred
    rest = buffer.flush()
    assert (rest.records, rest.rounds) == (150, 2)  # 100, then 50: the partition answered short
    assert buffer.pending() == 0 and queue.count == 250


def test_min_age_leaves_young_keys_to_gather_more(url: str, qname: str) -> None:
    buffer = Buffer(f"{qname}-age", url, flush_to="buffer_jobs.apply", queue=qname, min_age_s=3600)
    buffer.incr("k", {"n": 1})
    assert buffer.flush().records == 0 and buffer.pending() == 1


def test_increments_after_a_take_go_to_the_next_flush(url: str, qname: str, out: Path) -> None:
    buffer = Buffer(f"{qname}-next", url, flush_to="buffer_jobs.apply", queue=qname)
    buffer.incr("k", {"n": 1})
    buffer.flush()
    buffer.incr("k", {"n": 10})
    buffer.flush()
    drain(Queue(qname, url))
    assert sorted(row["increments"]["n"] for row in applied(out)) == [1, 10]


def test_a_flusher_dying_after_its_take_loses_nothing_and_doubles_nothing(url: str, qname: str, out: Path) -> None:
    buffer = Buffer(f"{qname}-crash", url, partitions=2, flush_to="buffer_jobs.apply", queue=qname, lease_s=0.3)
    buffer.incr_many([(f"k{i}", {"n": i}) for i in range(20)])
    store = T.Store(buffer.client)
    # A flusher took every record and died before enqueueing anything.
    lost = [B.parse_take(p, store.run(B.take_call(buffer.spec.keys(p), 100, 300, 0))) for p in range(2)]
    assert sum(len(rs) for rs in lost) == 20 and buffer.pending() == 0 and buffer.in_flight() == 20
    assert buffer.flush().records == 0  # still leased to the dead flusher
    wait_for(lambda: buffer.flush().records == 20, "the records whose lease ended")
    queue = Queue(qname, url)
    assert queue.count == 20 and buffer.in_flight() == 0
    # Same ids as the dead flusher's: a record taken again keeps its flush id.
    assert set(queue.get_job_ids()) == {r.flush_id(buffer.name) for rs in lost for r in rs}

    # A flusher that enqueued but died before its acknowledgement: the next flush enqueues the same ids,
    # which exist, so no job runs twice.
    buffer.incr_many([(f"j{i}", {"n": 1}) for i in range(5)])
    part = B.partition_of("j0", 2)
    records = B.parse_take(part, store.run(B.take_call(buffer.spec.keys(part), 100, 300, 0)))
    assert records and buffer.in_flight() == len(records)
    queue.enqueue_many([buffer._job(r) for r in records])
    wait_for(lambda: (buffer.flush(), buffer.in_flight() == 0 and buffer.pending() == 0)[1], "every record acked")
    assert queue.count == 25
    drain(queue)
    sums = totals(out)
    assert {k: c["n"] for k, c in sums.items()} == {**{f"k{i}": i for i in range(20)}, **{f"j{i}": 1 for i in range(5)}}
    assert len(applied(out)) == 25  # one job per record, none twice


def test_a_worker_flushes_the_buffers_it_is_given(url: str, qname: str, out: Path) -> None:
    buffer = Buffer(f"{qname}-w", url, partitions=3, flush_to="buffer_jobs.apply", queue=qname, interval_s=0.1)
    queue = Queue(qname, url)
    worker = Worker([queue], queue.connection, pool="thread", concurrency=2, install_signal_handlers=False,
                    buffers=[buffer])
    with running(worker):
        for round_ in range(3):
            buffer.incr_many([(f"k{i}", {"n": 1}) for i in range(10)])
            wait_for(lambda r=round_: sum(c["n"] for c in totals(out).values()) == 10 * (r + 1), "the flushed sums")
    assert {k: c["n"] for k, c in totals(out).items()} == {f"k{i}": 3 for i in range(10)}


def test_two_declarations_of_one_buffer_must_agree_on_partitions(url: str, qname: str, producer: Any) -> None:
    producer(f"{qname}-p", partitions=4).incr("k", {"n": 1})
    other = producer(f"{qname}-p", partitions=8)
    with pytest.raises(BufferError, match="has 4 partitions in Redis, but this Buffer declares 8"):
        other.incr("k", {"n": 1})


@pytest.mark.parametrize("bad, message", [
    (lambda b: b.incr(3, {"n": 1}), "buffer key must be a non-empty str"),
    (lambda b: b.incr("", {"n": 1}), "buffer key must be a non-empty str"),
    (lambda b: b.incr("k", {}), "non-empty dict"),
    (lambda b: b.incr("k", {"n": True}), "must be an int or a float"),
    (lambda b: b.incr("k", {"n": "1"}), "must be an int or a float"),
    (lambda b: b.incr("k", {"n": float("nan")}), "must be finite"),
    (lambda b: b.incr("k", {"n": 2**64}), "beyond a 64-bit integer"),
    (lambda b: b.incr("k", {1: 1}), "field must be a non-empty str"),
    (lambda b: b.incr("k\ud800", {"n": 1}), "not valid text"),
    (lambda b: b.incr_many([("ok", {"n": 1}), ("bad", {"n": None})]), "must be an int or a float"),
])
def test_bad_increments_are_refused_at_the_call_with_nothing_written(url: str, qname: str, producer: Any,
                                                                     bad: Any, message: str) -> None:
    buffer = producer(f"{qname}-bad")
    with pytest.raises(BufferError, match=message):
        bad(buffer)
    assert Buffer(f"{qname}-bad", url).pending() == 0


@pytest.mark.parametrize("options, message", [
    ({"partitions": 0}, "partitions must be from 1 to 1024"),
    ({"partitions": 1025}, "partitions must be from 1 to 1024"),
    ({"partitions": "4"}, "partitions must be an int"),
    ({"batch": 0}, "batch must be a whole number above 0"),
    ({"lease_s": float("inf")}, "lease_s must be a finite number"),
    ({"job_id": "x"}, "cannot be set on a buffer's flush jobs"),
    ({"colour": "red"}, "unknown job option"),
    ({"ttl": 0}, "ttl"),
    ({"job_timeout": "soon"}, "job_timeout"),
])
def test_bad_declarations_are_refused(url: str, options: dict[str, Any], message: str) -> None:
    with pytest.raises((BufferError, ValueError), match=message):
        Buffer("b", url, flush_to="buffer_jobs.apply", **options)


def test_a_buffer_without_flush_to_cannot_be_flushed(url: str, qname: str) -> None:
    with pytest.raises(BufferError, match="no flush_to"):
        Buffer(qname, url).flush()
