"""Bounded script calls (clusterq.worker.outcomes.SCRIPT_JOBS): a large batch of outcomes is cut into
complete calls settled part by part, and the scripts write the active set and the registries once per call
(in slices for a batch larger than Lua's unpack allows), with every lease still fenced."""

from __future__ import annotations

import pytest

from clusterq import Queue, Worker
from clusterq.state import keys as K
from clusterq.state import store as T
from clusterq.state import transitions as TR
from clusterq.worker.outcomes import SCRIPT_JOBS, Outcomes
from clusterq.worker.settings import WorkerSettings


def _outcome(job_id: str) -> T.Outcome:
    return T.Outcome(job_id, 1, "finished", b"", 1000)


def test_a_large_batch_of_outcomes_is_cut_into_bounded_calls_and_a_failed_part_goes_back_in_order() -> None:
    outcomes = Outcomes({"a": K.QueueKeys("a")})
    ids = [str(i) for i in range(2 * SCRIPT_JOBS + 1)]
    for job_id in ids:
        outcomes.add("a", _outcome(job_id))
    batch = outcomes.take()
    assert [len(call.args) // 8 for call in batch.calls] == [SCRIPT_JOBS, SCRIPT_JOBS, 1]
    settled = batch.settle([[1] * SCRIPT_JOBS, ConnectionError("down"), [1]])
    assert "a" in settled.failed
    assert [job_id for _, job_id in settled.recorded] == ids[:SCRIPT_JOBS] + ids[-1:]
    again = outcomes.take()  # the refused part is buffered again, in its order
    assert again.calls[0].args[0::8] == tuple(ids[SCRIPT_JOBS : 2 * SCRIPT_JOBS])


def test_lease_and_complete_handle_a_batch_larger_than_one_slice(url: str, qname: str) -> None:
    queue = Queue(qname, url)
    queue.enqueue_many([Queue.prepare_data("jobs.noop") for _ in range(1200)])
    store, qk = queue.store, queue.keys
    reply = T.parse_lease_reply(qname, store.run(T.lease_call(qk, 1200, 60_000, "w", 1000)))
    assert len(reply.jobs) == 1200
    client = store.client
    assert client.zcard(qk.active) == 1200
    outs = [T.Outcome(job.id, job.token, "finished", b"1", 60_000) for job in reply.jobs]
    codes = TR.parse_complete(store.run(T.complete_call(qk, outs)))
    assert codes == [TR.CompleteCode.RECORDED] * 1200
    assert client.zcard(qk.active) == 0
    assert client.zcard(qk.finished) == 1200
    assert client.hget(qk.job(reply.jobs[0].id), "s") == b"finished"


def test_complete_fences_a_stale_token_and_records_an_id_given_twice_once(url: str, qname: str) -> None:
    queue = Queue(qname, url)
    queue.enqueue_many([Queue.prepare_data("jobs.noop") for _ in range(2)])
    store, qk = queue.store, queue.keys
    first, second = T.parse_lease_reply(qname, store.run(T.lease_call(qk, 2, 60_000, "w", 1000))).jobs
    outs = [T.Outcome(first.id, first.token, "finished", b"1", 60_000),
            T.Outcome(first.id, first.token, "failed", b"again", 60_000),
            T.Outcome(second.id, second.token + 1, "finished", b"stale", 60_000)]
    codes = TR.parse_complete(store.run(T.complete_call(qk, outs)))
    assert codes == [TR.CompleteCode.RECORDED, TR.CompleteCode.LEASE_LOST, TR.CompleteCode.LEASE_LOST]
    client = store.client
    assert client.hget(qk.job(first.id), "s") == b"finished" and client.zcard(qk.failed) == 0
    assert client.hget(qk.job(second.id), "s") == b"started"  # still leased: its real token can complete it
    assert client.zscore(qk.active, second.id) is not None


def test_a_worker_with_large_batches_and_two_batches_in_flight_runs_every_job_once(url: str, qname: str) -> None:
    queue = Queue(qname, url)
    queue.enqueue_many([Queue.prepare_data("jobs.noop") for _ in range(600)])
    worker = Worker([queue], pool="process", concurrency=2, max_batch=200, batch_target_s=10.0,
                    install_signal_handlers=False)
    assert worker.work(burst=True) == 600
    assert queue.finished_job_registry.count == 600
    assert queue.count == 0 and queue.started_job_registry.count == 0


def test_a_round_trip_budget_takes_the_oldest_outcomes_and_keeps_the_rest_in_order() -> None:
    outcomes = Outcomes({"a": K.QueueKeys("a"), "b": K.QueueKeys("b")})
    for job_id in ("a1", "a2", "a3"):
        outcomes.add("a", _outcome(job_id))
    for job_id in ("b1", "b2"):
        outcomes.add("b", _outcome(job_id))
    first = outcomes.take(limit=4)
    assert [[o.id for o in part] for part in first.parts] == [["a1", "a2", "a3"], ["b1"]]
    assert len(outcomes) == 1
    first.unsent()  # back at the head of each queue's outcomes, ahead of what stayed
    again = outcomes.take(limit=4)
    assert sum(map(len, again.parts)) == 4 and len(outcomes) == 1
    again.unsent()
    rest = outcomes.take()
    assert {q: [o.id for o in outs] for q, outs in zip(rest.queues, rest.parts)} == {
        "a": ["a1", "a2", "a3"], "b": ["b1", "b2"]}
    assert not outcomes


def test_a_worker_with_a_small_round_trip_budget_runs_every_job_once(url: str, qname: str) -> None:
    queue = Queue(qname, url)
    queue.enqueue_many([Queue.prepare_data("jobs.noop") for _ in range(300)])
    worker = Worker([queue], pool="process", concurrency=2, round_jobs=7, install_signal_handlers=False)
    assert worker.work(burst=True) == 300
    assert queue.finished_job_registry.count == 300
    assert queue.count == 0 and queue.started_job_registry.count == 0


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "300"])
def test_a_round_trip_budget_that_is_not_a_positive_whole_number_is_refused_at_the_call(
    url: str, qname: str, bad: object
) -> None:
    queue = Queue(qname, url)
    with pytest.raises(ValueError, match=r"round_jobs must be a whole number of jobs, 1 or more; got "):
        Worker([queue], round_jobs=bad, install_signal_handlers=False)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="round_jobs"):
        WorkerSettings(round_jobs=bad)  # type: ignore[arg-type]
