"""Fault injection: a failure in one place does not stop everything else (issue 16, items 1-3).

One worker serves a broken queue (listed first, so it is tried first) and a healthy one under load:
- its Cluster primary is killed (``cluster-require-full-coverage no``, no replica: its slots stay down);
- one of its keys holds the wrong type (``SET`` over its pending list);
- its completions fail (``SET`` over its finished registry) while its leases go through.
The healthy queue's jobs must all run, checked by the invariant checker; the broken queue is set aside
with a loud error. Opt-in: ``pytest -m fault tests/fault``. Topologies here are the scenarios' own.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fault_support import RUNS, Producer, check, read_records, report, settled, wait_for, worker_process
from test_faults import FAST_LEASES, longest_gap

from clusterq import JobStatus, Queue
from clusterq.state import keys as K
from clusterq.testing import Cluster, Standalone

pytestmark = [pytest.mark.fault, pytest.mark.timeout(480)]

REPEAT = pytest.mark.parametrize("run", range(RUNS))
TOTAL = 200
SET_ASIDE_LINE = "set aside:"


@pytest.fixture(scope="module")
def standalone() -> Iterator[Standalone]:
    with Standalone() as topology:
        yield topology


@pytest.fixture
def degradable_cluster() -> Iterator[Cluster]:
    """Three primaries without replicas that serve what they still can when one is gone; killed per run."""
    with Cluster(primaries=3, replicas_per_primary=0) as topology:
        for node in topology.nodes:
            node.admin.config_set("cluster-require-full-coverage", "no")
        yield topology


def _queue(url: str, kind: str) -> Queue:
    return Queue(f"fault-{kind}-{uuid.uuid4().hex[:8]}", url)


def _run_beside_a_broken_queue(scenario: str, url: str, broken: Queue, healthy: Queue, tmp_path: Path, fault,
                               broken_jobs: int = 0) -> None:
    """Load the healthy queue (and ``broken_jobs`` into the broken one), break the broken one once the worker
    runs, and check that every acknowledged job of the healthy queue settles."""
    records, log = tmp_path / "records", tmp_path / "worker.log"
    producer = Producer(healthy, records, "h", sleep_s=0.005)
    side = Producer(broken, tmp_path / "broken-records", "b", sleep_s=0.005)
    for i in range(broken_jobs):
        assert side.enqueue(i)
    for i in range(TOTAL // 4):
        assert producer.enqueue(i)
    with worker_process(url, f"{broken.name},{healthy.name}", log, pool="process", concurrency=2, **FAST_LEASES):
        wait_for(lambda: len(read_records(records)) >= TOTAL // 8, "the worker to get going")
        broke_at = time.time()
        fault()
        for i in range(TOTAL // 4, TOTAL):
            assert producer.enqueue(i)
        wait_for(lambda: settled(healthy, producer.acked, records), "every job of the healthy queue to settle",
                 timeout_s=180)
        wait_for(lambda: SET_ASIDE_LINE in log.read_text(), "the broken queue to be set aside, loudly")
    verdict = check(scenario, healthy, producer.acked, records)
    verdict.recovery_s = longest_gap([r.at for r in read_records(records)], broke_at)
    verdict.notes = {"set_aside_errors": log.read_text().count(SET_ASIDE_LINE)}
    report(verdict)
    assert verdict.lost == 0 and verdict.failed == 0, verdict.summary()
    assert not verdict.unexplained_duplicates and not verdict.not_terminal, verdict.summary()
    active = K.QueueKeys(broken.name).active
    for job_id in side.acked:  # nothing of the broken queue is started outside its active set
        job = broken.fetch_job(job_id)
        assert job is None or job.get_status() != JobStatus.STARTED or \
            broken.connection.zscore(active, job_id) is not None, job_id


@REPEAT
def test_a_dead_cluster_primary_leaves_the_queues_on_healthy_primaries_running(
        degradable_cluster: Cluster, tmp_path: Path, run: int) -> None:
    cluster = degradable_cluster
    healthy = _queue(cluster.url, "alive")
    home = cluster.node_for_slot(healthy.slot).port
    broken = _queue(cluster.url, "doomed")
    while cluster.node_for_slot(broken.slot).port == home:
        broken = _queue(cluster.url, "doomed")
    victim = cluster.node_for_slot(broken.slot)
    _run_beside_a_broken_queue("Cluster primary dead, its queue set aside (other queues run)", cluster.url,
                               broken, healthy, tmp_path, victim.kill)


@REPEAT
def test_a_wrong_type_key_in_one_queue_leaves_the_other_queues_running(
        standalone: Standalone, tmp_path: Path, run: int) -> None:
    broken, healthy = _queue(standalone.url, "wrongtype"), _queue(standalone.url, "ok")

    def fault() -> None:
        broken.connection.set(K.QueueKeys(broken.name).pending, "not a list")

    _run_beside_a_broken_queue("wrong-type key in one queue (SET over its pending list)", standalone.url,
                               broken, healthy, tmp_path, fault)


@REPEAT
def test_completions_failing_in_one_queue_lose_nothing_fetched_with_them(
        standalone: Standalone, tmp_path: Path, run: int) -> None:
    broken, healthy = _queue(standalone.url, "nocomplete"), _queue(standalone.url, "ok")

    def fault() -> None:
        broken.connection.set(K.QueueKeys(broken.name).finished, "not a sorted set")
        for i in range(20):  # jobs whose completions fail, leased in the round trips of the healthy queue
            broken.enqueue("fault_jobs.mark", str(tmp_path / "broken-records"), f"late{i}", 0.005, job_id=f"late{i}")

    _run_beside_a_broken_queue("completions fail in one queue (SET over its finished registry)", standalone.url,
                               broken, healthy, tmp_path, fault, broken_jobs=10)
