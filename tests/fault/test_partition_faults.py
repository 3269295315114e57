"""Fault injection on a partitioned queue (issue 12, "Proof"): a 12-partition queue on the 3-primary cluster
(one replica each) under load, while (a) the primary holding some of its partitions is killed and its
replica takes over, (b) one partition's slot is resharded to another primary and back. Producers and
workers run as processes of their own, use the logical name only and follow the new topology by
themselves. The invariant checker (:mod:`fault_support`) is the one of every other scenario: every
acknowledged enqueue executed or failed with a reason, every duplicate explained by the lease rules (or,
for a kill, by writes Redis dropped inside the failover window); the rows go to the same report.

Opt-in: ``pytest -m fault tests/fault -k partitioned``. The topology is this module's own.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from fault_support import RUNS, Producer, check, read_records, report, wait_for
from test_faults import failover_verdict, keep_server_logs, longest_gap, replica_of, run_under_load, worker_logs

from clusterq import Queue
from clusterq.api.partitions import partition_of
from clusterq.testing import Cluster

pytestmark = [pytest.mark.fault, pytest.mark.timeout(480)]

REPEAT = pytest.mark.parametrize("run", range(RUNS))
PARTITIONS = 12
BACKLOG = 600


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with Cluster() as topology:
        yield topology


def partitioned_queue(url: str, kind: str) -> Queue:
    """A fresh 12-partition queue, declared before any worker starts (a worker resolves the logical name
    to its partitions from the stored count)."""
    queue = Queue(f"fault-{kind}-{uuid.uuid4().hex[:8]}", url, partitions=PARTITIONS)
    queue.declare()
    return queue


def partition_of_job(job_id: str) -> int:
    """The partition the producers' jobs go to: an explicit job id routes by its CRC32 (``i:<id>``)."""
    return partition_of(f"i:{job_id}", PARTITIONS)


def executed_per_partition(records: Path) -> dict[int, int]:
    return dict(sorted(Counter(partition_of_job(r.job_id) for r in read_records(records)).items()))


def on_node(queue: Queue, port: int) -> list[int]:
    """Indexes of the partitions whose slot ``port`` serves."""
    return [i for i, (_, _, node) in enumerate(queue.layout()) if node.endswith(f":{port}")]


# --- (a) a primary killed under load: its replica takes over its partitions -----------------------------


