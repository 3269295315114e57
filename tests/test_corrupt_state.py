"""Corrupted state (issue 16, items 3 and 11): keys of a queue overwritten with another type, numbers Redis
would refuse, and job records edited by hand. On every topology.

Redis keeps the writes a script made before a runtime error, so a script must check everything that can
fail before its first write: a broken key is refused with an error naming it and nothing written (the
other queues, and the jobs of this one, are untouched). A malformed job record met in the queue becomes a
failed record that says why, listed in the failed registry: never dropped unseen, never run twice.

The state is corrupted with raw commands on the queue's keys (``clusterq.state.keys``, reached through
``queue.keys``), as an operator's typo or a stray ``SET`` would.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import redis

from clusterq import JobStatus, Queue, Worker
from clusterq.api.options import MAX_DURATION_S
from clusterq.exceptions import ClusterQError
from clusterq.state import scripts as S
from clusterq.state import store as T
from clusterq.state import transitions as TR

pytestmark = pytest.mark.compat  # the scripts run on the engine: also on the second server engine

LEASE_MS = 60_000


def burst(url: str, queues: Any) -> Worker:
    worker = Worker(queues, url, pool="solo", install_signal_handlers=False)
    worker.work(burst=True)
    return worker


def lease(queue: Queue, count: int = 10) -> list[T.LeasedJob]:
    return T.parse_lease(queue.name, queue.store.run(T.lease_call(queue.keys, count, LEASE_MS, "w-test", LEASE_MS)))[1]


def refused(error: BaseException, key: str, found: str = "string") -> None:
    """The error is a script's clean refusal naming ``key`` (what the worker reads to set the queue aside)."""
    broken = TR.broken_key(error)
    assert broken is not None, f"not a clean WRONGTYPE refusal: {error}"
    assert (broken.key, broken.found) == (key, found)
    assert "nothing was written" in str(error)


# --- item 3: a broken key stops a script before it writes ----------------------------------------------

def test_a_wrong_type_active_set_stops_the_lease_before_it_takes_any_job(url: str, qname: str) -> None:
    queue = Queue(qname, url)
    jobs = [queue.enqueue("jobs.add", i, 1) for i in range(3)]
    queue.connection.set(queue.keys.active, "overwritten")
    with pytest.raises(redis.ResponseError) as error:
        lease(queue)
    refused(error.value, queue.keys.active)
    # nothing was taken: before the check, the first job was left started outside the started registry
    # and the other two were popped from the queue and forgotten
    assert queue.count == 3
    assert [job.get_status() for job in jobs] == [JobStatus.QUEUED] * 3
    queue.connection.delete(queue.keys.active)
    assert burst(url, qname).stats.finished == 3
    assert [job.latest_result().return_value for job in jobs] == [1, 2, 3]


def test_a_wrong_type_prio_set_is_reported_by_the_lease_that_reaches_it(url: str, qname: str) -> None:
    # jobs of the pending list are leased (the prio set is not TYPE-checked first); the call that would
    # pop the prio set refuses, naming it, with nothing written
    queue = Queue(qname, url)
    jobs = [queue.enqueue("jobs.noop") for _ in range(2)]
    queue.connection.set(queue.keys.prio, "overwritten")
    reply = T.parse_lease(queue.name, queue.store.run(T.lease_call(queue.keys, 10, LEASE_MS, "w-test", LEASE_MS)))
    assert reply[0] == 1, "more may wait: the worker calls again"
    assert [job.id for job in reply[1]] == [job.id for job in jobs]
    assert queue.started_job_registry.count == 2
    with pytest.raises(redis.ResponseError) as error:
        lease(queue)
    refused(error.value, queue.keys.prio)


def test_a_broken_queue_fails_alone_when_leased_with_others(url: str, qname: str) -> None:
    broken, healthy = Queue(qname, url), Queue(qname + "-ok", url)
    broken.enqueue("jobs.noop")
    good = healthy.enqueue("jobs.noop")
    broken.connection.set(broken.keys.pending, "overwritten")
    calls = [T.lease_call(q.keys, 10, LEASE_MS, "w-test", LEASE_MS) for q in (broken, healthy)]
    results = broken.store.run_many(calls, raise_on_error=False)
    refused(results[0], broken.keys.pending)
    assert [job.id for job in T.parse_lease(healthy.name, results[1])[1]] == [good.id]


