"""A worker's round trip in bounded writes (clusterq.connection.packed.exchange ``writes``,
clusterq.state.store.writes_of, clusterq.worker.leases.WRITE_JOBS).

Redis runs everything it has read from one connection before it serves another client, so a worker's
round trip goes to the server in writes of a bounded number of jobs, pipelined two ahead: another
client waits for about one write's work, not the whole round trip's. These tests check the pieces on a
real server: how calls are cut into writes, that the server reads the writes apart, that replies come
back whole and in order, and that a connection lost between writes sends again only what was not
answered.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from redis.backoff import NoBackoff
from redis.exceptions import ResponseError
from redis.retry import Retry

import jobs
from clusterq import Queue, Worker
from clusterq.connection.packed import exchange, pack_command
from clusterq.state import keys as K
from clusterq.state import scripts as S
from clusterq.state import store as T
from clusterq.worker import leases as L
from clusterq.worker.outcomes import SCRIPT_JOBS


def _call(jobs: int) -> T.Call:
    return T.Call(S.ENQUEUE, ("k",), (), jobs)


def test_calls_are_cut_into_writes_of_at_most_so_many_jobs_and_a_heavier_call_goes_alone() -> None:
    calls = [_call(n) for n in (5, 10, 10, 30, 1, 1)]
    assert T.writes_of(calls, 20) == [2, 1, 1, 2]  # 5+10 | 10 | 30 alone | 1+1
    assert T.writes_of(calls, None) == [6]
    assert T.writes_of([], 20) == []
    assert sum(T.writes_of([_call(1)] * 45, 20)) == 45


def test_each_call_says_how_many_jobs_it_works_on() -> None:
    qk = K.QueueKeys("q-{x}")
    assert T.lease_call(qk, 17, 30_000, "w", 1000).jobs == 17
    assert T.extend_call(qk, [("a", 1), ("b", 1), ("c", 2)], 30_000).jobs == 3
    assert T.release_call(qk, [("a", 1)]).jobs == 1
    assert T.promote_call(qk, 250).jobs == 250
    assert 1 <= SCRIPT_JOBS <= L.WRITE_JOBS  # a full lease or complete call fits one write


def _reads(admin: Any) -> int:
    return int(admin.info("stats")["total_reads_processed"])


def test_the_server_reads_the_writes_apart_and_every_reply_comes_back_in_order(clusterq_standalone: Any) -> None:
    p = uuid.uuid4().hex  # the server is shared by the module's tests
    client = clusterq_standalone.client()
    admin = clusterq_standalone.client()
    packed = [pack_command(("INCRBY", f"{p}w:{i % 5}", i)) for i in range(40)]
    assert all(packed)
    client.ping()  # the connection's set-up (HELLO, CLIENT SETINFO) is done before counting
    _reads(admin)

    before = _reads(admin)
    whole = exchange(client, packed)  # type: ignore[arg-type]
    one_write = _reads(admin) - before - 1  # the INFO call is a read too

    before = _reads(admin)
    cut = exchange(client, packed, writes=[4] * 10)  # type: ignore[arg-type]
    ten_writes = _reads(admin) - before - 1

    assert one_write <= 2  # 40 small commands arrive together
    # At most two writes are unanswered at a time (two ahead), so a read takes in two of them at most.
    assert ten_writes >= 5 and ten_writes > one_write
    first_pass = [sum(range(i % 5, i + 1, 5)) for i in range(40)]  # each key's running total
    assert whole == first_pass
    assert cut == [sum(range(i % 5, 40, 5)) + first_pass[i] for i in range(40)]  # on top of the first's


def test_an_error_reply_takes_its_commands_place_and_the_writes_after_it_still_run(clusterq_standalone: Any) -> None:
    p = uuid.uuid4().hex
    client = clusterq_standalone.client()
    client.set(f"{p}e:str", "x")
    packed = [pack_command(("INCR", f"{p}e:{k}")) for k in ("1", "str", "2", "3")]
    replies = exchange(client, packed, writes=[1, 1, 2])  # type: ignore[arg-type]
    assert replies[0] == 1 and isinstance(replies[1], ResponseError) and replies[2:] == [1, 1]
    assert client.ping()


def test_a_connection_lost_between_writes_sends_again_only_the_unanswered_ones(clusterq_standalone: Any) -> None:
    p = uuid.uuid4().hex
    client = clusterq_standalone.client(retry=Retry(NoBackoff(), 3))
    admin = clusterq_standalone.client()
    packed = [pack_command(("INCR", f"{p}r:{i}")) for i in range(6)]
    calls: list[int] = []

    def kill_it() -> None:  # runs once the first writes are sent, before a reply is read
        calls.append(1)
        assert admin.client_kill_filter(_type="normal", skipme=True) >= 1

    replies = exchange(client, packed, while_waiting=kill_it, writes=[1] * 6)  # type: ignore[arg-type]
    assert calls == [1]  # called on the first attempt only
    assert len(replies) == 6 and all(r in (1, 2) for r in replies)
    counts = [int(admin.get(f"{p}r:{i}") or 0) for i in range(6)]
    # At most the writes sent before the loss (two ahead) can have run twice; every later one ran once.
    assert counts[2:] == [1, 1, 1, 1] and all(c in (1, 2) for c in counts[:2])
    assert replies == counts
    assert client.ping()


def test_a_worker_drains_a_queue_through_bounded_writes(clusterq_url: str, qname: str) -> None:
    q = Queue(qname, clusterq_url)
    n = 3 * L.WRITE_JOBS + 7
    q.enqueue_many([q.prepare_data(jobs.add, (i, i)) for i in range(n)])
    worker = Worker([qname], clusterq_url, install_signal_handlers=False, pool="solo", max_batch=200)
    assert worker.work(burst=True) == n
    assert q.count == 0
    assert q.finished_job_registry.count == n


def test_a_connection_lost_after_some_replies_keeps_them_and_sends_again_only_the_rest(
        clusterq_standalone: Any) -> None:
    p = uuid.uuid4().hex
    client = clusterq_standalone.client(retry=Retry(NoBackoff(), 3))
    admin = clusterq_standalone.client()
    own_id = client.client_id()  # the pool's one connection: the exchange gets it back
    packed = [pack_command(a) for a in (("INCR", f"{p}s:0"), ("INCR", f"{p}s:1"), ("INCR", f"{p}s:2"),
                                        ("CLIENT", "KILL", "ID", own_id, "SKIPME", "no"),  # the server closes it
                                        ("INCR", f"{p}s:4"), ("INCR", f"{p}s:5"))]
    replies = exchange(client, packed, writes=[1] * 6)  # type: ignore[arg-type]
    assert replies[:3] == [1, 1, 1] and replies[4:] == [1, 1]
    assert replies[3] in (1, b"OK", True) or isinstance(replies[3], ResponseError)  # sent again: no such client
    # The writes answered before the loss ran once (not sent again), and so did those after it.
    assert [int(admin.get(f"{p}s:{i}") or 0) for i in (0, 1, 2, 4, 5)] == [1, 1, 1, 1, 1]


@pytest.mark.parametrize("writes", [None, [3, 3, 3]])
def test_every_reply_of_an_exchange_is_read_so_the_connection_stays_in_step(
        clusterq_standalone: Any, writes: list[int] | None) -> None:
    client = clusterq_standalone.client(max_connections=1)
    packed = [pack_command(("ECHO", str(i))) for i in range(9)]
    assert exchange(client, packed, writes=writes) == [str(i).encode() for i in range(9)]  # type: ignore[arg-type]
    assert client.echo("next") == b"next"  # the one connection has nothing left over


def _evalsha_calls(admin: Any) -> int:
    return int(admin.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0))


def test_a_queue_that_came_back_short_is_asked_for_one_call_first(clusterq_standalone: Any) -> None:
    """A warm worker (short jobs: big batches) with room for hundreds of jobs and a queue holding 3 sends
    one lease call, not dozens of which all but one find the queue empty (each a write of its own: an
    idle worker's wake-up would pay for all of them)."""
    admin = clusterq_standalone.client()
    url = clusterq_standalone.url
    name = f"few-{uuid.uuid4().hex[:8]}"
    q = Queue(name, url)
    worker = Worker([name], url, install_signal_handlers=False, pool="process", concurrency=2, max_batch=200)
    for lane in worker.lanes:
        lane.avg_job_s = 1e-5  # what a worker that ran many short jobs has measured: batches of max_batch
    for i in range(3):
        q.enqueue(jobs.add, i, i)
    before = _evalsha_calls(admin)
    assert worker.work(burst=True) == 3
    calls = _evalsha_calls(admin) - before
    # a lease or two, a complete or two, the burst's last look, and the worker's own bookkeeping
    # (maintenance): about ten, where asking for the whole room made more than fifty
    assert calls <= 15, calls
    assert q.finished_job_registry.count == 3


def test_a_warm_worker_drains_a_long_queue_without_a_train_of_empty_lease_calls(clusterq_standalone: Any) -> None:
    admin = clusterq_standalone.client()
    url = clusterq_standalone.url
    name = f"many-{uuid.uuid4().hex[:8]}"
    q = Queue(name, url)
    n = 10 * SCRIPT_JOBS
    q.enqueue_many([q.prepare_data(jobs.add, (i, i)) for i in range(n)])
    worker = Worker([name], url, install_signal_handlers=False, pool="process", concurrency=2, max_batch=200)
    for lane in worker.lanes:
        lane.avg_job_s = 1e-5
    before = _evalsha_calls(admin)
    assert worker.work(burst=True) == n
    calls = _evalsha_calls(admin) - before
    # n / SCRIPT_JOBS full lease calls and about as many completes, plus a few: not a room's worth of
    # lease calls finding the queue empty once it has drained
    assert calls <= 2 * n // SCRIPT_JOBS + 20, calls
    assert q.finished_job_registry.count == n
