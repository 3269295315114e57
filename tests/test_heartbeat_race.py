"""A heartbeat that meets a job whose outcome was just recorded is not a lost lease.

The heartbeat thread extends every held lease while the fetch loop sends the buffered outcomes; an
outcome that reaches Redis first ends the job's lease, the heartbeat's extend then answers ``LEASE_LOST``,
and the worker used to log "lease of job ... was lost" for a job that ran once and was recorded (the
1,000,000-job drain of bench/partitions.py logged ~1,900 of them, every job executed exactly once). Jobs
whose outcome is on its way are marked (``Leases.ran``) and such a reply is not reported; a lease
really lost (the job canceled under the worker) still is.
"""

from __future__ import annotations

import logging

import pytest

from clusterq import Queue
from clusterq.state import store as T
from clusterq.worker.leases import Leases
from clusterq.worker.outcomes import Outcomes

LOST = "was lost (canceled, deleted or taken over)"


def lease(queue: Queue, count: int) -> list[T.LeasedJob]:
    _, leased = T.parse_lease(queue.name, queue.store.run(T.lease_call(queue.keys, count, 60_000, "w", 60_000)))
    assert len(leased) == count
    return leased


def heartbeat(leases: Leases, caplog: pytest.LogCaptureFixture) -> str:
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="clusterq.worker.leases"):
        leases.extend(lambda queue, job_id, reason: None, lambda queue, job_id: False)
    return caplog.text


def test_an_outcome_recorded_before_the_heartbeat_is_not_reported_as_a_lost_lease(
        url: str, qname: str, caplog: pytest.LogCaptureFixture) -> None:
    queue = Queue(qname, url)
    first = queue.enqueue("jobs.noop")
    queue.enqueue("jobs.noop")
    done, canceled = lease(queue, 2)
    assert done.id == first.id
    leases = Leases(queue.store, {qname: queue.keys}, 60_000)
    leases.hold([done, canceled])
    outcomes = Outcomes({qname: queue.keys})
    outcomes.add(qname, T.Outcome(done.id, done.token, "finished", b"", 60_000))

    leases.ran(qname, done.id)  # as the worker does when the pool hands the outcome back
    batch = outcomes.take()
    queue.store.run_many(batch.calls)  # the outcome reaches Redis before the heartbeat's extend
    job = queue.fetch_job(canceled.id)
    assert job is not None
    job.cancel()  # this lease is really lost
    text = heartbeat(leases, caplog)

    assert f"lease of job {done.id} {LOST}" not in text  # it ran once and was recorded
    assert f"lease of job {canceled.id} {LOST}" in text  # a real loss is still said

    leases.drop([(qname, done.id)])  # settled: no longer held, no longer marked
    assert done.id not in heartbeat(leases, caplog)


def test_without_the_mark_the_same_race_is_reported(url: str, qname: str, caplog: pytest.LogCaptureFixture) -> None:
    """The control: what the worker logged before (a held job whose outcome went first)."""
    queue = Queue(qname, url)
    queue.enqueue("jobs.noop")
    (done,) = lease(queue, 1)
    leases = Leases(queue.store, {qname: queue.keys}, 60_000)
    leases.hold([done])
    queue.store.run(T.complete_call(queue.keys, [T.Outcome(done.id, done.token, "finished", b"", 60_000)]))
    assert f"lease of job {done.id} {LOST}" in heartbeat(leases, caplog)
