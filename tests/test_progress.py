"""Progress reported from inside a job (``set_progress``), on every topology: stored on the job, read
through the job API, and shown by ``clusterq info`` for running jobs (a bounded number per queue)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import control_jobs
from clusterq import Job, JobStatus, NoSuchJobError, Queue, Worker
from clusterq.cli.main import RUNNING_SHOWN
from test_stop import DEADLINE_S, running, wait_for, wait_started


def _burst(url: str, queue: Queue, kind: str) -> Worker:
    worker = Worker([queue], url, pool=kind, concurrency=2, install_signal_handlers=False)
    worker.work(burst=True)
    return worker


@pytest.mark.parametrize("kind", ["process", "thread", "asyncio"])
def test_progress_reported_inside_a_job_is_readable_through_the_job_api(url: str, qname: str, kind: str) -> None:
    q = Queue(qname, url)
    job = q.enqueue(control_jobs.progress_steps, 4)
    assert job.progress is None
    _burst(url, q, kind)
    assert job.return_value() == {"value": 1.0, "message": "step 4 of 4"}
    fetched = Job.fetch(job.handle, url)
    assert fetched.progress is not None
    assert (fetched.progress.value, fetched.progress.message) == (1.0, "step 4 of 4")
    assert fetched.progress.updated_at is not None


def test_set_progress_from_outside_updates_the_record_and_refuses_bad_values(url: str, qname: str) -> None:
    q = Queue(qname, url)
    job = q.enqueue("jobs.noop")
    job.set_progress({"done": 3, "of": 10}, "three")
    assert job.progress is not None and job.progress.value == {"done": 3, "of": 10}
    assert Job.fetch(job.handle, url).progress.message == "three"
    with pytest.raises(TypeError, match="JSON"):
        job.set_progress(object())
    with pytest.raises(TypeError, match="message"):
        job.set_progress(1, message=3)  # type: ignore[arg-type]
    failing = q.enqueue(control_jobs.bad_progress)
    _burst(url, q, "solo")
    assert failing.get_status() == JobStatus.FAILED and "progress value must be JSON" in failing.exc_info
    job.delete()
    with pytest.raises(NoSuchJobError):
        job.set_progress(1)
    assert not job.exists(), "a progress write never recreates a deleted job"


def test_clusterq_info_shows_running_jobs_with_their_progress(url: str, qname: str, tmp_path: Path,
                                                              subprocess_env: dict[str, str]) -> None:
    q = Queue(qname, url)
    paths = [tmp_path / f"started-{i}" for i in range(RUNNING_SHOWN + 2)]
    jobs = [q.enqueue(control_jobs.progress_then_wait, str(p), 120) for p in paths]
    worker = Worker([q], url, pool="thread", concurrency=len(jobs), install_signal_handlers=False)
    with running(worker):
        for path in paths:
            wait_started(path)
        result = subprocess.run([sys.executable, "-m", "clusterq.cli", "info", "-u", url], env=subprocess_env,
                                capture_output=True, text=True, timeout=DEADLINE_S)
        for job in jobs:
            job.stop()
        wait_for(lambda: all(j.get_status() == JobStatus.STOPPED for j in jobs), "the jobs to be stopped")
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if "control_jobs.progress_then_wait" in line]
    assert len(lines) == RUNNING_SHOWN, f"at most {RUNNING_SHOWN} running jobs per queue:\n{result.stdout}"
    assert all("progress 42 halfway" in line for line in lines)
    assert {line.split()[0] for line in lines} <= {job.handle for job in jobs}
    assert "running jobs" in result.stdout


def test_clusterq_info_lists_no_running_jobs_when_none_run(url: str, qname: str,
                                                           subprocess_env: dict[str, str]) -> None:
    Queue(qname, url).enqueue("jobs.noop")
    result = subprocess.run([sys.executable, "-m", "clusterq.cli", "info", "-u", url], env=subprocess_env,
                            capture_output=True, text=True, timeout=DEADLINE_S)
    assert result.returncode == 0 and "running jobs" not in result.stdout
