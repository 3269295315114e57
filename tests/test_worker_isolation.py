"""A failure in one place does not stop everything else (issue 16, items 1-3, worker side).

A queue whose calls fail while the worker's other calls go through (its Cluster primary is down, one of
its keys holds the wrong type) is set aside with a loud error and its own back-off while the other queues
run; the replies that did come back in the same round trip (outcomes recorded, jobs leased) are kept.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid

import pytest

from clusterq import JobStatus, Queue, Worker
from clusterq.state import keys as K
from clusterq.testing import Cluster
from worker_thread import running


def _wait_for(predicate, deadline_s: float = 45.0) -> bool:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        try:
            if predicate():
                return True
        except Exception:
            pass
        time.sleep(0.05)
    return False


def _all_finished(jobs) -> bool:
    return all(job.get_status() == JobStatus.FINISHED for job in jobs)


@pytest.mark.parametrize("broken_key", ["pending", "control"])
def test_a_queue_with_a_wrong_type_key_is_set_aside_while_the_others_run(
        url: str, qname: str, broken_key: str, caplog: pytest.LogCaptureFixture) -> None:
    broken, healthy = Queue(f"{qname}-broken", url), Queue(f"{qname}-ok", url)
    broken.connection.set(getattr(K.QueueKeys(broken.name), broken_key), "not a list or hash")
    jobs = [healthy.enqueue("jobs.add", i, i) for i in range(6)]
    # The broken queue comes first: before the fix its failing lease call stopped every lease.
    worker = Worker([broken, healthy], url, pool="solo", install_signal_handlers=False, idle_poll_s=0.5)
    with caplog.at_level(logging.ERROR, logger="clusterq"), running(worker):
        assert _wait_for(lambda: _all_finished(jobs)), "the healthy queue must run while the broken one is set aside"
    assert [job.return_value() for job in jobs] == [2 * i for i in range(6)]
    assert any(f"queue {broken.name!r} set aside" in r.getMessage() and "WRONGTYPE" in r.getMessage()
               for r in caplog.records), "setting a queue aside is a loud error naming the queue and the cause"


def test_jobs_leased_in_the_round_trip_whose_outcomes_fail_are_kept_and_a_burst_worker_exits(
        url: str, qname: str, tmp_path) -> None:
    q = Queue(qname, url)
    path = str(tmp_path / "runs")
    jobs = [q.enqueue("jobs.record", path, i) for i in range(4)]
    # Outcomes cannot be recorded (complete fails at its finished registry), while leasing still works:
    # the second job is leased in the same round trip as the first job's failing completion.
    q.connection.set(K.QueueKeys(q.name).finished, "not a sorted set")
    worker = Worker([q], url, pool="solo", install_signal_handlers=False)
    thread = threading.Thread(target=worker.work, kwargs={"burst": True}, daemon=True)
    thread.start()
    thread.join(45)
    try:
        assert not thread.is_alive(), "a burst worker must not retry a failing completion forever"
        with open(path) as fh:
            ran = fh.read().split()
        assert ran[:2] == ["0", "1"], "the job leased with the failing completion must run, not be forgotten"
        # Every job is waiting in its queue or held by a lease that expires (then it is requeued); none is
        # left started outside the active set, where nothing would recover it. (complete.lua may have
        # written "finished" before failing: keeping scripts from half-writing is the scripts' side.)
        active = K.QueueKeys(q.name).active
        for job in jobs:
            status = job.get_status()
            assert status != JobStatus.STARTED or q.connection.zscore(active, job.id) is not None, job.id
    finally:
        worker.request_stop()
        q.connection.delete(K.QueueKeys(q.name).finished)


@pytest.fixture
def degradable_cluster():
    """A cluster of the test's own (the test kills a primary), serving what it still can when a primary is
    gone (``cluster-require-full-coverage no``), without replicas: the dead primary's slots stay down."""
    cluster = Cluster(primaries=3, replicas_per_primary=0)
    cluster.start()
    for node in cluster.nodes:
        node.admin.config_set("cluster-require-full-coverage", "no")
    yield cluster
    cluster.stop()


def test_a_dead_cluster_primary_does_not_stop_the_queues_on_the_healthy_primaries(degradable_cluster) -> None:
    cluster = degradable_cluster
    by_port: dict[int, Queue] = {}
    while len(by_port) < 3:  # one queue on each primary
        q = Queue(f"iso-{uuid.uuid4().hex[:8]}", cluster.url)
        by_port.setdefault(cluster.node_for_slot(q.slot).port, q)
    doomed_port, *_ = by_port
    doomed, *healthy = by_port.values()
    # The doomed queue comes first: before the fix its failing lease call stopped every lease.
    worker = Worker([doomed, *healthy], cluster.url, pool="solo", install_signal_handlers=False,
                    idle_poll_s=0.5, maintenance_interval_s=0.5)
    with running(worker, join_s=60):
        warm = [q.enqueue("jobs.add", 0, 0) for q in by_port.values()]
        assert _wait_for(lambda: _all_finished(warm))
        cluster.node_on_port(doomed_port).kill()
        jobs = [q.enqueue("jobs.add", i, 1) for i in range(20) for q in healthy]
        ran = lambda: sum(job.get_status() == JobStatus.FINISHED for job in jobs)  # noqa: E731
        assert _wait_for(lambda: ran() == len(jobs), 60), f"{ran()} of {len(jobs)} jobs ran on the healthy primaries"


def test_a_worker_follows_its_queue_to_the_replica_that_took_over_from_a_dead_primary(tmp_path) -> None:
    # The worker does not wait out redis-py's retries on a dead node (it sets the queue aside instead): it
    # must still find the queue again once a replica has taken the slot over.
    with Cluster(primaries=3, replicas_per_primary=1) as cluster:
        q = Queue(f"iso-{uuid.uuid4().hex[:8]}", cluster.url)
        primary = cluster.node_for_slot(q.slot)
        worker = Worker([q], cluster.url, pool="solo", install_signal_handlers=False, idle_poll_s=0.5,
                        maintenance_interval_s=0.5)
        with running(worker, join_s=60):
            assert _wait_for(lambda: q.enqueue("jobs.add", 1, 1).get_status() == JobStatus.FINISHED)
            primary.kill()
            assert _wait_for(lambda: cluster.node_for_slot(q.slot).port != primary.port, 60)
            jobs = []

            def enqueued() -> bool:
                jobs.append(Queue(q.name, cluster.url).enqueue("jobs.add", len(jobs), 1))
                return True

            assert _wait_for(enqueued, 60)
            assert _wait_for(lambda: _all_finished(jobs), 60), "the worker must follow the failover"
