"""Retry(max=, interval=) on every topology: a failed job runs again until it succeeds or its retries are
spent; with an interval it waits in the scheduled set between runs."""

from __future__ import annotations

import threading
import time

import pytest

from clusterq import Backoff, JobStatus, Queue, ResultType, Retry, RetryJob, Worker, connect
from clusterq.api.retry import RETRY_JOB_MAX
from clusterq.state import store as T
from clusterq.state import transitions as TR


def _burst(url: str, q: Queue) -> Worker:
    worker = Worker([q], url, pool="solo", install_signal_handlers=False, maintenance_interval_s=0.2)
    worker.work(burst=True)
    return worker


def _burst_until_settled(url: str, q: Queue, job) -> None:
    """Burst workers leave while a job waits in the scheduled set: run them until it has ended."""
    deadline = time.monotonic() + 30
    _burst(url, q)
    while job.get_status() in (JobStatus.SCHEDULED, JobStatus.QUEUED) and time.monotonic() < deadline:
        time.sleep(0.03)
        _burst(url, q)


def test_a_job_that_fails_then_succeeds_is_retried_until_it_finishes(url: str, qname: str, tmp_path) -> None:
    q = Queue(qname, url)
    runs = tmp_path / "runs"
    job = q.enqueue("jobs.fail_until", str(runs), 3, retry=Retry(max=3))
    _burst(url, q)
    assert job.get_status() == JobStatus.FINISHED and job.return_value() == 3
    assert runs.read_text().splitlines() == ["run"] * 3
    assert job.attempts == 3 and q.failed_job_registry.count == 0


def test_a_job_whose_retries_are_spent_fails_with_its_last_error(url: str, qname: str, tmp_path) -> None:
    q = Queue(qname, url)
    runs = tmp_path / "runs"
    job = q.enqueue("jobs.fail_until", str(runs), 99, retry=Retry(max=2))
    _burst(url, q)
    assert job.get_status() == JobStatus.FAILED and "run 3 fails" in job.exc_info
    assert len(runs.read_text().splitlines()) == 3
    assert job.id in q.failed_job_registry


def test_a_retry_with_an_interval_waits_in_the_scheduled_set(url: str, qname: str, tmp_path) -> None:
    q = Queue(qname, url)
    runs = tmp_path / "runs"
    job = q.enqueue("jobs.fail_until", str(runs), 2, retry=Retry(max=1, interval=[1.5]))
    worker = Worker([q], url, pool="thread", concurrency=2, install_signal_handlers=False)
    thread = threading.Thread(target=worker.work, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not runs.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        while job.get_status() == JobStatus.STARTED and time.monotonic() < deadline:
            time.sleep(0.02)
        assert job.get_status() == JobStatus.SCHEDULED and job.id in q.scheduled_job_registry
        assert "run 1 fails" in job.exc_info
        while job.get_status() != JobStatus.FINISHED and time.monotonic() < deadline:
            time.sleep(0.05)
        assert job.get_status() == JobStatus.FINISHED and job.return_value() == 2
    finally:
        worker.request_stop()
        thread.join(30)


def test_bad_retry_values_are_refused(url: str, qname: str) -> None:
    with pytest.raises(ValueError):
        Retry(max=0)
    with pytest.raises(ValueError):
        Retry(max=2, interval=[-1])
    with pytest.raises(TypeError, match="Retry"):
        Queue(qname, url).enqueue("jobs.noop", retry=3)


# --- exponential backoff, RetryJob, every attempt recorded ------------------------------------------

def test_every_retried_attempt_is_recorded_with_its_error(url: str, qname: str, tmp_path) -> None:
    q = Queue(qname, url)
    job = q.enqueue("jobs.fail_until", str(tmp_path / "runs"), 3,
                    retry=Retry(max=3, interval=Backoff(base=0.01, factor=2, maximum=0.02)))
    _burst_until_settled(url, q, job)
    results = job.results()
    assert [r.type for r in results] == [ResultType.SUCCESSFUL, ResultType.RETRIED, ResultType.RETRIED]
    assert "run 2 fails" in (results[1].exc_string or "") and "run 1 fails" in (results[2].exc_string or "")
    assert job.get_status() == JobStatus.FINISHED and (job.attempts, job.retries, job.retries_left) == (3, 2, 1)
    assert q.enqueue("jobs.noop").retries_left is None


def test_backoff_delays_grow_to_their_maximum_scaled_by_the_jitter_drawn(url: str, qname: str) -> None:
    q = Queue(qname, url)
    client = connect(url)
    for done, multiplier, expected_ms in ((0, "1", 1000), (2, "1", 4000), (2, "0.5", 2000), (9, "1", 60_000)):
        job = q.enqueue("jobs.noop")
        client.hset(job.key, "rt", done)
        _, leased = T.parse_lease(qname, q.store.run(T.lease_call(q.keys, 1, 60_000, "w", 60_000)))
        plan = f"20;b:1000:2:60000:{multiplier}"
        outcome = T.Outcome(job.id, leased[0].token, "failed", b"boom", 60_000, 0.0, plan)
        assert TR.parse_complete(q.store.run(T.complete_call(q.keys, [outcome]))) == [TR.CompleteCode.AGAIN]
        recorded_at = int(client.hget(job.key, "ht"))
        assert client.zscore(q.keys.scheduled, job.id) == recorded_at + expected_ms
        assert job.get_status() == JobStatus.SCHEDULED and job.retries == done + 1


@pytest.mark.parametrize("pool", ["solo", "thread", "asyncio"])
def test_a_job_can_ask_to_run_again_by_raising_retryjob(url: str, qname: str, tmp_path, pool: str) -> None:
    q = Queue(qname, url)
    job = q.enqueue("jobs.retry_until", str(tmp_path / "runs"), 3)
    deadline = time.monotonic() + 30
    while job.get_status() != JobStatus.FINISHED and time.monotonic() < deadline:
        Worker([q], url, pool=pool, concurrency=1, install_signal_handlers=False).work(burst=True)
    assert job.get_status() == JobStatus.FINISHED and job.return_value() == 3
    assert job.retries == 2 and [r.type for r in job.results()][1:] == [ResultType.RETRIED] * 2
    assert "RetryJob: not yet (2)" in (job.results()[1].exc_string or "")


def test_retryjob_without_a_retry_is_bounded_and_then_fails(url: str, qname: str, tmp_path) -> None:
    q = Queue(qname, url)
    runs = tmp_path / "runs"
    job = q.enqueue("jobs.retry_until", str(runs), 99)
    _burst(url, q)
    assert len(runs.read_text().splitlines()) == 1 + RETRY_JOB_MAX
    assert job.get_status() == JobStatus.FAILED and "RetryJob: not yet (4)" in job.exc_info
    assert job.id in q.failed_job_registry


def test_retryjob_uses_the_retries_of_the_jobs_retry(url: str, qname: str, tmp_path) -> None:
    q = Queue(qname, url)
    runs = tmp_path / "runs"
    job = q.enqueue("jobs.retry_until", str(runs), 99, retry=Retry(max=1))
    _burst(url, q)
    assert len(runs.read_text().splitlines()) == 2 and job.get_status() == JobStatus.FAILED
    with pytest.raises(ValueError):
        RetryJob(delay=-1)