@REPEAT
@pytest.mark.parametrize("how", ["kill-primary", "cluster-failover"])
def test_partitioned_queue_survives_a_primary_failover_under_load(
    cluster: Cluster, tmp_path: Path, run: int, how: str
) -> None:
    cluster.wait_converged()
    queue = partitioned_queue(cluster.url, "partitioned-failover")
    primaries = cluster.primaries()
    assert {len(on_node(queue, p.port)) for p in primaries} == {PARTITIONS // 3}  # 4 partitions a primary
    affected: list[int] = []

    def fault() -> None:
        victim = cluster.node_for_slot(queue.parts[5].slot)  # the primary of partition 5 (and 3 others)
        affected.extend(on_node(queue, victim.port))
        replica = replica_of(cluster, victim)
        if how == "cluster-failover":
            cluster.failover(replica)
            return
        victim.kill()
        wait_for(lambda: replica.admin.execute_command("ROLE")[0] == "master", "the replica to take over")
        victim.restart()
        cluster.wait_converged(60)

    # A backlog of slower jobs in every partition, so the workers have work on the healthy primaries while
    # the producers (which retry an enqueue into a failed-over partition with the same id) are held up.
    backlog = Producer(queue, tmp_path / "records", "b-", sleep_s=0.05)
    for i in range(BACKLOG):
        assert backlog.enqueue(i)
    try:
        producer, records, window = run_under_load(
            queue, cluster.url, tmp_path, fault, total=900, producers=3, pause_s=0.005, workers=2,
            separate_producers=True, queue_options={"partitions": PARTITIONS})
    finally:
        keep_server_logs(cluster.processes, tmp_path)
    producer.acked += backlog.acked
    producer.ack_times.update(backlog.ack_times)
    per_partition = executed_per_partition(records)
    healthy = [r.at for r in read_records(records) if partition_of_job(r.job_id) not in affected]
    verdict = failover_verdict(
        f"Partitioned queue (12 partitions): cluster {how}", queue, producer, records, window,
        notes={"partitions_on_failed_over_primary": affected, "executed_per_partition": per_partition,
               "backlog_jobs": BACKLOG,
               "other_partitions_executed_during_fault": sum(window[0] <= t <= window[1] for t in healthy),
               "other_partitions_stall_s": longest_gap(healthy, window[0])})
    assert len(affected) == PARTITIONS // 3
    assert set(per_partition) == set(range(PARTITIONS)), per_partition  # every partition was served
    assert not producer.abandoned, verdict.summary()
    assert not verdict.not_terminal, verdict.summary()
    assert verdict.lost == verdict.lost_in_failover_window, verdict.summary()  # Redis's async window only
    assert not verdict.unexplained_duplicates, verdict.summary()
    assert "CROSSSLOT" not in worker_logs(tmp_path)
    if how == "cluster-failover":  # a coordinated failover loses no acknowledged write
        assert verdict.lost == 0, verdict.summary()
    assert queue.count == 0


# --- (b) one partition's slot resharded to another primary and back, under load --------------------------


@REPEAT
@pytest.mark.parametrize("partition", [0, 7])
def test_partitioned_queue_one_partitions_slot_migrates_under_load(
    cluster: Cluster, tmp_path: Path, run: int, partition: int
) -> None:
    """Partition 0 also holds the stored partition count (read by producers every 5 s and by workers)."""
    cluster.wait_converged()
    queue = partitioned_queue(cluster.url, "partitioned-migrate")
    slot = queue.parts[partition].slot
    moves: list[str] = []

    def fault() -> None:
        home = cluster.node_for_slot(slot)
        away = next(node for node in cluster.primaries() if node.port != home.port)
        # Small batches with a pause stretch the migration the way a slot holding many keys would, so
        # producers and workers meet ASK, TRYAGAIN and then MOVED on that partition only.
        for target in (away, home):
            cluster.migrate_slot(slot, target, batch=10, between_batches=lambda: time.sleep(0.01))
            moves.append(f"partition {partition} (slot {slot}) -> {target.name}")
            time.sleep(0.5)

    late_index = next(i for i in range(10_000) if partition_of_job(f"late-{i}") == partition)

    def a_late_job_wakes_an_idle_worker(queue: Queue, records: Path) -> None:
        # The workers poll only every 10 minutes: this job, routed to the migrated partition, starts only if
        # the wake-up subscription of that partition followed its slot.
        late = Producer(queue, records, "late-")
        assert late.enqueue(late_index)
        wait_for(lambda: f"late-{late_index}" in {r.job_id for r in read_records(records)},
                 "the late job to be woken up")

    try:
        producer, records, window = run_under_load(
            queue, cluster.url, tmp_path, fault, total=600, producers=2, pause_s=0.005, workers=2,
            worker_options={"idle_poll_s": 600.0}, finally_=a_late_job_wakes_an_idle_worker,
            separate_producers=True, queue_options={"partitions": PARTITIONS})
    finally:
        keep_server_logs(cluster.processes, tmp_path)
    verdict = check(f"Partitioned queue (12 partitions): partition {partition}'s slot migrated under load "
                    "(there and back)", queue, producer.acked, records)
    stall = longest_gap([r.at for r in read_records(records)], window[0])
    enqueue_stall = longest_gap(list(producer.ack_times.values()), window[0])
    verdict.recovery_s = max(x for x in (stall, enqueue_stall, 0.0) if x is not None)
    logs = worker_logs(tmp_path)
    per_partition = executed_per_partition(records)
    others = [r.at for r in read_records(records) if partition_of_job(r.job_id) != partition]
    verdict.notes = {"other_partitions_stall_s": longest_gap(others, window[0]),
                     "other_partitions_executed_during_fault": sum(window[0] <= t <= window[1] for t in others),
                     "moves": moves, "migration_s": round(window[1] - window[0], 2), "processing_stall_s": stall,
                     "enqueue_stall_s": enqueue_stall, "enqueue_errors_retried": producer.errors,
                     "enqueue_error_kinds": dict(producer.error_kinds),
                     "worker_redis_errors": logs.count("Redis call failed"),
                     "executed_per_partition": per_partition}
    report(verdict)
    assert len(moves) == 2
    assert "CROSSSLOT" not in logs
    assert set(per_partition) == set(range(PARTITIONS)), per_partition
    assert not producer.error_kinds, verdict.summary()  # enqueue waited out TRYAGAIN instead of failing
    assert not producer.abandoned, verdict.summary()
    assert verdict.lost == 0 and verdict.failed == 0, verdict.summary()
    assert not verdict.unexplained_duplicates and not verdict.not_terminal, verdict.summary()
    assert queue.count == 0
