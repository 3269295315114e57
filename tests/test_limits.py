"""Rate limits and concurrency limits, on every topology, enforced by the lease script across all workers.

Rate limit: at most N jobs of a queue start per period (fixed windows, server clock); a worker that hits
it waits for that queue only. Concurrency limit: at most K jobs with one concurrency key run at once in a
queue; the others wait aside and come back when one ends, is handed back, or its lease expires.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import pytest

from clusterq import JobStatus, Queue, Worker

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


@contextmanager
def running(worker: Worker) -> Iterator[Worker]:
    errors: list[BaseException] = []

    def target() -> None:
        try:
            worker.work()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    try:
        yield worker
    finally:
        worker.request_stop()
        thread.join(DEADLINE_S)
    assert not thread.is_alive(), "the worker did not stop after request_stop()"
    assert not errors, f"the worker crashed: {errors[0]!r}"


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
