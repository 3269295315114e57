"""Priorities inside one queue, on every topology: jobs without a priority first, then levels 1..9 in
order, FIFO within a level, ``at_front`` at the head of its level; and every place that puts a job back
(release, lease expiry, retry, requeue, promotion) keeps its level. Counting, emptying, canceling and
deleting see the prioritized jobs too."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from clusterq import JobStatus, Queue, Retry, Worker
from clusterq.state import store as T

pytestmark = pytest.mark.compat


def _burst(q: Queue, **options: object) -> Worker:
    options.setdefault("pool", "solo")
    options.setdefault("max_batch", 1)
    worker = Worker([q], q.connection, install_signal_handlers=False, **options)  # type: ignore[arg-type]
    worker.work(burst=True)
    return worker


def _ran(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def test_jobs_run_by_priority_then_in_arrival_order(url: str, qname: str, tmp_path: Path) -> None:
    q = Queue(qname, url)
    out = tmp_path / "order"
    q.enqueue("jobs.record", str(out), "p5-a", priority=5)
    q.enqueue("jobs.record", str(out), "none-a")
    q.enqueue("jobs.record", str(out), "p1-a", priority=1)
    q.enqueue("jobs.record", str(out), "p5-b", priority=5)
    q.enqueue("jobs.record", str(out), "p9-a", priority=9)
    q.enqueue("jobs.record", str(out), "p1-b", priority=1)
    q.enqueue("jobs.record", str(out), "none-b", priority=0)
    q.enqueue("jobs.record", str(out), "p5-front", priority=5, at_front=True)
    q.enqueue("jobs.record", str(out), "none-front", at_front=True)
    assert q.count == 9
    _burst(q)
    assert _ran(out) == ["none-front", "none-a", "none-b", "p1-a", "p1-b", "p5-front", "p5-a", "p5-b", "p9-a"]
    assert q.count == 0


def test_enqueue_many_keeps_each_items_priority_and_batch_order_at_the_front(url: str, qname: str,
                                                                            tmp_path: Path) -> None:
    q = Queue(qname, url)
    out = tmp_path / "order"
    q.enqueue("jobs.record", str(out), "p3-old", priority=3)
    q.enqueue_many([q.prepare_data("jobs.record", (str(out), f"p3-{i}"), priority=3) for i in range(3)],
                   at_front=True)
    q.enqueue_many([q.prepare_data("jobs.record", (str(out), "p2"), priority=2),
                    q.prepare_data("jobs.record", (str(out), "none"))])
    _burst(q, max_batch=10)
    assert _ran(out) == ["none", "p2", "p3-0", "p3-1", "p3-2", "p3-old"]


def test_a_bad_priority_is_refused_at_enqueue(url: str, qname: str) -> None:
    q = Queue(qname, url)
    for bad in (10, -1, 1.5, True, "high"):
        with pytest.raises(ValueError, match="priority"):
            q.enqueue("jobs.noop", priority=bad)
    assert q.count == 0


def test_count_cancel_delete_and_empty_see_prioritized_jobs(url: str, qname: str) -> None:
    q = Queue(qname, url)
    jobs = [q.enqueue("jobs.noop", priority=1 + i % 3) for i in range(6)] + [q.enqueue("jobs.noop")]
    assert q.count == 7
    jobs[0].cancel()
    jobs[1].delete()
    assert q.count == 5
    assert jobs[0].get_status() == JobStatus.CANCELED
    assert q.empty() == 5
    assert q.count == 0
    assert not jobs[2].exists()


def test_a_released_or_expired_job_goes_back_to_the_head_of_its_level(url: str, qname: str) -> None:
    q = Queue(qname, url)
    first = q.enqueue("jobs.noop", priority=2)
    second = q.enqueue("jobs.noop", priority=2)
    other = q.enqueue("jobs.noop", priority=3)
    store = q.store
    leased = T.parse_lease_reply(q.name, store.run(T.lease_call(q.keys, 1, 60_000, "w", 60_000))).jobs
    assert [j.id for j in leased] == [first.id]
    assert store.run(T.release_call(q.keys, [(first.id, leased[0].token)])) == 1
    again = T.parse_lease_reply(q.name, store.run(T.lease_call(q.keys, 1, 1, "w", 60_000))).jobs
    assert [j.id for j in again] == [first.id]  # back at the head of level 2, before `second`
    time.sleep(0.05)  # the 1 ms lease runs out
    assert store.run(T.requeue_expired_call(q.keys, 100, 5, 60_000))[0] == 1
    order = T.parse_lease_reply(q.name, store.run(T.lease_call(q.keys, 3, 60_000, "w", 60_000))).jobs
    assert [j.id for j in order] == [first.id, second.id, other.id]
    assert q.count == 0


def test_retries_requeues_and_scheduled_jobs_keep_their_level(url: str, qname: str, tmp_path: Path) -> None:
    q = Queue(qname, url)
    out = tmp_path / "order"
    flaky = q.enqueue("jobs.fail_until", str(tmp_path / "runs"), 2, priority=4, retry=Retry(max=1))
    _burst(q)  # fails once, retried at once into level 4, then finishes
    assert flaky.get_status() == JobStatus.FINISHED
    failed = q.enqueue("jobs.fail", priority=1)
    _burst(q)
    assert failed.get_status() == JobStatus.FAILED
    q.enqueue("jobs.record", str(out), "none")
    q.enqueue("jobs.record", str(out), "p2", priority=2)
    failed.requeue()  # back into level 1: before p2, after the job without a priority
    q.enqueue_at(datetime.now(timezone.utc) - timedelta(seconds=1), "jobs.record", str(out), "p1-due",
                 priority=1, at_front=True)
    _burst(q)
    assert failed.get_status() == JobStatus.FAILED  # it ran (and failed) again
    assert _ran(out) == ["none", "p1-due", "p2"]


def test_a_dependent_job_with_a_priority_is_released_into_its_level(url: str, qname: str) -> None:
    q = Queue(qname, url)
    parent = q.enqueue("jobs.add", 1, 1)
    child = q.enqueue("jobs.add", 2, 2, priority=3, depends_on=parent)
    assert child.get_status() == JobStatus.DEFERRED
    assert q.connection.hget(q.keys.stats, "pseq") is None  # nothing has entered the prio set yet
    worker = Worker([q], url, pool="thread", concurrency=1, install_signal_handlers=False)
    thread = threading.Thread(target=worker.work, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while child.get_status() != JobStatus.FINISHED:
            assert time.monotonic() < deadline, child.get_status()
            time.sleep(0.02)
    finally:
        worker.request_stop()
        thread.join(30)
    assert child.return_value() == 4
    assert int(q.connection.hget(q.keys.stats, "pseq")) == 1  # released through its level of the prio set


def test_listing_shows_the_waiting_jobs_in_the_order_they_will_run(url: str, qname: str) -> None:
    q = Queue(qname, url)
    p2 = q.enqueue("jobs.noop", priority=2)
    p1 = q.enqueue("jobs.noop", priority=1)
    plain = [q.enqueue("jobs.noop") for _ in range(3)]
    order = [j.id for j in plain] + [p1.id, p2.id]
    assert q.get_job_ids() == order
    assert q.get_job_ids(2, 2) == order[2:4]
    assert q.get_job_ids(4, 10) == order[4:]
    assert list(q.iter_job_ids(page=2)) == order
