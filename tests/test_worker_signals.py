"""``clusterq worker`` as a real process, on every topology: a first SIGTERM (or Ctrl-C) lets the running
job finish, a second one hands it back to its queue at once, and a worker killed with SIGKILL loses its
job only until the lease expires and another worker runs it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TypeVar

import pytest

import clusterq
from clusterq import Job, JobStatus, Queue, Worker

T_ = TypeVar("T_")
DEADLINE_S = 20.0


def wait_for(check: Callable[[], T_], what: str, timeout_s: float = DEADLINE_S) -> T_:
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {timeout_s:g} s waiting for {what}")
        time.sleep(0.02)


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


POOLS = pytest.mark.parametrize("pool", ["process", "solo"])
"""Tests marked with this run with the default process pool and with jobs in the worker process itself."""
STANDALONE = pytest.mark.parametrize("clusterq_topology", ["standalone"], indirect=True)
"""Signal handling is the worker process's own business, the same on every topology: tests marked with this
run on standalone only. The two that end in a server-side transition (the hand-back on a second SIGTERM,
the lease expiry after a SIGKILL) run on every topology."""


@contextmanager
def worker_process(url: str, env: dict[str, str], log: Path, *args: str,
                   pool: str = "process") -> Iterator[subprocess.Popen[bytes]]:
    """``clusterq worker -u URL --pool P -c 1 ARGS...`` with its output in ``log``; killed if the test leaves it
    running."""
    command = [sys.executable, "-m", "clusterq.cli", "worker", "-u", url, "--pool", pool, "-c", "1", *args]
    with log.open("wb") as out:
        # Its own session, so the end of the test can reap its pool's children too (see session_processes).
        proc = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=log.parent,
                                start_new_session=True)
    try:
        yield proc
    finally:
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def session_processes(session_id: int) -> list[int]:
    """Pids of the live processes in a session (Linux /proc), e.g. pool children a dead worker left."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    fields = fh.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) == session_id and fields[0] != "Z":  # fields: state, ppid, pgrp, session
                pids.append(int(entry))
    return pids


def exit_code(proc: subprocess.Popen[bytes], log: Path) -> int:
    try:
        return proc.wait(DEADLINE_S)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"the worker did not exit; its log:\n{log.read_text()}") from None


def status(job: Job) -> JobStatus | None:
    return job.get_status()


@STANDALONE
@pytest.mark.parametrize("pool,signum", [
    pytest.param("process", signal.SIGTERM, id="process-SIGTERM"),
    pytest.param("solo", signal.SIGTERM, id="solo-SIGTERM"),
    pytest.param("process", signal.SIGINT, id="process-SIGINT"),  # Ctrl-C: the same path in the supervisor
    pytest.param("process", signal.SIGHUP, id="process-SIGHUP"),  # a closed terminal: a stop, not a kill
    pytest.param("solo", signal.SIGHUP, id="solo-SIGHUP"),
])
def test_first_stop_signal_lets_the_running_job_finish_then_the_worker_exits_0(
    url: str, qname: str, tmp_path: Path, subprocess_env: dict[str, str], pool: str, signum: signal.Signals
) -> None:
    marker, log = tmp_path / "ran", tmp_path / "worker.log"
    queue = Queue(qname, url)
    running = queue.enqueue("jobs.sleep_then_record", 2.0, str(marker), "finished its work")
    waiting = queue.enqueue("jobs.record", str(marker), "should not start")

    with worker_process(url, subprocess_env, log, qname, pool=pool) as proc:
        wait_for(lambda: status(running) == JobStatus.STARTED, "the job to start")
        listed = [w for w in clusterq.list_workers(url) if w.pid == proc.pid]
        assert listed and listed[0].queues == [qname]
        proc.send_signal(signum)
        assert exit_code(proc, log) == 0, log.read_text()

    assert lines(marker) == ["finished its work"]
    assert status(running) == JobStatus.FINISHED
    assert running.return_value() == "finished its work"
    assert status(waiting) == JobStatus.QUEUED
    assert queue.count == 1 and queue.started_job_registry.count == 0
    assert not [w for w in clusterq.list_workers(url) if w.pid == proc.pid]
    assert "Traceback" not in log.read_text()


