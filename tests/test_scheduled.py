"""Delayed jobs on every topology: enqueue_in / enqueue_at, promotion by the workers themselves (each due
job promoted exactly once with several workers), listing, counting and cancelling scheduled jobs."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

import jobs
from clusterq import Job, JobStatus, Queue, Worker
from clusterq.state import store as T
from worker_thread import running

pytestmark = pytest.mark.compat  # also run against the second server engine

DEADLINE_S = 60.0  # generous: only bounds a failing test, never asserts speed
# A delay long enough that the checks made before it ends (after 0.3-0.5 s of a running worker) cannot
# race it, short enough that the tests do not sit idle (they wait for it once per topology and engine).
DELAY_S = 2.0


def _worker(q: Queue, **options: object) -> Worker:
    options.setdefault("pool", "thread")
    options.setdefault("concurrency", 4)
    return Worker([q], q.connection, install_signal_handlers=False, **options)  # type: ignore[arg-type]


def wait_for(predicate, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + DEADLINE_S
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_enqueue_in_runs_the_job_after_its_delay_and_not_before(url: str, qname: str, tmp_path: Path) -> None:
    q = Queue(qname, url)
    out = tmp_path / "ran"
    job = q.enqueue_in(timedelta(seconds=DELAY_S), jobs.record, str(out), "late")
    assert job.get_status() == JobStatus.SCHEDULED and job.is_scheduled
    assert q.count == 0  # not waiting in the queue yet
    with running(_worker(q)):
        time.sleep(0.5)  # the worker has started and run its first maintenance; the job is not due
        assert job.get_status() == JobStatus.SCHEDULED
        assert lines(out) == []
        wait_for(lambda: job.get_status() == JobStatus.FINISHED, "the delayed job to finish")
    assert lines(out) == ["late"]
    assert job.return_value() == "late"
    assert job.enqueued_at is not None and job.started_at is not None
    # Both are server times: the job did not start before its delay had passed.
    assert job.started_at - job.enqueued_at >= timedelta(seconds=DELAY_S)
    assert q.scheduled_job_registry.count == 0


def test_enqueue_in_accepts_seconds_and_the_options_of_enqueue(url: str, qname: str) -> None:
    q = Queue(qname, url)
    job = q.enqueue_in(3600, jobs.add, 1, b=2, job_id="mine", description="later", meta={"k": 1},
                       job_timeout="2m")
    assert job.id == "mine" and job.get_status() == JobStatus.SCHEDULED
    assert (job.args, job.kwargs) == ([1], {"b": 2})
    assert job.description == "later" and job.meta == {"k": 1} and job.timeout == 120.0
    again = q.enqueue_in(10, jobs.add, 5, 5, job_id="mine")  # an existing id is left untouched
    assert again == job and again.args == [1]
    with pytest.raises(TypeError, match="not supported"):
        q.enqueue_in(10, jobs.add, 1, 2, depends_on="x")


def test_enqueue_at_a_past_time_runs_the_job_at_once(url: str, qname: str) -> None:
    q = Queue(qname, url)
    job = q.enqueue_at(datetime.now(timezone.utc) - timedelta(minutes=5), jobs.add, 20, 22)
    assert job.get_status() == JobStatus.SCHEDULED
    assert _worker(q).work(burst=True) == 1  # a burst worker promotes what is due before it looks
    assert job.return_value() == 42
    assert q.scheduled_job_registry.count == 0


def test_scheduled_jobs_are_listed_counted_and_cancellable(url: str, qname: str, tmp_path: Path) -> None:
    q = Queue(qname, url)
    now = datetime.now(timezone.utc)
    late = q.enqueue_at(now + timedelta(hours=2), jobs.add, 1, 1)
    early = q.enqueue_in(timedelta(minutes=30), jobs.add, 2, 2)
    middle = q.enqueue_in(timedelta(hours=1), jobs.add, 3, 3)
    registry = q.scheduled_job_registry
    assert registry.count == 3 and len(registry) == 3
    assert registry.get_job_ids() == [early.id, middle.id, late.id]  # by run-at time
    assert registry.get_job_ids(1, 1) == [middle.id]
    assert [j.id for j in registry.get_jobs()] == [early.id, middle.id, late.id]
    assert early in registry and early.id in registry
    assert q.count == 0 and q.get_job_ids() == []

    middle.cancel()
    assert middle.get_status() == JobStatus.CANCELED
    assert middle not in registry and middle in q.canceled_job_registry
    late.delete()
    assert not late.exists() and late not in registry
    assert registry.get_job_ids() == [early.id]

    # A canceled job that was due never runs.
    out = tmp_path / "ran"
    due = q.enqueue_at(now - timedelta(seconds=1), jobs.record, str(out), "must not run")
    due.cancel()
    assert _worker(q).work(burst=True) == 0
    assert lines(out) == [] and due.get_status() == JobStatus.CANCELED
    assert registry.get_job_ids() == [early.id]

    q.delete()
    assert registry.count == 0 and not early.exists()


def test_two_workers_promote_each_of_200_due_jobs_exactly_once(url: str, qname: str, tmp_path: Path) -> None:
    q = Queue(qname, url)
    out = tmp_path / "ran"
    # One schedule call per 500 jobs, all due at the same moment while both workers are running.
    data = [q.prepare_data(jobs.record, (str(out), i)) for i in range(200)]
    scheduled = q._schedule(data, False, delay_ms=2000)
    assert q.scheduled_job_registry.count == 200
    with running(_worker(q)), running(_worker(q)):
        wait_for(lambda: len(lines(out)) >= 200, "200 jobs to run")
        time.sleep(0.5)  # a duplicate, if any, would show up here
    ran = lines(out)
    assert sorted(ran, key=int) == [str(i) for i in range(200)]  # 200 distinct lines, none twice
    assert all(job.get_status() == JobStatus.FINISHED for job in scheduled)
    assert q.scheduled_job_registry.count == 0 and q.count == 0


def test_promotion_is_exactly_once_when_many_callers_race(url: str, qname: str) -> None:
    q = Queue(qname, url)
    q._schedule([q.prepare_data(jobs.noop) for _ in range(300)], False, at_ms=1)
    totals: list[int] = []

    def promote() -> None:
        store = T.Store(q.connection)
        total = 0
        while True:
            promoted, _ = T.parse_promote(store.run(T.promote_call(q.keys, 7)))
            if not promoted:
                break
            total += promoted
        totals.append(total)

    threads = [threading.Thread(target=promote) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(DEADLINE_S)
    assert sum(totals) == 300
    assert q.count == 300 and len(set(q.get_job_ids(0, 1000))) == 300
    assert q.scheduled_job_registry.count == 0


def test_a_scheduled_job_survives_a_worker_restart(url: str, qname: str, tmp_path: Path) -> None:
    q = Queue(qname, url)
    out = tmp_path / "ran"
    job = q.enqueue_in(timedelta(seconds=DELAY_S), jobs.record, str(out), "after restart")
    with running(_worker(q)):
        time.sleep(0.3)
    assert job.get_status() == JobStatus.SCHEDULED and job in q.scheduled_job_registry
    with running(_worker(q)):
        wait_for(lambda: job.get_status() == JobStatus.FINISHED, "the job to run under the second worker")
    assert lines(out) == ["after restart"]
    assert Job.fetch(job.handle, url).return_value() == "after restart"


def test_an_idle_worker_learns_of_a_new_earliest_scheduled_job_at_once(url: str, qname: str) -> None:
    q = Queue(qname, url)
    # Maintenance and the fallback poll are 300 s apart: only the schedule's wake-up can get this job
    # promoted before the deadline below.
    worker = _worker(q, maintenance_interval_s=300, idle_poll_s=300)
    with running(worker):
        wait_for(lambda: worker._waker is not None and worker.stats.processed == 0 and q.count == 0, "idle")
        time.sleep(0.5)  # the worker's first maintenance has passed: it knows of nothing scheduled
        job = q.enqueue_in(1.0, jobs.add, 20, 22)
        deadline = time.monotonic() + 20.0
        while job.get_status() != JobStatus.FINISHED and time.monotonic() < deadline:
            time.sleep(0.05)
        assert job.get_status() == JobStatus.FINISHED and job.return_value() == 42
