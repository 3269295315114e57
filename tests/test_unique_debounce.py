"""Unique jobs and debouncing, on every topology.

``unique=True`` refuses a second job with the id of one still waiting or running (``DuplicateJob``);
``debounce=(key, window_s)`` coalesces repeated enqueues of one key into one execution with the latest
arguments."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from clusterq import AsyncQueue, DuplicateJob, JobStatus, Queue, Worker

pytestmark = pytest.mark.compat


def _burst(q: Queue) -> Worker:
    worker = Worker([q], q.connection, pool="solo", install_signal_handlers=False)
    worker.work(burst=True)
    return worker


# --- unique ----------------------------------------------------------------------------------------

def test_unique_refuses_a_second_job_while_the_first_waits_or_runs(url: str, qname: str) -> None:
    q = Queue(qname, url)
    first = q.enqueue("jobs.add", 1, 2, job_id="report-1", unique=True)
    with pytest.raises(DuplicateJob, match="report-1") as caught:
        q.enqueue("jobs.add", 5, 5, job_id="report-1", unique=True)
    assert caught.value.job_ids == ["report-1"]
    assert q.count == 1 and first.args == [1, 2]  # the first job is untouched
    # without unique, the same call is the documented no-op (retry-safe enqueue)
    assert q.enqueue("jobs.add", 5, 5, job_id="report-1").args == [1, 2]
    scheduled = q.enqueue_in(3600, "jobs.noop", job_id="later", unique=True)
    assert scheduled.get_status() == JobStatus.SCHEDULED
    with pytest.raises(DuplicateJob):
        q.enqueue("jobs.noop", job_id="later", unique=True)
    with pytest.raises(DuplicateJob):
        q.enqueue_in(10, "jobs.noop", job_id="report-1", unique=True)


def test_unique_lets_the_id_of_an_ended_job_be_enqueued_as_a_no_op(url: str, qname: str) -> None:
    q = Queue(qname, url)
    job = q.enqueue("jobs.add", 1, 2, job_id="once", unique=True)
    _burst(q)
    assert job.get_status() == JobStatus.FINISHED
    again = q.enqueue("jobs.add", 3, 4, job_id="once", unique=True)  # ended: not a duplicate, nothing created
    assert again.get_status() == JobStatus.FINISHED and again.return_value() == 3
    assert q.count == 0


def test_unique_needs_a_job_id(url: str, qname: str) -> None:
    with pytest.raises(ValueError, match="job_id"):
        Queue(qname, url).enqueue("jobs.noop", unique=True)


def test_enqueue_many_enqueues_the_others_and_names_each_duplicate(url: str, qname: str) -> None:
    q = Queue(qname, url)
    q.enqueue("jobs.noop", job_id="a")
    q.enqueue("jobs.noop", job_id="c")
    datas = [q.prepare_data("jobs.noop", job_id=i, unique=True) for i in ("a", "b", "c", "d")]
    with pytest.raises(DuplicateJob) as caught:
        q.enqueue_many(datas)
    assert caught.value.job_ids == ["a", "c"]
    assert [j.id for j in caught.value.jobs] == ["a", "b", "c", "d"]
    assert q.count == 4  # a and c from before, b and d new


def test_async_queue_refuses_duplicates_too(url: str, qname: str) -> None:
    async def main() -> None:
        async with AsyncQueue(qname, url) as q:
            await q.enqueue("jobs.noop", job_id="x", unique=True)
            with pytest.raises(DuplicateJob):
                await q.enqueue("jobs.noop", job_id="x", unique=True)
            # debounce is no longer refused here: tests/test_api_parity.py runs it on both APIs

    asyncio.run(main())


# --- debounce --------------------------------------------------------------------------------------

def test_a_thousand_enqueues_of_one_key_run_once_with_the_last_arguments(url: str, qname: str,
                                                                        tmp_path: Path) -> None:
    q = Queue(qname, url)
    out = tmp_path / "runs"
    jobs = [q.enqueue("jobs.record", str(out), i, debounce=("counter:42", 0.5)) for i in range(1000)]
    assert len({j.id for j in jobs}) == 1
    assert q.scheduled_job_registry.count == 1 and q.count == 0
    assert jobs[0].args == [str(out), 999]
    time.sleep(0.6)  # let the window end (the job is due), then drain the queue
    _burst(q)
    assert out.read_text().split() == ["999"]
    assert jobs[0].get_status() == JobStatus.FINISHED
    # The window is over and its job ran: the next enqueue opens a new window with a new job.
    later = q.enqueue("jobs.record", str(out), "next", debounce=("counter:42", 0.5))
    assert later.id != jobs[0].id and later.get_status() == JobStatus.SCHEDULED
    other_key = q.enqueue("jobs.record", str(out), "other", debounce=("counter:43", 0.5))
    assert other_key.id not in (later.id, jobs[0].id)


def test_debounce_updates_a_due_job_that_no_worker_took_yet(url: str, qname: str, tmp_path: Path) -> None:
    q = Queue(qname, url)
    out = tmp_path / "runs"
    first = q.enqueue("jobs.record", str(out), "a", debounce=("k{1}", 0.05))
    time.sleep(0.1)
    _worker = Worker([q], q.connection, pool="solo", install_signal_handlers=False)
    _worker._maybe_maintain()  # promotion only: the job is queued, not started
    assert first.get_status() == JobStatus.QUEUED
    second = q.enqueue("jobs.record", str(out), "b", debounce=("k{1}", 0.05))
    assert second.id == first.id
    _burst(q)
    assert out.read_text().split() == ["b"]


def test_debounce_input_is_checked(url: str, qname: str) -> None:
    q = Queue(qname, url)
    for bad in (("k",), ("", 1), ("k", 0), ("k", -1), "k"):
        with pytest.raises(ValueError, match="debounce"):
            q.enqueue("jobs.noop", debounce=bad)
    with pytest.raises(ValueError, match="job_id"):
        q.enqueue("jobs.noop", debounce=("k", 1), job_id="x")
    with pytest.raises(TypeError, match="debounce"):
        q.enqueue_many([q.prepare_data("jobs.noop", debounce=("k", 1))])


def test_a_signed_debounced_job_updated_by_later_calls_still_verifies(url: str, qname: str,
                                                                     tmp_path: Path) -> None:
    key = b"k" * 32
    q = Queue(qname, url, signing_key=key)
    out = tmp_path / "runs"
    jobs = [q.enqueue("jobs.record", str(out), i, debounce=("signed", 0.05)) for i in range(5)]
    assert len({j.id for j in jobs}) == 1
    time.sleep(0.1)
    worker = Worker([q], url, pool="solo", install_signal_handlers=False, signing_key=key)
    assert worker.work(burst=True) == 1
    assert worker.stats.failed == 0, jobs[0].exc_info
    assert out.read_text().split() == ["4"]
