"""Callbacks on every topology and in every pool: on_success, on_failure (and the on_stopped plumbing)
run after the job with (job, connection, ...) as in RQ; a callback that raises or runs past its own time
limit is logged and recorded on the job, and never changes the job's outcome."""

from __future__ import annotations

import pytest

import jobs
from clusterq import Callback, FunctionNotFound, JobStatus, Queue, ResultType, Worker
from clusterq.state import store as T


def _burst(url: str, q: Queue, pool: str = "solo") -> int:
    worker = Worker([q], url, pool=pool, concurrency=2, install_signal_handlers=False)
    return worker.work(burst=True)


@pytest.mark.parametrize("pool", ["solo", "thread", "process", "asyncio"])
def test_on_success_and_on_failure_get_what_rq_passes(url: str, qname: str, tmp_path, pool: str) -> None:
    q = Queue(qname, url)
    out = tmp_path / "out"
    ok = q.enqueue("jobs.record", str(out), 7, on_success=jobs.cb_success, on_failure="jobs.cb_failure")
    bad = q.enqueue("jobs.fail_with", str(out), "nope", on_success=jobs.cb_success,
                    on_failure=Callback(jobs.cb_failure, timeout=5))
    assert _burst(url, q, pool) == 2
    lines = set(out.read_text().splitlines())
    assert lines == {"7", f"on_success {ok.id} 7 ping=True", f"on_failure {bad.id} ValueError nope tb=True"}
    assert ok.get_status() == JobStatus.FINISHED and ok.callback_error is None
    assert bad.get_status() == JobStatus.FAILED and bad.callback_error is None


@pytest.mark.parametrize("pool", ["solo", "thread"])
def test_a_failing_or_slow_callback_does_not_change_the_outcome(url: str, qname: str, pool: str, tmp_path) -> None:
    q = Queue(qname, url)
    broken = q.enqueue("jobs.add", 1, 2, on_success=jobs.cb_raises)
    slow = q.enqueue("jobs.add", 2, 2, on_success=Callback(jobs.cb_sleeps, timeout=0.5))
    failed = q.enqueue("jobs.fail_with", str(tmp_path / "x"), on_failure=jobs.cb_raises)
    assert _burst(url, q, pool) == 3
    assert broken.get_status() == JobStatus.FINISHED and broken.return_value() == 3
    assert "on_success jobs.cb_raises failed: RuntimeError: the callback broke" in broken.callback_error
    assert slow.get_status() == JobStatus.FINISHED and slow.return_value() == 4
    assert "time limit exceeded" in slow.callback_error and "0.5 s" in slow.callback_error
    assert failed.get_status() == JobStatus.FAILED and "ValueError: boom" in failed.exc_info
    assert "on_failure" in failed.callback_error


def test_an_async_callback_is_awaited(url: str, qname: str, tmp_path) -> None:
    q = Queue(qname, url)
    out = tmp_path / "out"
    q.enqueue("jobs.record", str(out), 1, on_success=jobs.cb_async_success)
    _burst(url, q, "thread")
    assert out.read_text().splitlines() == ["1", "async on_success 1"]


def test_on_stopped_runs_when_a_stopped_outcome_is_recorded(url: str, qname: str, tmp_path) -> None:
    q = Queue(qname, url)
    out = tmp_path / "out"
    job = q.enqueue("jobs.record", str(out), 1, on_stopped=jobs.cb_stopped)
    worker = Worker([q], url, pool="solo", install_signal_handlers=False)
    _, leased = T.parse_lease(qname, q.store.run(T.lease_call(q.keys, 1, 60_000, "w", 60_000)))
    outcome = worker.executor.stopped(leased[0], "stopped by request")
    assert outcome.status == "stopped" and outcome.note == ""
    assert q.store.run(T.complete_call(q.keys, [outcome])) == [1]
    assert out.read_text().splitlines() == [f"on_stopped {job.id}"]
    assert job.get_status() == JobStatus.STOPPED
    assert [r.type for r in job.results()] == [ResultType.STOPPED]


def test_callbacks_that_a_worker_cannot_import_or_bad_limits_are_refused(url: str, qname: str) -> None:
    q = Queue(qname, url)
    with pytest.raises(FunctionNotFound):
        q.enqueue("jobs.noop", on_success=lambda job, connection, result: None)
    with pytest.raises(ValueError, match="timeout"):
        Callback(jobs.cb_success, timeout=0)
    job = q.enqueue("jobs.noop", on_failure="jobs.no_such_callback")
    assert job.get_status() == JobStatus.QUEUED
