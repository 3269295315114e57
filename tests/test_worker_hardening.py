"""What an adversarial run broke in the worker (issue 16), on every topology: a forged record never reaches
the supervisor's decisions, a Redis user without scripting gets a clean exit, two workers cannot share a
name, and a dead worker's jobs come back when their lease ends rather than a maintenance interval later."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest

import clusterq
from clusterq import Job, JobStatus, Queue, Worker, WorkerNameInUse
from clusterq.state import keys as K
from clusterq.state.transitions import LeasedJob
from clusterq.worker.maintenance import RECOVERY_MARGIN_S
from clusterq.worker.settings import DEFAULT_LEASE_S, WorkerSettings

KEY = b"k" * 32
DEADLINE_S = 30.0
T_ = TypeVar("T_")


def wait_for(check: Callable[[], T_], what: str, timeout_s: float = DEADLINE_S) -> T_:
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {timeout_s:g} s waiting for {what}")
        time.sleep(0.02)


def forge(queue: Queue, job_id: str, options: str) -> Job:
    """A job record written by someone with Redis access and no signing key."""
    queue.connection.hset(queue.keys.job(job_id), mapping={"s": "queued", "c": "0", "f": "jobs.add",
                                                           "p": "[[1, 2], {}]", "o": options})
    queue.connection.rpush(queue.keys.pending, job_id)
    return Job.fetch(job_id, queue.connection, queue=queue.name)


FORGED_OPTIONS = {
    "huge-ttl": '{"result_ttl": 1e999, "failure_ttl": 1e999}',
    "tiny-limit": '{"timeout": 0.001}',
    "no-limit": '{"timeout": -1}',
    "nan": '{"timeout": NaN}',
    "garbage": "not json",
}


# --- 16.7: the signature first, everywhere ------------------------------------------------------------

@pytest.mark.parametrize("pool", ["process", "fork", "thread", "asyncio", "solo"])
def test_forged_records_on_every_pool_of_a_signing_worker_cost_one_failed_record_each(
    url: str, qname: str, pool: str
) -> None:
    queue = Queue(qname, url)
    forged = [forge(queue, f"forged-{name}", options) for name, options in FORGED_OPTIONS.items()]
    signed = Queue(qname, url, signing_key=KEY).enqueue("jobs.add", 2, 3)

    worker = Worker(qname, url, pool=pool, concurrency=1, signing_key=KEY, install_signal_handlers=False)
    worker.work(burst=True)

    for job in forged:
        assert job.get_status() == JobStatus.FAILED, job.id
        assert "SignatureError: the job is not signed" in (job.exc_info or ""), job.id
        assert job.attempts == 1, f"{job.id}: refused once, never retried"
    assert signed.return_value() == 5
    assert (worker.stats.failed, worker.stats.finished, worker.stats.crashed) == (len(forged), 1, 0)
    assert queue.started_job_registry.count == 0 and queue.count == 0


def test_the_supervisor_reads_no_option_of_an_unsigned_record(url: str) -> None:
    """The process pools' supervisor asks for a job's time limit (to kill a child past it) and builds the
    failure of a job it killed: neither may come from a record no key holder wrote."""
    worker = Worker("q", url, signing_key=KEY, install_signal_handlers=False)
    executor = worker.executor
    default = executor.default_timeout_s
    for name, options in FORGED_OPTIONS.items():
        leased = LeasedJob("q", f"forged-{name}", 1, "jobs.add", b"[[1, 2], {}]", options.encode())
        assert executor.timeout_of(leased) == default, name
        failure = executor.failure(leased, "killed")
        assert failure.keep_ms == executor.failure(LeasedJob("q", "plain", 1, "jobs.add", b"", b""), "x").keep_ms


# --- 16.13: one worker per name ------------------------------------------------------------------------

def test_a_second_worker_with_a_running_workers_name_is_refused_and_the_first_keeps_its_registration(
    url: str, qname: str, subprocess_env: dict[str, str], tmp_path: Path
) -> None:
    first = Worker(qname, url, pool="solo", name="the-one", install_signal_handlers=False, idle_poll_s=0.2)
    thread = threading.Thread(target=first.work, daemon=True)
    thread.start()
    try:
        wait_for(lambda: [w for w in clusterq.list_workers(url) if w.name == "the-one"], "the first worker")
        second = Worker(qname, url, pool="solo", name="the-one", install_signal_handlers=False)
        with pytest.raises(WorkerNameInUse, match="another worker named 'the-one' is running"):
            second.work(burst=True)
        result = subprocess.run([sys.executable, "-m", "clusterq.cli", "worker", "-u", url, "--burst",
                                 "--name", "the-one", qname], env=subprocess_env, capture_output=True,
                                text=True, timeout=DEADLINE_S, cwd=tmp_path)
        assert result.returncode == 4, result.stderr
        assert "another worker named 'the-one' is running" in result.stderr
        assert [w.name for w in clusterq.list_workers(url)].count("the-one") == 1
    finally:
        first.request_stop()
        thread.join(DEADLINE_S)
    assert not [w for w in clusterq.list_workers(url) if w.name == "the-one"]

    again = Worker(qname, url, pool="solo", name="the-one", install_signal_handlers=False)
    job = Queue(qname, url).enqueue("jobs.add", 1, 1)
    again.work(burst=True)  # the name is free once its worker stopped
    assert job.return_value() == 2


def test_the_name_of_a_worker_that_died_on_this_host_is_taken_over(url: str, qname: str) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    client = Queue(qname, url).connection
    client.hset(K.worker("crashed"), mapping={"instance": "old", "host": __import__("socket").gethostname(),
                                             "pid": str(gone.pid), "heartbeat": str(int(time.time() * 1000))})
    job = Queue(qname, url).enqueue("jobs.add", 2, 2)
    Worker(qname, url, pool="solo", name="crashed", install_signal_handlers=False).work(burst=True)
    assert job.return_value() == 4


# --- 16.14: recovery at the earliest lease's end --------------------------------------------------------

def test_recovery_falls_due_when_the_earliest_lease_ends_not_a_maintenance_interval_later(
    url: str, qname: str, tmp_path: Path
) -> None:
    marker, release = tmp_path / "ran", tmp_path / "release"
    queue = Queue(qname, url)
    # Ends when the test says so: a job sleeping in C would outlive the test's join and leave this
    # worker running into the next test.
    job = queue.enqueue("jobs.record_then_wait", str(marker), str(release))
    holder = Worker(qname, url, pool="thread", concurrency=1, lease_s=4, install_signal_handlers=False)
    thread = threading.Thread(target=holder.work, daemon=True)
    thread.start()
    try:
        wait_for(lambda: marker.exists(), "the job to start")
        watcher = Worker(qname, url, pool="solo", maintenance_interval_s=300, install_signal_handlers=False)
        now = time.monotonic()
        watcher.maintenance.run(now)
        # Not 300 s: the watcher looks again when the lease it saw would end (at most lease_s away).
        assert now < watcher.maintenance.next_due <= now + 4 + 0.5
    finally:
        release.write_text("")
        holder.request_stop()
        thread.join(DEADLINE_S)
    assert not thread.is_alive(), "the holder worker did not stop"
    assert job.get_status() == JobStatus.FINISHED


def test_default_lease_and_maintenance_put_a_dead_workers_jobs_back_within_ten_seconds() -> None:
    settings = WorkerSettings()
    assert settings.lease_s == DEFAULT_LEASE_S <= 8
    assert settings.heartbeat_interval_s == settings.lease_s / 4  # three heartbeats may be missed
    # A lease seen by a round is recovered when it ends; one taken after a round is seen by the next one,
    # at most maintenance_interval_s later, before it can end.
    assert settings.maintenance_interval_s <= settings.lease_s and settings.lease_s + RECOVERY_MARGIN_S < 10
