"""The worker's outcome buffer (clusterq.worker.outcomes): buffered, taken as one batch per send, settled
queue by queue; and the set-aside queues' own back-off (clusterq.worker.fetch.SetAside). Pure: no server,
the replies are written out as a server gives them."""

from __future__ import annotations

import time

import redis

from clusterq.state import keys as K
from clusterq.state import store as T
from clusterq.worker.outcomes import Outcomes


def _outcome(job_id: str, status: str = "finished") -> T.Outcome:
    return T.Outcome(job_id, 1, status, b"", 1000)


def _buffer(*queues: str) -> Outcomes:
    return Outcomes({q: K.QueueKeys(q) for q in queues})


def test_outcomes_are_taken_as_one_complete_call_per_queue_in_the_order_they_finished() -> None:
    outcomes = _buffer("a", "b")
    for queue, job_id in (("a", "1"), ("b", "2"), ("a", "3")):
        outcomes.add(queue, _outcome(job_id))
    batch = outcomes.take()
    assert not outcomes and len(batch) == 2 and batch.queues == ["a", "b"]
    assert batch.calls[0].args[0::8] == ("1", "3")  # each outcome's id leads its 8 arguments
    assert batch.calls[0].keys[0] == K.QueueKeys("a").active


def test_a_settled_batch_reports_recorded_lost_and_outcomes_with_dependents() -> None:
    outcomes = _buffer("a")
    for job_id in ("1", "2", "3"):
        outcomes.add("a", _outcome(job_id))
    settled = outcomes.take().settle([[1, 0, 2]])
    assert settled.recorded == [("a", "1"), ("a", "2"), ("a", "3")]
    assert settled.lost == [("a", "2")]
    assert [queue for queue, _ in settled.forward] == ["a"] and not settled.failed
    assert not outcomes


def test_a_failed_queue_keeps_its_outcomes_ahead_of_newer_ones_while_the_others_are_done() -> None:
    outcomes = _buffer("a", "b")
    outcomes.add("a", _outcome("1"))
    outcomes.add("b", _outcome("2"))
    batch = outcomes.take()
    outcomes.add("a", _outcome("3"))  # finished while the batch was in flight
    error = redis.ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value")
    settled = batch.settle([error, [1]])
    assert settled.failed == {"a": error} and settled.recorded == [("b", "2")]
    assert outcomes.buffered_ids() == {("a", "1"), ("a", "3")}
    again = outcomes.take()
    assert again.calls[0].args[0::8] == ("1", "3")


def test_an_unsent_batch_goes_back_whole_and_only_once() -> None:
    outcomes = _buffer("a")
    outcomes.add("a", _outcome("1"))
    batch = outcomes.take()
    batch.unsent()
    batch.unsent()
    assert len(outcomes) == 1


def test_a_set_aside_queue_keeps_its_outcomes_buffered_while_the_others_are_taken() -> None:
    outcomes = _buffer("a", "b")
    outcomes.add("a", _outcome("1"))
    outcomes.add("b", _outcome("2"))
    batch = outcomes.take(exclude={"a"})
    assert batch.queues == ["b"] and outcomes.buffered_ids() == {("a", "1")}


def test_a_batch_is_sent_once_settled_batches_are_empty_and_unsent_does_nothing_after() -> None:
    outcomes = _buffer("a")
    outcomes.add("a", _outcome("1"))
    batch = outcomes.take()
    assert batch
    batch.settle([[1]])
    assert not batch, "a settled batch must not ride with a second round trip"
    batch.unsent()
    assert not outcomes


def test_a_set_aside_queue_backs_off_on_its_own_and_a_success_in_the_round_it_failed_does_not_clear_it(
        caplog) -> None:
    from clusterq.worker.fetch import SET_ASIDE_MAX_S, SetAside

    aside = SetAside()
    error = redis.ConnectionError("Connection refused")
    aside.begin_round()
    aside.fail("a", "leasing", error)
    assert "a" in aside and aside.waiting() == {"a"} and not aside.take_due()
    aside.ok("a")  # its lease went through in the round its outcomes failed: still set aside
    assert "a" in aside
    for _ in range(10):
        aside.fail("a", "leasing", error)
    assert max(aside.deadlines()) - time.monotonic() <= SET_ASIDE_MAX_S
    aside.begin_round()
    aside.ok("a")
    assert "a" not in aside and not aside.waiting() and not aside.deadlines()
    assert any("queue 'a' set aside: leasing failed (ConnectionError: Connection refused)" in r.getMessage()
               for r in caplog.records)
