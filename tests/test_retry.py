"""Retry(max=, interval=) on every topology: a failed job runs again until it succeeds or its retries are
spent; with an interval it waits in the scheduled set between runs."""

from __future__ import annotations

import threading
import time

import pytest

from clusterq import JobStatus, Queue, Retry, Worker


def _burst(url: str, q: Queue) -> Worker:
    worker = Worker([q], url, pool="solo", install_signal_handlers=False, maintenance_interval_s=0.2)
    worker.work(burst=True)
    return worker


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
