"""RQ's exception handlers and ways to say "do not retry this" (issue 15), on every topology and pool.

``Worker(exception_handlers=[...])`` runs its chain where RQ runs it, in the process that ran the job (a
pool child, a thread, the asyncio loop's executor, or the worker itself with the solo pool): each handler
gets ``(job, exc_type, exc_value, traceback)`` and returning ``False`` stops the chain. A job fails for good
at once when it raises ``NoRetry``, when its ``Retry(on=...)`` does not name the exception, or when a
handler sets ``job.retries_left = 0``."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from clusterq import JobStatus, Queue, Retry, Worker

POOLS = ["process", "fork", "thread", "asyncio", "solo"]


def recorder(path: Path, name: str, verdict: Any = None) -> Callable[..., Any]:
    def handler(job: Any, exc_type: type, exc_value: BaseException, tb: Any) -> Any:
        assert tb is not None and isinstance(exc_value, exc_type)
        with path.open("a") as fh:
            fh.write(f"{name} {os.getpid()} {exc_type.__name__} {job.id} {exc_value}\n")
        return verdict
    return handler


def burst(url: str, qname: str, pool: str, **options: Any) -> Worker:
    worker = Worker(qname, url, pool=pool, concurrency=1, install_signal_handlers=False, **options)
    worker.work(burst=True, with_scheduler=True)  # RQ's call: accepted, every worker promotes due jobs
    return worker


@pytest.mark.parametrize("pool", POOLS)
def test_the_handler_chain_runs_in_the_process_that_ran_the_job_until_a_handler_returns_false(
    url: str, qname: str, tmp_path: Path, pool: str
) -> None:
    calls = tmp_path / "calls"
    job = Queue(qname, url).enqueue("jobs.fail", "as planned")
    ok = Queue(qname, url).enqueue("jobs.add", 1, 1)
    handlers = [recorder(calls, "first"), recorder(calls, "second", verdict=False), recorder(calls, "third")]

    burst(url, qname, pool, exception_handlers=handlers)

    lines = [line.split(" ", 4) for line in calls.read_text().splitlines()]
    assert [(name, exc, job_id, text) for name, _, exc, job_id, text in lines] == [
        ("first", "ValueError", job.id, "as planned"), ("second", "ValueError", job.id, "as planned")]
    pids = {int(pid) for _, pid, *_ in lines}
    assert len(pids) == 1
    assert (pids != {os.getpid()}) == (pool in ("process", "fork"))  # the job's own process
    assert job.get_status() == JobStatus.FAILED and "as planned" in (job.exc_info or "")
    assert ok.return_value() == 2


@pytest.mark.parametrize("pool", ["process", "solo"])
def test_a_handler_that_raises_is_noted_and_the_chain_goes_on(url: str, qname: str, tmp_path: Path,
                                                              pool: str) -> None:
    calls = tmp_path / "calls"

    def broken(*args: Any) -> None:
        raise RuntimeError("handler bug")

    job = Queue(qname, url).enqueue("jobs.fail")
    burst(url, qname, pool, exception_handlers=[broken, recorder(calls, "next")])
    assert [line.split()[0] for line in calls.read_text().splitlines()] == ["next"]
    job.refresh()
    assert job.get_status() == JobStatus.FAILED
    assert "exception handler" in (job.callback_error or "") and "handler bug" in (job.callback_error or "")


@pytest.mark.parametrize("pool", POOLS)
def test_a_handler_setting_retries_left_to_zero_makes_the_failure_final(url: str, qname: str, tmp_path: Path,
                                                                       pool: str) -> None:
    runs = tmp_path / "runs"

    def final(job: Any, *exc_info: Any) -> None:
        job.retries_left = 0

    job = Queue(qname, url).enqueue("jobs.raise_named", "ValueError", str(runs), retry=Retry(max=3))
    burst(url, qname, pool, exception_handlers=[final])
    assert runs.read_text().splitlines() == ["run"]
    job.refresh()
    assert job.get_status() == JobStatus.FAILED and job.retries == 0


@pytest.mark.parametrize("kind,retry,runs", [
    pytest.param("ValueError", Retry(max=2, on=ValueError), 3, id="named-retried"),
    pytest.param("KeyError", Retry(max=2, on=[ValueError, TypeError]), 1, id="not-named-final"),
    pytest.param("KeyError", Retry(max=2, on=LookupError), 3, id="subclass-retried"),
    pytest.param("NoRetry", Retry(max=2), 1, id="NoRetry-final"),
])
def test_retry_on_and_no_retry_decide_which_failures_run_again(
    url: str, qname: str, tmp_path: Path, kind: str, retry: Retry, runs: int
) -> None:
    marker = tmp_path / "runs"
    job = Queue(qname, url).enqueue("jobs.raise_named", kind, str(marker), retry=retry)
    burst(url, qname, "solo")
    assert len(marker.read_text().splitlines()) == runs
    job.refresh()
    assert job.get_status() == JobStatus.FAILED and job.retries == runs - 1


def test_retry_on_refuses_what_is_not_an_exception_class() -> None:
    for bad in ("ValueError", [ValueError, "x"], [], int):
        with pytest.raises(TypeError, match=r"Retry\(on=\.\.\.\)"):
            Retry(max=1, on=bad)  # type: ignore[arg-type]


def test_the_log_tells_an_attempt_that_will_be_retried_from_a_final_failure(
    url: str, qname: str, caplog: pytest.LogCaptureFixture
) -> None:
    retried = Queue(qname, url).enqueue("jobs.raise_named", "ValueError", retry=Retry(max=1))
    plain = Queue(qname, url).enqueue("jobs.fail", "no retry")
    with caplog.at_level(logging.INFO, "clusterq"):
        burst(url, qname, "solo")
    said = [r.getMessage() for r in caplog.records]
    assert [m for m in said if retried.id in m and "failed" in m] == [
        f"{qname}: job {retried.id} attempt failed, will be retried: ValueError: as planned",
        f"{qname}: job {retried.id} failed (no retries left): ValueError: as planned"]
    assert [m for m in said if plain.id in m and "failed" in m] == [
        f"{qname}: job {plain.id} (jobs.fail) failed: ValueError: no retry"]


def test_disabling_the_default_handler_silences_the_workers_failure_log_and_keeps_the_failed_job(
    url: str, qname: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    calls = tmp_path / "calls"
    job = Queue(qname, url).enqueue("jobs.fail")
    with caplog.at_level(logging.INFO, "clusterq"):
        burst(url, qname, "solo", exception_handlers=recorder(calls, "only"), disable_default_exception_handler=True)
    assert not [r for r in caplog.records if job.id in r.getMessage()]
    assert len(calls.read_text().splitlines()) == 1
    assert job.get_status() == JobStatus.FAILED and Queue(qname, url).failed_job_registry.get_job_ids() == [job.id]


def test_exception_handlers_must_be_callables(url: str) -> None:
    with pytest.raises(TypeError, match="exception_handlers must be callables"):
        Worker("q", url, exception_handlers=["not callable"])  # type: ignore[list-item]