@STANDALONE
@pytest.mark.parametrize("pool", ["process", "fork"])
def test_sigterm_to_the_whole_process_group_lets_the_childs_job_finish_then_the_worker_exits_0(
    url: str, qname: str, tmp_path: Path, subprocess_env: dict[str, str], pool: str
) -> None:
    """supervisord's stopasgroup, Kubernetes without a preStop hook, Ctrl-C in a terminal: the children get
    the signal too. The supervisor decides; the job is neither killed nor left ``started``."""
    marker, log = tmp_path / "ran", tmp_path / "worker.log"
    queue = Queue(qname, url)
    job = queue.enqueue("jobs.record_then_sleep", str(marker), "started", 1.5)

    with worker_process(url, subprocess_env, log, qname, pool=pool) as proc:
        wait_for(lambda: lines(marker), "the job to start")
        os.killpg(proc.pid, signal.SIGTERM)
        assert exit_code(proc, log) == 0, log.read_text()

    assert status(job) == JobStatus.FINISHED, log.read_text()
    assert job.return_value() == "started"
    assert queue.started_job_registry.count == 0


@STANDALONE
@pytest.mark.parametrize("pool", ["process", "fork"])
def test_a_second_sigterm_to_the_whole_process_group_hands_the_childs_job_back_at_once(
    url: str, qname: str, tmp_path: Path, subprocess_env: dict[str, str], pool: str
) -> None:
    marker, log = tmp_path / "ran", tmp_path / "worker.log"
    queue = Queue(qname, url)
    job = queue.enqueue("jobs.record_then_sleep", str(marker), "started", 120)

    with worker_process(url, subprocess_env, log, qname, pool=pool) as proc:
        wait_for(lambda: lines(marker), "the job to start")
        os.killpg(proc.pid, signal.SIGTERM)
        wait_for(lambda: "SIGTERM received" in log.read_text(), "the worker to acknowledge the first SIGTERM")
        os.killpg(proc.pid, signal.SIGTERM)
        assert exit_code(proc, log) == 0, log.read_text()

    job.refresh()
    assert job.get_status() == JobStatus.QUEUED, log.read_text()
    assert job.attempts == 0 and queue.get_job_ids() == [job.id]
    assert queue.started_job_registry.count == 0


@STANDALONE
@pytest.mark.parametrize("pool", ["process", "fork"])
def test_sigusr1_makes_the_pool_run_code_deployed_after_the_worker_started(
    url: str, qname: str, tmp_path: Path, subprocess_env: dict[str, str], pool: str
) -> None:
    module = tmp_path / "deployed_code.py"  # the worker runs in tmp_path and imports from there
    module.write_text("def version():\n    return 'v1'\n")
    queue = Queue(qname, url)
    log = tmp_path / "worker.log"

    with worker_process(url, subprocess_env, log, qname, pool=pool) as proc:
        first = queue.enqueue("deployed_code.version")
        wait_for(lambda: status(first) == JobStatus.FINISHED, "the first job")
        module.write_text("def version():\n    return 'v2, deployed'\n")  # another size: no stale .pyc
        if pool == "process":  # its child imported v1 and keeps it
            stale = queue.enqueue("deployed_code.version")
            wait_for(lambda: status(stale) == JobStatus.FINISHED, "a job before the reload")
            assert stale.return_value() == "v1"
        proc.send_signal(signal.SIGUSR1)
        wait_for(lambda: "reloading" in log.read_text(), "the worker to reload")
        second = queue.enqueue("deployed_code.version")
        wait_for(lambda: status(second) == JobStatus.FINISHED, "the job after the reload")
        assert proc.poll() is None, "SIGUSR1 does not stop the worker"
        proc.send_signal(signal.SIGTERM)
        assert exit_code(proc, log) == 0, log.read_text()

    assert first.return_value() == "v1"
    assert second.return_value() == "v2, deployed"
    assert "Traceback" not in log.read_text()


