"""A worker survives its server going away: it backs off, reconnects by itself, and loses nothing."""

from __future__ import annotations

import threading
import time

import pytest

from clusterq import JobStatus, Queue, Worker
from clusterq.testing import Standalone


def _wait_for(predicate, deadline_s: float = 30.0) -> bool:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        try:
            if predicate():
                return True
        except Exception:
            pass
        time.sleep(0.05)
    return False


@pytest.fixture
def private_server():
    """A server of the test's own, since the test kills it (the session topologies stay untouched)."""
    server = Standalone()
    server.start()
    yield server
    server.stop()


def test_a_worker_keeps_running_while_its_server_is_down_and_resumes_after(private_server) -> None:
    url = private_server.url
    q = Queue("resilient", url)
    first = q.enqueue("jobs.add", 1, 1)
    worker = Worker([q], url, install_signal_handlers=False, idle_poll_s=0.5, maintenance_interval_s=0.5)
    thread = threading.Thread(target=worker.work, daemon=True)
    thread.start()
    try:
        assert _wait_for(lambda: first.get_status() == JobStatus.FINISHED)
        private_server.server.kill()  # kill -9: no persistence here, the data is gone with it
        time.sleep(1.5)  # the worker now fails to reach Redis and backs off
        assert thread.is_alive(), "the worker must survive an unreachable server"
        private_server.server.restart()
        second = Queue("resilient", url).enqueue("jobs.add", 2, 2)
        assert _wait_for(lambda: second.get_status() == JobStatus.FINISHED), "the worker must reconnect by itself"
        assert second.return_value() == 4
    finally:
        worker.request_stop()
        thread.join(timeout=15)
    assert not thread.is_alive()


def test_a_queue_keeps_working_while_its_cluster_slot_migrates(clusterq_cluster, qname: str) -> None:
    """Enqueues during a slot migration wait out TRYAGAIN instead of failing; the idle worker's wake-up
    subscription follows the slot to its new owner (it polls only every 10 minutes here)."""
    cluster = clusterq_cluster
    q = Queue(qname, cluster.url)
    home = cluster.node_for_slot(q.slot)
    away = next(node for node in cluster.primaries() if node.port != home.port)
    worker = Worker([q], cluster.url, pool="solo", install_signal_handlers=False, idle_poll_s=600.0)
    thread = threading.Thread(target=worker.work, daemon=True)
    thread.start()
    enqueued: list[str] = []
    errors: list[BaseException] = []

    def produce() -> None:
        for i in range(200):
            try:
                enqueued.append(q.enqueue("jobs.add", i, 1).id)
            except Exception as exc:  # the point of the test: there must be none
                errors.append(exc)

    try:
        q.enqueue_many([q.prepare_data("jobs.add", (0, 0)) for _ in range(300)])  # keys to migrate
        producer = threading.Thread(target=produce)
        producer.start()
        try:
            for target in (away, home):
                cluster.migrate_slot(q.slot, target, batch=10, between_batches=lambda: time.sleep(0.005))
        finally:
            producer.join(60)
        assert not errors, errors[:3]
        assert _wait_for(lambda: q.count == 0 and worker.stats.processed >= 500)
        late = q.enqueue("jobs.add", 20, 22)
        assert _wait_for(lambda: late.get_status() == JobStatus.FINISHED), "the wake-up did not follow the slot"
        assert late.return_value() == 42
    finally:
        worker.request_stop()
        thread.join(timeout=15)
    assert not thread.is_alive()


def test_asyncio_enqueues_wait_out_a_slot_migration_too(clusterq_cluster, qname: str) -> None:
    import asyncio

    from clusterq import AsyncQueue

    cluster = clusterq_cluster
    q = Queue(qname, cluster.url)
    q.enqueue_many([q.prepare_data("jobs.add", (0, 0)) for _ in range(300)])  # keys to migrate
    home = cluster.node_for_slot(q.slot)
    away = next(node for node in cluster.primaries() if node.port != home.port)
    migrated = threading.Event()
    errors: list[BaseException] = []

    async def produce() -> int:
        aq = AsyncQueue(qname, cluster.url)
        done = 0
        try:
            while not migrated.is_set():
                try:
                    await aq.enqueue("jobs.add", 1, 1)
                    done += 1
                except Exception as exc:  # the point of the test: there must be none
                    errors.append(exc)
        finally:
            await aq.aclose()
        return done

    result: list[int] = []
    producer = threading.Thread(target=lambda: result.append(asyncio.run(produce())))
    producer.start()
    try:
        for target in (away, home):
            cluster.migrate_slot(q.slot, target, batch=10, between_batches=lambda: time.sleep(0.005))
    finally:
        migrated.set()
        producer.join(60)
    assert not errors, errors[:3]
    assert result and q.count == 300 + result[0]
