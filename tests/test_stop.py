"""Stopping a running job (``job.stop()``, ``send_stop_job_command``, ``clusterq stop``) on every
topology: the worker running it hears at once, interrupts it in every pool, records it ``stopped`` with
the reason, never retries it, and keeps serving; a lost stop message is caught by the heartbeat."""

from __future__ import annotations

import importlib
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

import control_jobs
from clusterq import (
    InvalidJobOperation,
    Job,
    JobStatus,
    NoSuchJobError,
    ProcessPool,
    Queue,
    ResultType,
    Retry,
    Worker,
    send_stop_job_command,
)
from clusterq.state import store as T
from clusterq.worker.pools.factory import POOL_KINDS
from worker_thread import running

DEADLINE_S = 60.0  # only bounds a failing test; never asserts speed


def wait_for(predicate, what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def wait_started(path: Path) -> None:
    wait_for(lambda: path.exists() and "started" in path.read_text(), "the job to start")


def _long_job(q: Queue, kind: str, path: Path, **options) -> Job:
    func = control_jobs.async_progress_then_wait if kind == "asyncio" else control_jobs.progress_then_wait
    return q.enqueue(func, str(path), 120, job_timeout=300, **options)


@pytest.mark.parametrize("kind", POOL_KINDS)
def test_a_stopped_job_ends_stopped_with_its_reason_and_is_never_retried(url: str, qname: str, kind: str,
                                                                         tmp_path: Path) -> None:
    q = Queue(qname, url)
    path = tmp_path / "started"
    job = _long_job(q, kind, path, retry=Retry(max=3))
    worker = Worker([q], url, pool=kind, concurrency=2, install_signal_handlers=False)
    with running(worker):
        wait_started(path)
        job.stop("enough of that")
        wait_for(lambda: job.get_status() == JobStatus.STOPPED, "the job to be stopped")
        after = q.enqueue("jobs.add", 20, 22)
        wait_for(lambda: after.get_status() == JobStatus.FINISHED, "the worker to go on serving")
    assert job.exc_info == "JobStopped: enough of that"
    assert job.is_stopped and job.ended_at is not None and job.attempts == 1
    assert job.id in q.failed_job_registry, "RQ keeps stopped jobs with the failed ones"
    assert q.scheduled_job_registry.count == 0 and q.count == 0, "a stopped job is not retried"
    assert q.started_job_registry.count == 0
    assert worker.stats.stopped == 1 and after.return_value() == 42
    latest = job.latest_result()
    assert latest is not None and latest.type == ResultType.STOPPED and latest.exc_string == job.exc_info
    assert Job.fetch(job.handle, url).progress is not None, "what it reported before it stopped stays"


def test_the_process_pool_kills_the_stopped_jobs_child_and_replaces_it(url: str, qname: str,
                                                                       tmp_path: Path) -> None:
    q = Queue(qname, url)
    path = tmp_path / "started"
    job = _long_job(q, "process", path)
    pool = ProcessPool(1)
    with running(Worker([q], url, pool=pool, install_signal_handlers=False)):
        wait_started(path)
        send_stop_job_command(url, job.handle)  # RQ's spelling
        wait_for(lambda: job.get_status() == JobStatus.STOPPED, "the job to be stopped")
        assert pool.replaced == 1
        pids = [q.enqueue("jobs.pid") for _ in range(3)]
        wait_for(lambda: all(j.get_status() == JobStatus.FINISHED for j in pids), "the new child to serve")
    assert job.exc_info == "JobStopped: stop requested"


def test_a_lost_stop_message_is_caught_by_the_heartbeat(url: str, qname: str, tmp_path: Path) -> None:
    q = Queue(qname, url)
    path = tmp_path / "started"
    job = _long_job(q, "thread", path)
    worker = Worker([q], url, pool="thread", concurrency=1, lease_s=1.5, install_signal_handlers=False)
    with running(worker):
        wait_started(path)
        # What stop.lua writes, without its message: only the heartbeat can tell the worker.
        q.store.run(T.set_fields_call(q.keys, job.id, {"sp": "quietly"}))
        wait_for(lambda: job.get_status() == JobStatus.STOPPED, "the heartbeat to stop the job")
    assert job.exc_info == "JobStopped: quietly"


def test_only_a_running_job_can_be_stopped(url: str, qname: str) -> None:
    q = Queue(qname, url)
    queued = q.enqueue("jobs.add", 1, 2)
    with pytest.raises(InvalidJobOperation, match=r"not running .*queued"):
        queued.stop()
    scheduled = q.enqueue_in(3600, "jobs.add", 1, 2)
    with pytest.raises(InvalidJobOperation, match="scheduled"):
        scheduled.stop()
    with pytest.raises(NoSuchJobError):
        Job(qname, "no-such-job", url).stop()
    Worker([q], url, pool="solo", install_signal_handlers=False).work(burst=True)
    with pytest.raises(InvalidJobOperation, match="finished"):
        queued.stop()
    assert queued.get_status() == JobStatus.FINISHED and queued.return_value() == 3


def test_a_stopped_job_can_be_requeued_and_then_runs_to_the_end(url: str, qname: str, tmp_path: Path) -> None:
    q = Queue(qname, url)
    path = tmp_path / "started"
    job = q.enqueue(control_jobs.progress_then_wait, str(path), 120)
    with running(Worker([q], url, pool="thread", concurrency=1, install_signal_handlers=False)):
        wait_started(path)
        job.stop()
        wait_for(lambda: job.get_status() == JobStatus.STOPPED, "the job to be stopped")
    assert q.failed_job_registry.requeue(job.id) == 1
    assert job.get_status() == JobStatus.QUEUED and job.progress is None, "the progress was the last run's"
    path.unlink()
    with running(Worker([q], url, pool="thread", concurrency=1, install_signal_handlers=False)):
        wait_started(path)  # the requeued job runs again (it would run for 120 s)
        assert job.get_status() == JobStatus.STARTED
        job.stop("again")
        wait_for(lambda: job.get_status() == JobStatus.STOPPED, "the second stop")
    assert job.attempts == 2 and job.exc_info == "JobStopped: again"
    results = job.results()
    assert [r.type for r in results] == [ResultType.STOPPED, ResultType.STOPPED]
    assert [r.exc_string for r in results] == ["JobStopped: again", "JobStopped: stop requested"]


def test_clusterq_stop_stops_a_job_by_its_handle(url: str, qname: str, tmp_path: Path,
                                                 subprocess_env: dict[str, str]) -> None:
    q = Queue(qname, url)
    path = tmp_path / "started"
    job = _long_job(q, "process", path)
    with running(Worker([q], url, pool="process", concurrency=1, install_signal_handlers=False)):
        wait_started(path)
        result = subprocess.run([sys.executable, "-m", "clusterq.cli", "stop", "-u", url, job.handle,
                                 "--reason", "from the shell"], env=subprocess_env, capture_output=True,
                                text=True, timeout=DEADLINE_S)
        assert result.returncode == 0, result.stderr
        assert f"stop requested for {job.handle}" in result.stdout
        wait_for(lambda: job.get_status() == JobStatus.STOPPED, "the job to be stopped")
    assert job.exc_info == "JobStopped: from the shell"
    again = subprocess.run([sys.executable, "-m", "clusterq.cli", "stop", "-u", url, job.handle],
                           env=subprocess_env, capture_output=True, text=True, timeout=DEADLINE_S)
    assert again.returncode == 1 and "not running" in again.stderr and "Traceback" not in again.stderr


@pytest.mark.parametrize("kind", ["process", "thread"])
def test_a_job_stopped_while_it_waits_in_a_batch_never_runs(url: str, qname: str, kind: str,
                                                            tmp_path: Path) -> None:
    q = Queue(qname, url)
    path = tmp_path / "started"
    marker = tmp_path / "ran"
    worker = Worker([q], url, pool=kind, concurrency=1, max_batch=10, batch_target_s=1.0,
                    install_signal_handlers=False)
    with running(worker):
        # Quick jobs first: the worker learns that jobs are short and leases them several at a time.
        quick = q.enqueue_many([q.prepare_data("jobs.noop") for _ in range(12)])
        wait_for(lambda: all(j.get_status() == JobStatus.FINISHED for j in quick), "the quick jobs")
        func = control_jobs.progress_then_wait
        first, second = q.enqueue_many([q.prepare_data(func, (str(path), 120)),
                                        q.prepare_data("jobs.record", (str(marker), "second ran"))])
        wait_started(path)
        assert second.get_status() == JobStatus.STARTED, "leased in the same batch, waiting behind the first"
        second.stop("not this one")
        first.stop("nor this one")
        wait_for(lambda: first.get_status() == JobStatus.STOPPED and second.get_status() == JobStatus.STOPPED,
                 "both jobs to be stopped")
    assert not marker.exists(), "the waiting job never ran"
    assert second.exc_info == "JobStopped: not this one" and first.exc_info == "JobStopped: nor this one"
    assert q.count == 0 and q.started_job_registry.count == 0


@pytest.mark.parametrize("kind", POOL_KINDS)
def test_a_stopped_jobs_on_stopped_callback_runs(url: str, qname: str, kind: str, tmp_path: Path) -> None:
    q = Queue(qname, url)
    path = tmp_path / "started"
    job = _long_job(q, kind, path, on_stopped="jobs.cb_stopped")  # it records into the job's first argument
    with running(Worker([q], url, pool=kind, concurrency=1, install_signal_handlers=False)):
        wait_started(path)
        job.stop()
        wait_for(lambda: job.get_status() == JobStatus.STOPPED, "the job to be stopped")
    assert path.read_text().splitlines() == ["started", f"on_stopped {job.id}"]
    assert job.callback_error is None


@pytest.mark.parametrize("kind", POOL_KINDS)
def test_stops_racing_job_completions_lose_nothing_and_never_crash_the_worker(url: str, qname: str, kind: str,
                                                                               tmp_path: Path) -> None:
    """Stop requests land just before, during and just after short jobs end, and while a job imports its
    module (each job's function is in a module of its own, imported when it starts): every job ends
    finished or stopped, once, and the worker, and later imports, live on."""
    token = uuid.uuid4().hex[:8]
    for i in range(60):
        (tmp_path / f"race_{token}_{i}.py").write_text(
            f"import time\n\n\ndef run():\n    time.sleep({0.002 * (i % 7)})\n    return {i}\n")
    sys.path.insert(0, str(tmp_path))
    try:
        q = Queue(qname, url)
        jobs = q.enqueue_many([q.prepare_data(f"race_{token}_{i}.run") for i in range(60)])
        worker = Worker([q], url, pool=kind, concurrency=2, install_signal_handlers=False)
        errors: list[BaseException] = []

        def work() -> None:
            try:
                worker.work(burst=True)
            except BaseException as exc:  # reported below
                errors.append(exc)

        thread = threading.Thread(target=work, daemon=True)
        thread.start()
        stopped = set()
        deadline = time.monotonic() + DEADLINE_S
        while thread.is_alive():
            assert time.monotonic() < deadline, "the burst worker did not finish"
            for job in q.started_job_registry.get_jobs(0, 10):
                try:
                    job.stop("racing")
                    stopped.add(job.id)
                except (InvalidJobOperation, NoSuchJobError):
                    pass  # it ended first
        thread.join(DEADLINE_S)
        assert not errors, f"the worker crashed: {errors[0]!r}"
        statuses = [j.get_status() for j in jobs]
        assert set(statuses) <= {JobStatus.FINISHED, JobStatus.STOPPED}
        assert {j.id for j, s in zip(jobs, statuses) if s == JobStatus.STOPPED} <= stopped
        assert worker.stats.processed == len(jobs) and q.count == 0 and q.started_job_registry.count == 0
        # No import lock was left behind by an interrupted import: importing in another thread completes.
        probe = tmp_path / f"probe_{token}.py"
        probe.write_text("VALUE = 1\n")
        importer = threading.Thread(target=importlib.import_module, args=(f"probe_{token}",), daemon=True)
        importer.start()
        importer.join(DEADLINE_S)
        assert not importer.is_alive(), "an import hangs: an interrupted import leaked its lock"
    finally:
        sys.path.remove(str(tmp_path))
        for name in [n for n in sys.modules if n.startswith((f"race_{token}", f"probe_{token}"))]:
            del sys.modules[name]