def test_an_outcome_redis_would_refuse_records_nothing_of_its_batch(url: str, qname: str) -> None:
    queue = Queue(qname, url)
    first, second = queue.enqueue("jobs.noop"), queue.enqueue("jobs.noop")
    leased = lease(queue)
    # a keep time of 1e20 ms (an old or forged result_ttl): PEXPIRE refuses it, after the record was written
    outcomes = [T.Outcome(leased[0].id, leased[0].token, "finished", b"1", 60_000),
                T.Outcome(leased[1].id, leased[1].token, "finished", b"2", 10**20)]
    with pytest.raises(redis.ResponseError, match=f"job {second.id}: keep_ms '1{'0' * 20}' is not a whole number"):
        queue.store.run(T.complete_call(queue.keys, outcomes))
    assert [first.get_status(), second.get_status()] == [JobStatus.STARTED] * 2
    assert queue.started_job_registry.count == 2 and queue.finished_job_registry.count == 0
    outcomes[1] = T.Outcome(leased[1].id, leased[1].token, "finished", b"2", 60_000)
    assert queue.store.run(T.complete_call(queue.keys, outcomes)) == [TR.CompleteCode.RECORDED] * 2
    assert queue.finished_job_registry.count == 2 and queue.started_job_registry.count == 0


def test_a_wrong_type_active_set_is_refused_by_complete_with_nothing_written(url: str, qname: str) -> None:
    # complete checks the active set with its own ZMSCORE (a read before its first write), not a TYPE
    queue = Queue(qname, url)
    job = queue.enqueue("jobs.noop")
    (leased,) = lease(queue)
    queue.connection.set(queue.keys.active, "overwritten")
    outcome = T.Outcome(leased.id, leased.token, "finished", b"null", 60_000)
    with pytest.raises(redis.ResponseError) as error:
        queue.store.run(T.complete_call(queue.keys, [outcome]))
    refused(error.value, queue.keys.active)
    assert job.get_status() == JobStatus.STARTED and queue.finished_job_registry.count == 0
    assert queue.connection.hget(queue.keys.job(job.id), "r") is None


def test_a_wrong_type_finished_registry_leaves_the_job_started_and_leased(url: str, qname: str) -> None:
    queue = Queue(qname, url)
    job = queue.enqueue("jobs.noop")
    (leased,) = lease(queue)
    queue.connection.set(queue.keys.finished, "overwritten")
    outcome = T.Outcome(leased.id, leased.token, "finished", b"null", 60_000)
    with pytest.raises(redis.ResponseError) as error:
        queue.store.run(T.complete_call(queue.keys, [outcome]))
    refused(error.value, queue.keys.finished)
    # before: the record said finished, sat in no registry, and the lease was gone (retried for ever)
    assert job.get_status() == JobStatus.STARTED and queue.started_job_registry.count == 1
    queue.connection.delete(queue.keys.finished)
    assert queue.store.run(T.complete_call(queue.keys, [outcome])) == [TR.CompleteCode.RECORDED]
    assert job.get_status() == JobStatus.FINISHED and queue.finished_job_registry.count == 1


def test_a_job_key_that_is_not_a_hash_loses_only_its_own_outcome(url: str, qname: str) -> None:
    queue = Queue(qname, url)
    good, bad = queue.enqueue("jobs.noop"), queue.enqueue("jobs.noop")
    leased = lease(queue)
    queue.connection.delete(bad.key)
    queue.connection.set(bad.key, "overwritten")
    outcomes = [T.Outcome(j.id, j.token, "finished", b"null", 60_000) for j in leased]
    assert queue.store.run(T.complete_call(queue.keys, outcomes)) == [TR.CompleteCode.RECORDED,
                                                                      TR.CompleteCode.LEASE_LOST]
    assert good.get_status() == JobStatus.FINISHED


def test_a_wrong_type_pending_list_refuses_enqueue_without_writing_the_record(url: str, qname: str) -> None:
    queue = Queue(qname, url)
    queue.connection.set(queue.keys.pending, "overwritten")
    with pytest.raises((redis.ResponseError, ClusterQError)) as error:
        queue.enqueue("jobs.noop", job_id="orphan")
    assert queue.keys.pending in str(error.value) and "not a list" in str(error.value)
    assert not queue.connection.exists(queue.keys.job("orphan")), "no queued record outside the queue"


