"""Suspend and resume, one queue or all of them, on every topology: a suspended queue's jobs stay queued
and no worker leases them; resuming wakes idle workers at once (their fallback poll and maintenance are
set far beyond the test's deadlines, so only the wake-up message can make them notice)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import TypeVar

import pytest

import clusterq
from clusterq import JobStatus, Queue, Worker
from clusterq.cli.main import main as cli_main
from worker_thread import running

pytestmark = pytest.mark.compat

T_ = TypeVar("T_")
DEADLINE_S = 20.0
NEVER_S = 300.0


def wait_for(check: Callable[[], T_], what: str, timeout_s: float = DEADLINE_S) -> T_:
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {timeout_s:g} s waiting for {what}")
        time.sleep(0.02)


def _idle_worker(queues: list[Queue]) -> Worker:
    return Worker(queues, queues[0].connection, pool="thread", concurrency=2, install_signal_handlers=False,
                  idle_poll_s=NEVER_S, maintenance_interval_s=NEVER_S)


@pytest.fixture(autouse=True)
def _resume_all(url: str) -> Iterator[None]:
    yield
    clusterq.resume(url)  # never leave the deployment suspended for the next test


def test_a_suspended_queue_keeps_its_jobs_and_a_burst_worker_leaves_them(url: str, qname: str) -> None:
    q = Queue(qname, url)
    other = Queue(qname + "-other", url)
    assert not q.is_suspended
    q.suspend()
    assert q.is_suspended and not other.is_suspended
    jobs = [q.enqueue("jobs.add", i, 1) for i in range(3)]
    done = other.enqueue("jobs.add", 1, 1)
    worker = Worker([q, other], url, pool="solo", install_signal_handlers=False)
    assert worker.work(burst=True) == 1
    assert done.get_status() == JobStatus.FINISHED
    assert q.count == 3 and all(j.get_status() == JobStatus.QUEUED for j in jobs)
    q.resume()
    assert not q.is_suspended
    assert Worker([q], url, pool="solo", install_signal_handlers=False).work(burst=True) == 3


def test_resuming_a_queue_wakes_an_idle_worker_at_once(url: str, qname: str) -> None:
    paused = Queue(qname, url)
    busy = Queue(qname + "-busy", url)
    paused.suspend()
    with running(_idle_worker([paused, busy])):
        held = paused.enqueue("jobs.add", 2, 2)
        ran = busy.enqueue("jobs.add", 1, 1)
        wait_for(lambda: ran.get_status() == JobStatus.FINISHED, "the other queue's job")
        assert held.get_status() == JobStatus.QUEUED
        paused.resume()
        wait_for(lambda: held.get_status() == JobStatus.FINISHED, "the resumed queue's job")
    assert held.return_value() == 4


def test_suspending_everything_stops_leasing_until_resumed(url: str, qname: str) -> None:
    q = Queue(qname, url)
    worker = _idle_worker([q])
    with running(worker):
        first = q.enqueue("jobs.add", 1, 1)
        wait_for(lambda: first.get_status() == JobStatus.FINISHED, "a job before the suspension")
        clusterq.suspend(url)
        assert clusterq.is_suspended(url)
        wait_for(lambda: worker._suspended, "the worker to hear of the suspension")
        held = q.enqueue("jobs.add", 2, 2)
        time.sleep(0.5)  # room for a (wrong) lease; the assertion below does not depend on speed
        assert held.get_status() == JobStatus.QUEUED
        clusterq.resume(url)
        assert not clusterq.is_suspended(url)
        wait_for(lambda: held.get_status() == JobStatus.FINISHED, "the job after resume")


def test_a_worker_started_while_everything_is_suspended_leases_nothing(url: str, qname: str) -> None:
    q = Queue(qname, url)
    job = q.enqueue("jobs.noop")
    clusterq.suspend(url)
    assert Worker([q], url, pool="solo", install_signal_handlers=False).work(burst=True) == 0
    assert job.get_status() == JobStatus.QUEUED
    clusterq.resume(url)
    assert Worker([q], url, pool="solo", install_signal_handlers=False).work(burst=True) == 1


def test_cli_suspend_and_resume(url: str, qname: str, capsys: pytest.CaptureFixture[str]) -> None:
    q = Queue(qname, url)
    assert cli_main(["suspend", "-u", url, "-q", qname]) == 0
    assert q.is_suspended and not clusterq.is_suspended(url)
    assert cli_main(["resume", "-u", url, "-q", qname]) == 0
    assert not q.is_suspended
    assert cli_main(["suspend", "-u", url]) == 0
    assert clusterq.is_suspended(url)
    assert cli_main(["resume", "-u", url]) == 0
    assert not clusterq.is_suspended(url)
    assert "resumed" in capsys.readouterr().out
