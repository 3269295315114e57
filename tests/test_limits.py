"""Rate limits and concurrency limits, on every topology, enforced by the lease script across all workers.

Rate limit: at most N jobs of a queue start per period (fixed windows, server clock); a worker that hits
it waits for that queue only. Concurrency limit: at most K jobs with one concurrency key run at once in a
queue; the others wait aside and come back when one ends, is handed back, or its lease expires.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from typing import TypeVar

import pytest

from clusterq import JobStatus, Queue, Worker
from clusterq.state import store as T
from worker_thread import running

pytestmark = pytest.mark.compat

T_ = TypeVar("T_")
DEADLINE_S = 30.0


def wait_for(check: Callable[[], T_], what: str, timeout_s: float = DEADLINE_S) -> T_:
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {timeout_s:g} s waiting for {what}")
        time.sleep(0.02)


def _burst(queues: list[Queue], **options: object) -> int:
    options.setdefault("pool", "solo")
    return Worker(queues, queues[0].connection, install_signal_handlers=False,  # type: ignore[arg-type]
                  **options).work(burst=True)


# --- rate limit ------------------------------------------------------------------------------------

def test_a_rate_limit_caps_the_jobs_started_per_period_across_workers(url: str, qname: str) -> None:
    q = Queue(qname, url)
    assert q.rate_limit is None
    q.set_rate_limit(2, 60)
    assert q.rate_limit == (2, 60.0)
    jobs = [q.enqueue("jobs.add", i, 0) for i in range(5)]
    assert _burst([q], max_batch=10) == 2
    assert _burst([q]) == 0  # another worker: the window is shared
    assert q.count == 3
    assert [j.get_status() for j in jobs].count(JobStatus.FINISHED) == 2
    q.remove_rate_limit()
    assert q.rate_limit is None
    assert _burst([q]) == 3


def test_a_rate_limited_queue_waits_alone_and_then_goes_on(url: str, qname: str) -> None:
    limited = Queue(qname, url)
    free = Queue(qname + "-free", url)
    limited.set_rate_limit(1, 0.5)
    jobs = [limited.enqueue("jobs.add", i, 0) for i in range(3)]
    others = [free.enqueue("jobs.add", i, 0) for i in range(20)]
    worker = Worker([limited, free], url, pool="thread", concurrency=2, install_signal_handlers=False,
                    idle_poll_s=300, maintenance_interval_s=300)
    with running(worker):
        wait_for(lambda: all(j.get_status() == JobStatus.FINISHED for j in others), "the free queue")
        wait_for(lambda: all(j.get_status() == JobStatus.FINISHED for j in jobs), "the limited queue")
    starts = sorted(j.started_at for j in jobs)  # type: ignore[type-var]
    gaps_ms = [(b - a).total_seconds() * 1000 for a, b in itertools.pairwise(starts)]
    assert all(gap >= 499 for gap in gaps_ms), gaps_ms  # one per window of 500 ms (server clock)


def test_rate_limit_input_is_checked(url: str, qname: str) -> None:
    q = Queue(qname, url)
    for args in ((0, 1), (1.5, 1), (True, 1), (1, 0), (1, -2)):
        with pytest.raises(ValueError):
            q.set_rate_limit(*args)  # type: ignore[arg-type]
    assert q.rate_limit is None


# --- concurrency limit per key ---------------------------------------------------------------------

def _max_overlap(jobs: list) -> int:
    """The most jobs running at one instant, from their server-side start and end times."""
    edges = sorted([(j.started_at, 1) for j in jobs] + [(j.ended_at, -1) for j in jobs],
                   key=lambda e: (e[0], e[1]))  # an end at the same ms as a start comes first
    running = peak = 0
    for _, step in edges:
        running += step
        peak = max(peak, running)
    return peak


def test_at_most_k_jobs_of_a_key_run_at_once_across_workers(url: str, qname: str) -> None:
    q = Queue(qname, url)
    q.set_concurrency_limit("tenant-1", 2)
    assert q.concurrency_limits == {"tenant-1": 2}
    limited = [q.enqueue("jobs.sleep", 0.2, concurrency_key="tenant-1") for _ in range(6)]
    other = [q.enqueue("jobs.sleep", 0.2, concurrency_key="tenant-2") for _ in range(3)]
    free = [q.enqueue("jobs.sleep", 0.2) for _ in range(3)]
    workers = [Worker([q], url, pool="thread", concurrency=4, install_signal_handlers=False, max_batch=1,
                      idle_poll_s=300, maintenance_interval_s=300) for _ in range(2)]
    with running(workers[0]), running(workers[1]):
        wait_for(lambda: all(j.get_status() == JobStatus.FINISHED for j in limited + other + free), "every job")
    assert _max_overlap(limited) <= 2
    assert _max_overlap(other) >= 1 and q.count == 0


def test_a_default_limit_applies_to_every_key_without_its_own(url: str, qname: str) -> None:
    q = Queue(qname, url)
    q.set_concurrency_limit(None, 1)
    q.set_concurrency_limit("big", 3)
    assert q.concurrency_limits == {None: 1, "big": 3}
    small = [q.enqueue("jobs.sleep", 0.1, concurrency_key="small") for _ in range(4)]
    big = [q.enqueue("jobs.sleep", 0.1, concurrency_key="big") for _ in range(6)]
    worker = Worker([q], url, pool="thread", concurrency=6, install_signal_handlers=False, max_batch=1,
                    idle_poll_s=300, maintenance_interval_s=300)
    with running(worker):
        wait_for(lambda: all(j.get_status() == JobStatus.FINISHED for j in small + big), "every job")
    assert _max_overlap(small) == 1
    assert _max_overlap(big) <= 3
    q.set_concurrency_limit(None, None)
    q.set_concurrency_limit("big", None)
    assert q.concurrency_limits == {}


def test_a_dead_workers_slot_is_freed_when_its_lease_expires(url: str, qname: str) -> None:
    q = Queue(qname, url)
    q.set_concurrency_limit("k", 1)
    first = q.enqueue("jobs.add", 1, 1, concurrency_key="k")
    second = q.enqueue("jobs.add", 2, 2, concurrency_key="k")
    # A worker that leases `first` and dies: its lease (50 ms) runs out, nobody completes it.
    leased = T.parse_lease_reply(q.name, q.store.run(T.lease_call(q.keys, 2, 50, "dead", 60_000))).jobs
    assert [j.id for j in leased] == [first.id]  # `second` was set aside, not leased
    assert q.count == 1 and second.get_status() == JobStatus.QUEUED
    worker = Worker([q], url, pool="solo", install_signal_handlers=False, maintenance_interval_s=0.1,
                    idle_poll_s=300)
    with running(worker):
        wait_for(lambda: first.get_status() == JobStatus.FINISHED and second.get_status() == JobStatus.FINISHED,
                 "both jobs after the dead worker's lease expired")
    assert first.return_value() == 2 and second.return_value() == 4
    assert q.count == 0


def test_jobs_waiting_aside_can_be_canceled_and_the_rest_still_run(url: str, qname: str) -> None:
    q = Queue(qname, url)
    q.set_concurrency_limit("k", 1)
    jobs = [q.enqueue("jobs.add", i, 0, concurrency_key="k") for i in range(4)]
    leased = T.parse_lease_reply(q.name, q.store.run(T.lease_call(q.keys, 4, 60_000, "w", 60_000))).jobs
    assert [j.id for j in leased] == [jobs[0].id]
    assert q.count == 3
    jobs[1].cancel()
    jobs[2].delete()
    assert q.count == 1
    q.store.run(T.complete_call(q.keys, [T.Outcome(jobs[0].id, leased[0].token, "finished", b"0", 60_000)]))
    assert _burst([q]) == 1
    assert jobs[3].get_status() == JobStatus.FINISHED and q.count == 0
    assert jobs[1].get_status() == JobStatus.CANCELED


def test_concurrency_limit_input_is_checked(url: str, qname: str) -> None:
    q = Queue(qname, url)
    for key, limit in (("k", 0), ("k", 1.5), ("", 1), (3, 1)):
        with pytest.raises(ValueError):
            q.set_concurrency_limit(key, limit)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="concurrency_key"):
        q.enqueue("jobs.noop", concurrency_key=5)


def test_raising_or_removing_a_limit_lets_the_jobs_set_aside_go_at_the_next_maintenance(url: str,
                                                                                      qname: str) -> None:
    q = Queue(qname, url)
    q.set_concurrency_limit("k", 1)
    jobs = [q.enqueue("jobs.add", i, 0, concurrency_key="k") for i in range(6)]

    def lease(n: int) -> list[str]:
        reply = q.store.run(T.lease_call(q.keys, n, 60_000, "w", 60_000))
        return [j.id for j in T.parse_lease_reply(q.name, reply).jobs]

    assert lease(6) == [jobs[0].id]  # one runs (and keeps running), five wait aside
    q.set_concurrency_limit("k", 3)
    assert lease(6) == []  # nothing is in the queue itself: the five wait aside
    q.store.run(T.requeue_expired_call(q.keys, 100, 3, 60_000))  # maintenance: two free slots
    assert lease(6) == [jobs[1].id, jobs[2].id]
    q.set_concurrency_limit("k", None)
    q.store.run(T.requeue_expired_call(q.keys, 100, 3, 60_000))  # no limit now: all of them go back
    assert lease(6) == [jobs[3].id, jobs[4].id, jobs[5].id]
    assert q.count == 0


def test_emptying_a_queue_removes_the_jobs_set_aside_too(url: str, qname: str) -> None:
    q = Queue(qname, url)
    q.set_concurrency_limit("k", 1)
    jobs = [q.enqueue("jobs.add", i, 0, concurrency_key=k) for i in range(3) for k in ("k", "other")]
    q.set_concurrency_limit("other", 1)
    leased = T.parse_lease_reply(q.name, q.store.run(T.lease_call(q.keys, 6, 60_000, "w", 60_000))).jobs
    assert len(leased) == 2 and q.count == 4  # one of each key runs, two of each wait aside
    assert q.empty() == 4
    assert q.count == 0
    assert sum(j.exists() for j in jobs) == 2  # only the running ones keep their records