def test_maintenance_recovers_the_other_expired_leases_when_one_job_key_is_not_a_hash(url: str, qname: str) -> None:
    queue = Queue(qname, url)
    jobs = [queue.enqueue("jobs.noop") for _ in range(3)]
    leased = lease(queue)
    queue.store.run(T.extend_call(queue.keys, [(j.id, j.token) for j in leased], 0))  # the leases end now
    queue.connection.delete(jobs[1].key)
    queue.connection.set(jobs[1].key, "overwritten")
    recovered = TR.parse_recover(queue.store.run(T.requeue_expired_call(queue.keys, 100, 3, 60_000)))
    assert (recovered.requeued, recovered.abandoned) == (2, 0)
    assert [jobs[0].get_status(), jobs[2].get_status()] == [JobStatus.QUEUED] * 2
    assert queue.started_job_registry.count == 0
    assert burst(url, qname).stats.finished == 2


def test_counters_edited_by_hand_start_again_instead_of_stopping_a_script_half_way(url: str, qname: str) -> None:
    queue = Queue(qname, url)
    queue.connection.hset(queue.keys.stats, mapping={"pseq": "x", "tomb": "1.5"})
    first = queue.enqueue("jobs.add", 1, 2, priority=1)  # bumps "pseq"
    second = queue.enqueue("jobs.add", 2, 2)
    second.cancel()  # bumps "tomb"
    assert burst(url, qname).stats.finished == 1
    assert first.latest_result().return_value == 3 and second.get_status() == JobStatus.CANCELED
    assert queue.count == 0


def test_a_job_key_that_is_not_a_hash_can_be_deleted(url: str, qname: str) -> None:
    queue = Queue(qname, url)
    queue.connection.set(queue.keys.job("broken"), "overwritten")
    assert queue.store.run(T.delete_call(queue.keys, "broken")) == TR.DeleteCode.DELETED
    assert not queue.connection.exists(queue.keys.job("broken"))


@pytest.mark.parametrize("registry", ["failed", "canceled"])
def test_maintenance_and_cancel_refuse_a_wrong_type_registry_without_touching_the_job(
    url: str, qname: str, registry: str
) -> None:
    queue = Queue(qname, url)
    job = queue.enqueue("jobs.noop")
    lease(queue)
    queue.connection.set(queue.keys.registry(registry), "overwritten")
    call = (T.requeue_expired_call(queue.keys, 100, 3, 60_000) if registry == "failed"
            else T.cancel_call(queue.keys, job.id, 60_000))
    with pytest.raises(redis.ResponseError) as error:
        queue.store.run(call)
    refused(error.value, queue.keys.registry(registry))
    assert job.get_status() == JobStatus.STARTED and queue.started_job_registry.count == 1


def test_a_broken_concurrency_key_puts_the_batch_back_as_it_was(url: str, qname: str) -> None:
    queue = Queue(qname, url)
    queue.set_concurrency_limit("k", 1)
    free = queue.enqueue("jobs.noop")
    limited = queue.enqueue("jobs.noop", concurrency_key="k")
    running_set = queue.keys.limit_running_prefix + "k"
    queue.connection.set(running_set, "overwritten")
    with pytest.raises(redis.ResponseError) as error:
        lease(queue)
    refused(error.value, running_set)
    assert [job.id for job in queue.get_jobs(0, 10)] == [free.id, limited.id]
    assert free.get_status() == limited.get_status() == JobStatus.QUEUED


@pytest.mark.parametrize("call", ["lease", "extend", "promote"])
def test_numbers_redis_would_refuse_are_refused_first(url: str, qname: str, call: str) -> None:
    queue = Queue(qname, url)
    queue.enqueue("jobs.noop")
    built = {
        "lease": lambda: T.lease_call(queue.keys, 1, 1.5, "w-test", LEASE_MS),  # type: ignore[arg-type]
        "extend": lambda: T.extend_call(queue.keys, [("x", 1)], 10**20),
        "promote": lambda: T.promote_call(queue.keys, -1),
    }[call]()
    with pytest.raises(redis.ResponseError, match=f"{call}: .* is not a whole number from .*; nothing was written"):
        queue.store.run(built)
    assert queue.count == 1


