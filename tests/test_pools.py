"""Execution pools on every topology: each kind runs jobs; hard limits kill and replace; crashed and
recycled children lose no job; dedicated pools keep a busy queue from starving the others."""

from __future__ import annotations

import threading
import time

import pytest

from clusterq import JobStatus, ProcessPool, Queue, ThreadPool, Worker
from clusterq.worker.pools.factory import POOL_KINDS


def _burst(url: str, queues, **options) -> Worker:
    options.setdefault("install_signal_handlers", False)
    worker = Worker(queues, url, **options)
    worker.work(burst=True)
    return worker


@pytest.mark.parametrize("kind", POOL_KINDS)
def test_every_pool_kind_runs_jobs_and_records_outcomes(url: str, qname: str, kind: str) -> None:
    q = Queue(qname, url)
    ok = [q.enqueue("jobs.add", i, i) for i in range(12)]
    bad = q.enqueue("jobs.fail", "nope")
    coro = q.enqueue("jobs.async_add", 2, 3)
    worker = _burst(url, q, pool=kind, concurrency=2)
    assert worker.stats.processed == 14
    assert [j.return_value() for j in ok] == [2 * i for i in range(12)]
    assert coro.return_value() == 5, "async def jobs run in every pool"
    assert bad.get_status() == JobStatus.FAILED and "ValueError: nope" in bad.exc_info
    assert q.count == 0 and q.started_job_registry.count == 0


def test_a_job_past_its_hard_limit_is_killed_and_the_pool_keeps_its_size(url: str, qname: str) -> None:
    q = Queue(qname, url)
    stuck = q.enqueue("jobs.stubborn_sleep", 60, job_timeout=0.5)
    after = [q.enqueue("jobs.pid") for _ in range(4)]
    pool = ProcessPool(2, hard_grace_s=0.5)
    worker = _burst(url, q, pool=pool)
    assert stuck.get_status() == JobStatus.FAILED
    assert "time limit exceeded" in stuck.exc_info and "killed" in stuck.exc_info
    assert all(j.get_status() == JobStatus.FINISHED for j in after)
    assert pool.replaced >= 1 and worker.stats.processed == 5


def test_a_crashed_child_is_replaced_and_its_job_follows_the_lease_rules(url: str, qname: str) -> None:
    q = Queue(qname, url)
    crash = q.enqueue("jobs.crash", max_attempts=2)
    fine = [q.enqueue("jobs.add", 1, i) for i in range(5)]
    pool = ProcessPool(1)
    worker = _burst(url, q, pool=pool, maintenance_interval_s=0.2)
    assert [j.return_value() for j in fine] == [1 + i for i in range(5)]
    assert crash.get_status() == JobStatus.FAILED
    assert crash.exc_info.startswith("abandoned") and crash.attempts == 2
    assert worker.stats.crashed == 2 and pool.replaced >= 2


def test_recycled_children_lose_no_job(url: str, qname: str) -> None:
    q = Queue(qname, url)
    jobs = [q.enqueue("jobs.pid") for _ in range(30)]
    pool = ProcessPool(2, max_jobs_per_child=3)
    _burst(url, q, pool=pool, max_batch=1)
    pids = {j.return_value() for j in jobs}
    assert all(j.get_status() == JobStatus.FINISHED for j in jobs)
    assert len(pids) >= 6, "children were recycled after a few jobs each"
    assert pool.replaced >= 5


def test_the_asyncio_pool_cancels_a_coroutine_past_its_limit(url: str, qname: str) -> None:
    q = Queue(qname, url)
    slow = q.enqueue("jobs.async_sleep", 30, job_timeout=0.3)
    quick = [q.enqueue("jobs.async_add", i, 1) for i in range(20)]
    _burst(url, q, pool="asyncio", concurrency=10)
    assert slow.get_status() == JobStatus.FAILED and "cancelled" in slow.exc_info
    assert [j.return_value() for j in quick] == [i + 1 for i in range(20)]


def test_the_thread_pool_raises_the_time_limit_inside_the_job(url: str, qname: str) -> None:
    q = Queue(qname, url)
    slow = q.enqueue("jobs.sleep", 1.5, job_timeout=0.3)  # time.sleep returns, then the exception lands
    _burst(url, q, pool=ThreadPool(2))
    assert slow.get_status() == JobStatus.FAILED and "time limit exceeded" in slow.exc_info


def test_a_dedicated_pool_serves_its_queue_while_the_main_pool_is_busy(url: str, qname: str, tmp_path) -> None:
    main, hot = Queue(qname, url), Queue(f"{qname}-hot", url)
    marker = tmp_path / "long"
    long_job = main.enqueue("jobs.sleep_then_record", 3, str(marker), "long")
    worker = Worker([main], url, pool="process", concurrency=1, lanes=[([hot], "thread", 4)],
                    install_signal_handlers=False)
    thread = threading.Thread(target=worker.work, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while long_job.get_status() != JobStatus.STARTED and time.monotonic() < deadline:
            time.sleep(0.02)
        hot_jobs = [hot.enqueue("jobs.add", i, i) for i in range(10)]
        while not all(j.get_status() == JobStatus.FINISHED for j in hot_jobs) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert all(j.get_status() == JobStatus.FINISHED for j in hot_jobs)
        assert not marker.exists(), "the hot jobs finished while the long job still ran"
    finally:
        worker.request_stop()
        thread.join(30)
    assert long_job.get_status() == JobStatus.FINISHED


@pytest.mark.parametrize("kind", POOL_KINDS)
def test_a_job_timeout_of_minus_one_means_no_limit_in_every_pool(url: str, qname: str, kind: str) -> None:
    q = Queue(qname, url)
    unlimited = q.enqueue("jobs.sleep", 1.0, job_timeout=-1)
    limited = q.enqueue("jobs.sleep", 1.0)  # the worker's default limit below applies
    _burst(url, q, pool=kind, concurrency=2, default_timeout_s=0.4, max_batch=1)
    assert unlimited.get_status() == JobStatus.FINISHED and unlimited.return_value() == 1.0
    assert limited.get_status() == JobStatus.FAILED and "time limit exceeded" in limited.exc_info


@pytest.mark.parametrize("kind", ["process", "fork"])
def test_a_job_past_the_memory_limit_fails_with_memory_error_and_the_others_run(url: str, qname: str,
                                                                                   kind: str) -> None:
    q = Queue(qname, url)
    hog = q.enqueue("jobs.eat_memory")
    others = [q.enqueue("jobs.add", i, 1) for i in range(6)]
    worker = _burst(url, q, pool=kind, concurrency=2, memory_limit_mb=256)
    assert worker.stats.processed == 7
    assert hog.get_status() == JobStatus.FAILED and "MemoryError" in (hog.exc_info or ""), hog.exc_info
    assert [j.return_value() for j in others] == [i + 1 for i in range(6)]