@POOLS
def test_second_sigterm_stops_at_once_and_hands_the_running_job_back(
    url: str, qname: str, tmp_path: Path, subprocess_env: dict[str, str], pool: str
) -> None:
    marker, log = tmp_path / "ran", tmp_path / "worker.log"
    queue = Queue(qname, url)
    job = queue.enqueue("jobs.record_then_sleep", str(marker), "started", 120)

    with worker_process(url, subprocess_env, log, qname, pool=pool) as proc:
        wait_for(lambda: lines(marker), "the job to start")
        proc.send_signal(signal.SIGTERM)
        wait_for(lambda: "SIGTERM received" in log.read_text(), "the worker to acknowledge the first SIGTERM")
        assert proc.poll() is None  # still waiting for the 120 s job
        proc.send_signal(signal.SIGTERM)
        assert exit_code(proc, log) == 0, log.read_text()

    job.refresh()
    assert job.get_status() == JobStatus.QUEUED
    assert job.attempts == 0  # handing back does not count as an attempt
    assert job.worker_name is None
    assert queue.count == 1
    assert queue.get_job_ids() == [job.id]
    assert queue.started_job_registry.count == 0
    assert queue.failed_job_registry.count == 0 and queue.finished_job_registry.count == 0


@POOLS
def test_job_of_a_worker_killed_with_sigkill_is_run_by_another_worker_after_its_lease_expires(
    url: str, qname: str, tmp_path: Path, subprocess_env: dict[str, str], pool: str
) -> None:
    marker, log = tmp_path / "ran", tmp_path / "worker.log"
    queue = Queue(qname, url)
    job = queue.enqueue("jobs.record_then_sleep", str(marker), "ran", 1.0)

    with worker_process(url, subprocess_env, log, "--lease-s", "1", qname, pool=pool) as proc:
        wait_for(lambda: lines(marker), "the job to start")
        proc.kill()
        proc.wait(DEADLINE_S)
    assert status(job) == JobStatus.STARTED  # nobody completed it

    rescuer = Worker(qname, url, install_signal_handlers=False, maintenance_interval_s=0.1, idle_poll_s=0.2)
    thread = threading.Thread(target=rescuer.work, daemon=True)
    thread.start()
    try:
        wait_for(lambda: status(job) == JobStatus.FINISHED, "another worker to run the job")
    finally:
        rescuer.request_stop()
        thread.join(DEADLINE_S)

    job.refresh()
    assert lines(marker) == ["ran", "ran"]
    assert job.attempts == 2
    assert job.worker_name == rescuer.name
    assert job.return_value() == "ran"
    assert rescuer.stats.processed == 1
    assert queue.started_job_registry.count == 0 and queue.count == 0



@STANDALONE
def test_pool_children_of_a_worker_killed_with_sigkill_exit_with_it(
    url: str, qname: str, tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    marker, log = tmp_path / "ran", tmp_path / "worker.log"
    job = Queue(qname, url).enqueue("jobs.record_then_sleep", str(marker), "ran", 0.5)

    with worker_process(url, subprocess_env, log, qname) as proc:
        wait_for(lambda: lines(marker), "the job to start")
        assert len(session_processes(proc.pid)) == 2  # the supervisor and its one child
        proc.kill()
        proc.wait(DEADLINE_S)
        wait_for(lambda: not session_processes(proc.pid), "the orphaned child to exit", timeout_s=4.0)
    assert status(job) == JobStatus.STARTED  # its outcome had no supervisor to record it