# --- item 11: malformed records fail visibly --------------------------------------------------------------

def _failed_with(queue: Queue, job_id: str, reason: str) -> None:
    job = queue.fetch_job(job_id)
    assert job is not None and job.get_status() == JobStatus.FAILED
    assert "malformed job record" in (job.exc_info or "") and reason in (job.exc_info or ""), job.exc_info
    assert job_id in queue.failed_job_registry.get_job_ids()


def test_a_record_without_its_status_fails_with_a_reason_instead_of_vanishing(url: str, qname: str) -> None:
    queue = Queue(qname, url)
    bad, good = queue.enqueue("jobs.noop"), queue.enqueue("jobs.add", 1, 2)
    queue.connection.hdel(bad.key, "s")
    worker = burst(url, qname)
    _failed_with(queue, bad.id, "no status field")
    assert good.latest_result().return_value == 3 and worker.stats.finished == 1
    assert queue.connection.ttl(bad.key) > 0, "kept as long as a failed job, not for ever"


def test_a_malformed_attempt_counter_never_runs_the_job(url: str, qname: str, tmp_path: Path) -> None:
    queue = Queue(qname, url)
    runs = tmp_path / "runs"
    bad = queue.enqueue("jobs.count_runs", str(runs))
    good = queue.enqueue("jobs.add", 1, 2)
    queue.connection.hset(bad.key, "n", "1.5")
    burst(url, qname)
    # before: it ran, its outcome was refused (token 2 against "2.5"), it stayed started and ran again
    _failed_with(queue, bad.id, "attempt counter n is '1.5'")
    assert not runs.exists()
    assert good.latest_result().return_value == 3 and queue.started_job_registry.count == 0


def test_an_ended_status_on_a_job_that_never_ran_fails_visibly(url: str, qname: str) -> None:
    queue = Queue(qname, url)
    bad, good = queue.enqueue("jobs.noop"), queue.enqueue("jobs.add", 1, 2)
    queue.connection.hset(bad.key, "s", "finished")
    burst(url, qname)
    _failed_with(queue, bad.id, "status 'finished'")
    assert good.latest_result().return_value == 3


def test_a_stale_copy_of_a_finished_jobs_id_is_skipped_and_the_result_kept(url: str, qname: str) -> None:
    queue = Queue(qname, url)
    job = queue.enqueue("jobs.add", 1, 2)
    burst(url, qname)
    queue.connection.rpush(queue.keys.pending, job.id)  # a duplicate entry of an id that really ended
    worker = burst(url, qname)
    assert worker.stats.finished == 0 and job.get_status() == JobStatus.FINISHED
    assert job.latest_result().return_value == 3 and queue.failed_job_registry.count == 0


def test_a_scheduled_record_without_status_is_promoted_and_failed_visibly(url: str, qname: str) -> None:
    queue = Queue(qname, url)
    job = queue.enqueue_in(timedelta(seconds=0), "jobs.noop")
    queue.connection.hdel(job.key, "s")
    promoted, _ = T.parse_promote(queue.store.run(T.promote_call(queue.keys, 100)))
    assert promoted == 1 and queue.count == 1  # moved on, to be failed by the lease
    lease(queue)
    _failed_with(queue, job.id, "no status field")


def test_the_scripts_bounds_agree_with_the_longest_duration_an_option_takes() -> None:
    # 100 years in seconds (ttl) or milliseconds (keep and lease times); 2^52 ms bounds absolute times;
    # 10^9 bounds counts (attempts, runs kept, members added)
    allowed = {MAX_DURATION_S, MAX_DURATION_S * 1000, 2**52, 10**9}
    for path in Path(S.__file__).parent.rglob("*.lua"):
        checks = re.findall(r"check_int\([^\n]*|MAX_MS = \d+", path.read_text())
        for literal in re.findall(r"\b\d{10,}\b", "\n".join(checks)):
            assert int(literal) in allowed, f"{path.name}: bound {literal} is not 100 years (s or ms), 2^52 or 10^9"
