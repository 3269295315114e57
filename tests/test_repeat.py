"""Repeat(times, interval) on every topology: a job that succeeded runs again until its repeats are
used, waiting in the scheduled set between runs; every run's result is kept."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from clusterq import AsyncQueue, Job, JobStatus, Queue, Repeat, ResultType, Retry, Worker, connect


def _burst(url: str, q: Queue) -> int:
    return Worker([q], url, pool="solo", install_signal_handlers=False).work(burst=True)


def test_a_repeated_job_runs_times_plus_one_and_keeps_every_result(url: str, qname: str, tmp_path) -> None:
    q = Queue(qname, url)
    runs = tmp_path / "runs"
    job = q.enqueue("jobs.count_runs", str(runs), repeat=Repeat(times=2))
    assert _burst(url, q) == 3
    assert len(runs.read_text().splitlines()) == 3
    assert job.get_status() == JobStatus.FINISHED and job.return_value() == 3 and job.repeats == 2
    results = job.results()
    assert [(r.type, r.return_value) for r in results] == [(ResultType.SUCCESSFUL, n) for n in (3, 2, 1)]
    assert q.finished_job_registry.get_job_ids() == [job.id]


def test_a_repeat_with_an_interval_waits_in_the_scheduled_set(url: str, qname: str, tmp_path) -> None:
    q = Queue(qname, url)
    job = q.enqueue("jobs.count_runs", str(tmp_path / "runs"), repeat=Repeat(times=3, interval=[0.05, 3600]))
    _burst(url, q)
    assert job.get_status() == JobStatus.SCHEDULED and job.id in q.scheduled_job_registry
    assert job.return_value() == 1, "the latest run's result is readable while the next one waits"
    deadline = time.monotonic() + 30
    while job.refresh().repeats < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
        _burst(url, q)
    assert job.repeats == 2 and job.get_status() == JobStatus.SCHEDULED  # the second wait is an hour
    assert job.return_value() == 2


def test_a_failed_run_is_not_repeated_but_a_retry_can_rescue_it(url: str, qname: str, tmp_path) -> None:
    q = Queue(qname, url)
    failing = q.enqueue("jobs.fail", repeat=Repeat(times=3))
    rescued = q.enqueue("jobs.fail_until", str(tmp_path / "runs"), 2, retry=Retry(max=1), repeat=Repeat(times=1))
    _burst(url, q)
    assert failing.get_status() == JobStatus.FAILED and failing.repeats == 0
    assert rescued.get_status() == JobStatus.FINISHED and (rescued.retries, rescued.repeats) == (1, 1)
    assert [r.type for r in rescued.results()] == [ResultType.SUCCESSFUL, ResultType.SUCCESSFUL, ResultType.RETRIED]


def test_bad_repeat_values_are_refused(url: str, qname: str) -> None:
    with pytest.raises(ValueError):
        Repeat(times=0)
    with pytest.raises(ValueError):
        Repeat(times=2, interval=[-1])
    with pytest.raises(TypeError, match="Repeat"):
        Queue(qname, url).enqueue("jobs.noop", repeat=2)


def test_the_asyncio_queue_takes_repeat_retry_and_callbacks_too(url: str, qname: str, tmp_path) -> None:
    out = tmp_path / "out"

    async def enqueue() -> str:
        async with AsyncQueue(qname, url, result_history=5) as q:
            job = await q.enqueue("jobs.record", str(out), 1, repeat=Repeat(times=1), retry=Retry(max=1),
                                  on_success="jobs.cb_success")
            return job.id

    job_id = asyncio.run(enqueue())
    assert _burst(url, Queue(qname, url)) == 2
    job = Job(qname, job_id, url)
    assert [r.return_value for r in job.results()] == [1, 1] and job.repeats == 1
    assert out.read_text().splitlines() == ["1", f"on_success {job_id} 1 ping=True"] * 2
    assert json.loads(connect(url).hget(job.key, "o"))["hist"] == 5
