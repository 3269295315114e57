"""Fault injection on real topologies: workers killed or paused, pool children killed, enqueues
retried, Sentinel and Cluster failovers under load. Each scenario ends with the invariant checker
(:mod:`fault_support`): every acknowledged enqueue executed or failed with a reason, every duplicate
explained. Opt-in: ``pytest -m fault tests/fault`` (``CLUSTERQ_FAULT_RUNS=3`` repeats each scenario).

Topologies that get killed or failed over are started here, per module, never the shared session ones.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import shutil
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from fault_support import (
    RUNS,
    Producer,
    check,
    children_of,
    producer_processes,
    read_records,
    report,
    settled,
    signal_group,
    wait_for,
    worker_process,
)

from clusterq import JobStatus, Queue, Worker
from clusterq.testing import Cluster, SentinelGroup, Standalone
from clusterq.testing.common import HOST

pytestmark = [pytest.mark.fault, pytest.mark.timeout(480)]  # generous: a loaded 2-core machine

REPEAT = pytest.mark.parametrize("run", range(RUNS))
FAST_LEASES = {"lease_s": 2.0, "maintenance_interval_s": 0.5, "idle_poll_s": 1.0}


def fresh_queue(url: str, kind: str) -> Queue:
    return Queue(f"fault-{kind}-{uuid.uuid4().hex[:8]}", url)


@pytest.fixture(scope="module")
def standalone() -> Iterator[Standalone]:
    with Standalone() as topology:
        yield topology


@pytest.fixture(scope="module")
def sentinel() -> Iterator[SentinelGroup]:
    # The harness's default (1 s) suits quick tests on an idle machine. Under this suite's load a primary
    # that just took over can miss pings for a second while it serves a resync, and the sentinels then
    # failed over a second time (one run: 115 duplicates from it). 5 s is still well under the
    # producers' retry window.
    with SentinelGroup(down_after_ms=5000) as topology:
        yield topology


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with Cluster() as topology:
        yield topology


def running_on(queue: Queue, ids: list[str], pid: int) -> list[str]:
    """Ids of jobs currently leased by the worker process ``pid`` (worker names are host.pid.random)."""
    found = []
    for job_id in ids:
        job = queue.fetch_job(job_id)
        if job is not None and job.get_status() == JobStatus.STARTED and f".{pid}." in (job.worker_name or ""):
            found.append(job_id)
    return found


def last_run_after(records_path: Path, job_ids: list[str], since: float) -> float | None:
    """Seconds from ``since`` to the last execution of any of ``job_ids`` (None if none)."""
    times = [r.at for r in read_records(records_path) if r.job_id in set(job_ids) and r.at >= since]
    return round(max(times) - since, 2) if times else None


def longest_gap(times: list[float], since: float) -> float | None:
    """The longest pause between consecutive events from ``since`` on (processing or enqueue stall)."""
    points = sorted([since, *(t for t in times if t >= since)])
    if len(points) < 2:
        return None
    return round(max(b - a for a, b in itertools.pairwise(points)), 2)


# --- 1. kill -9 of a worker ---------------------------------------------------------------------------


@REPEAT
@pytest.mark.parametrize("timings", ["fast", "defaults"])
def test_kill9_of_a_worker_another_worker_finishes_everything(
    standalone: Standalone, tmp_path: Path, run: int, timings: str
) -> None:
    """``fast``: 2 s leases, as the other scenarios; ``defaults``: the worker's default lease and
    maintenance timings, whose recovery the user guide promises (within 10 s of the kill)."""
    url = standalone.url
    queue = fresh_queue(url, "kill-worker")
    records = tmp_path / "records"
    producer = Producer(queue, records, "k", sleep_s=0.01)
    for i in range(300):
        assert producer.enqueue(i)
    options = {"pool": "process", "concurrency": 2, **(FAST_LEASES if timings == "fast" else {})}
    with worker_process(url, queue.name, tmp_path / "a.log", **options) as victim, \
            worker_process(url, queue.name, tmp_path / "b.log", **options):
        wait_for(lambda: len(read_records(records)) >= 60, "the workers to get going")
        killed_at = time.time()
        signal_group(victim, signal.SIGKILL)  # the supervisor and its children: a machine that vanishes
        victim.wait(10)
        affected = running_on(queue, producer.acked, victim.pid)
        wait_for(lambda: settled(queue, producer.acked, records), "every job to settle")

    verdict = check("kill -9 worker" if timings == "fast" else "kill -9 worker (default lease and maintenance)",
                    queue, producer.acked, records)
    verdict.recovery_s = last_run_after(records, affected, killed_at)
    verdict.notes = {"leased_by_the_killed_worker": len(affected)}
    report(verdict)
    assert verdict.lost == 0 and verdict.failed == 0, verdict.summary()
    assert not verdict.unexplained_duplicates and not verdict.not_terminal, verdict.summary()
    for job_id in affected:
        job = queue.fetch_job(job_id)
        assert job is not None and job.get_status() == JobStatus.FINISHED and job.attempts >= 2, job_id


# --- 2. kill -9 of a pool child -----------------------------------------------------------------------

CRASH_LINE = re.compile(r": job (\S+) \(fault_jobs\.mark\): the worker's child process died")


@REPEAT
def test_kill9_of_a_pool_child_the_job_goes_back_by_the_lease_rules(
    standalone: Standalone, tmp_path: Path, run: int
) -> None:
    url = standalone.url
    queue = fresh_queue(url, "kill-child")
    records, log = tmp_path / "records", tmp_path / "worker.log"
    producer = Producer(queue, records, "c", sleep_s=0.05)
    poison = []
    for i in range(200):
        assert producer.enqueue(i)
        if i % 70 == 0:  # a poison job (os._exit in the child) every so often: failed after its attempts
            poison.append(queue.enqueue("jobs.crash", job_id=f"poison{i}").id)
    with worker_process(url, queue.name, log, pool="process", concurrency=2, **FAST_LEASES) as proc:
        wait_for(lambda: len(read_records(records)) >= 20, "the worker to get going")
        crashed: list[str] = []
        killed_at = 0.0
        for _ in range(5):  # a child may be between jobs when killed: try again until one dies mid-job
            children = children_of(proc.pid)
            assert children, "the process pool has no children"
            killed_at = time.time()
            os.kill(children[0], signal.SIGKILL)
            try:
                crashed = wait_for(lambda: CRASH_LINE.findall(log.read_text()), "the supervisor to notice",
                                   timeout_s=3.0)
                break
            except AssertionError:
                continue
        assert crashed, log.read_text()[-3000:]
        wait_for(lambda: settled(queue, producer.acked, records), "every job to settle")
        assert proc.poll() is None  # the supervisor survived and replaced its child

    verdict = check("kill -9 pool child (+ poison jobs)", queue, [*producer.acked, *poison], records)
    verdict.recovery_s = last_run_after(records, crashed, killed_at)
    verdict.notes = {"crashed_jobs": crashed, "poison_jobs": len(poison)}
    report(verdict)
    assert verdict.lost == 0 and verdict.failed == len(poison), verdict.summary()
    assert all(reason.startswith("abandoned") for reason in verdict.failed_reasons), verdict.summary()
    assert not verdict.unexplained_duplicates and not verdict.not_terminal, verdict.summary()
    for job_id in crashed:
        job = queue.fetch_job(job_id)
        assert job is not None and job.get_status() == JobStatus.FINISHED and job.attempts == 2, job_id


# --- 3. SIGSTOP past the lease, then SIGCONT: fencing -------------------------------------------------


@REPEAT
@pytest.mark.parametrize("pool", ["solo", "process"])
def test_a_worker_paused_past_its_lease_cannot_overwrite_the_new_attempt(
    standalone: Standalone, tmp_path: Path, run: int, pool: str
) -> None:
    url = standalone.url
    queue = fresh_queue(url, "sigstop")
    records = tmp_path / "records"
    slow = queue.enqueue("fault_jobs.mark_start_then_sleep", str(records), "slow", 3.0, job_id="slow")
    options = {"pool": pool, "concurrency": 1, "lease_s": 1.0, "maintenance_interval_s": 0.2, "idle_poll_s": 0.5}
    stale_log, rescuer_log = tmp_path / "stale.log", tmp_path / "rescuer.log"
    with worker_process(url, queue.name, stale_log, **options) as stale:
        starts = Path(str(records) + ".start")
        wait_for(lambda: read_records(starts), "the slow job to start")
        stopped_at = time.time()
        signal_group(stale, signal.SIGSTOP)  # hung: no heartbeat, its lease runs out
        producer = Producer(queue, records, "s", sleep_s=0.01)
        for i in range(100):
            assert producer.enqueue(i)
        with worker_process(url, queue.name, rescuer_log, **options) as rescuer:
            wait_for(lambda: slow.get_status() == JobStatus.FINISHED, "the rescuer to run the slow job again")
            rescuer_pids = {rescuer.pid, *children_of(rescuer.pid)}
            restarts = [r.at for r in read_records(starts) if r.job_id == "slow" and r.pid in rescuer_pids]
            recovery = round(min(restarts) - stopped_at, 2)  # paused until the rescuer started it again
            signal_group(stale, signal.SIGCONT)
            # The stale worker finishes its (long expired) attempt and presents the old token.
            stale_pids = {stale.pid, *children_of(stale.pid)}
            wait_for(lambda: [r for r in read_records(records) if r.job_id == "slow" and r.pid in stale_pids],
                     "the stale worker to finish its attempt")
            wait_for(lambda: "outcome dropped" in stale_log.read_text(), "the stale outcome to be refused")
            wait_for(lambda: settled(queue, [*producer.acked, "slow"], records), "every job to settle")

            slow.refresh()
            assert slow.get_status() == JobStatus.FINISHED
            assert slow.attempts == 2
            assert slow.return_value() in rescuer_pids, "the stale worker overwrote the new attempt's result"
            assert f".{rescuer.pid}." in (slow.worker_name or "")

    verdict = check(f"SIGSTOP past lease, {pool} pool (fencing)", queue, [*producer.acked, "slow"], records)
    verdict.recovery_s = recovery
    verdict.notes = {"stale_outcome_refused": True}
    report(verdict)
    assert verdict.lost == 0 and verdict.failed == 0, verdict.summary()
    assert not verdict.unexplained_duplicates and not verdict.not_terminal, verdict.summary()
    assert verdict.duplicates >= 1  # the slow job ran twice, its duplicate explained by the expired lease


# --- 4. idempotent enqueue ----------------------------------------------------------------------------


def test_an_enqueue_retried_with_the_same_job_id_creates_one_job(clusterq_url: str, tmp_path: Path) -> None:
    queue = fresh_queue(clusterq_url, "idempotent")
    records = tmp_path / "records"
    producer = Producer(queue, records, "i")
    for i in range(100):
        assert producer.enqueue(i)
        assert producer.enqueue(i)  # the client timed out and retried: same id, same job
    assert queue.count == 100
    ids = sorted(set(producer.acked))

    worker = Worker(queue, pool="solo", install_signal_handlers=False)
    assert worker.work(burst=True) == 100
    for job_id in ids:  # a retry that arrives after the job finished does not run it again
        queue.enqueue("fault_jobs.mark", str(records), job_id, job_id=job_id)
    assert queue.count == 0
    assert Worker(queue, pool="solo", install_signal_handlers=False).work(burst=True) == 0

    verdict = check(f"idempotent enqueue ({clusterq_url.split(':')[0]})", queue, ids, records)
    verdict.notes = {"enqueue_calls": 300}
    report(verdict)
    assert verdict.executed == 100 and verdict.duplicates == 0 and verdict.lost == 0, verdict.summary()


# --- 4b. enqueues redis-py resends after a server stall (generated ids) ---------------------------------

STALLS = 10


@REPEAT
def test_enqueues_redis_py_resends_during_a_server_stall_push_each_generated_id_once(
        standalone: Standalone, tmp_path: Path, run: int) -> None:
    # redis-py retries a command whose reply timed out (10 times by default). Each enqueue here meets a
    # 1.5 s DEBUG SLEEP with a 0.5 s socket timeout, so it is sent about three times and every copy runs
    # once the server wakes up; the script must create the job once and push its id once.
    queue = Queue(f"fault-stall-{uuid.uuid4().hex[:8]}", standalone.url + "?socket_timeout=0.5")
    records = tmp_path / "records"
    acked: list[str] = []
    errors = 0
    for _ in range(STALLS):
        stall = threading.Thread(target=lambda: standalone.client().execute_command("DEBUG", "SLEEP", "1.5"))
        stall.start()
        time.sleep(0.2)  # the stall has begun: the enqueue below times out and is resent
        try:
            acked.append(queue.enqueue("fault_jobs.mark_current", str(records)).id)
        except Exception:  # past every retry: not acknowledged, so not counted
            errors += 1
        stall.join()
    waiting = queue.get_job_ids(0, 1000)
    pushed_twice = len(waiting) - len(set(waiting))
    Worker(queue, pool="solo", install_signal_handlers=False).work(burst=True)

    verdict = check("enqueue resent during a 1.5 s server stall (generated ids)", queue, acked, records)
    verdict.notes = {"stalls": STALLS, "ids_pushed_twice": pushed_twice, "enqueue_errors": errors}
    report(verdict)
    assert pushed_twice == 0, verdict.notes
    assert verdict.executed == len(acked) and verdict.duplicates == 0 and verdict.lost == 0, verdict.summary()


# --- 5 and 6. failover under load ---------------------------------------------------------------------


def run_under_load(queue: Queue, url: str, tmp_path: Path, fault, total: int = 300, producers: int = 1,
                   pause_s: float = 0.01, workers: int = 1, worker_options: dict | None = None,
                   finally_=None, separate_producers: bool = False, queue_options: dict | None = None,
                   job_sleep_s: float = 0.005) -> tuple[Producer, Path, tuple[float, float]]:
    """Produce ``total`` jobs (``producers`` threads, or processes with ``separate_producers``; one enqueue
    at a time, a failed enqueue retried with the same id) with ``workers`` workers running, and call
    ``fault()`` once a third of them is acknowledged. ``queue_options`` go to the producer processes'
    Queue (thread producers use ``queue`` as it is). ``finally_(queue, records)`` runs once everything
    settled, with the workers still up. Returns (the producers merged, the record file, the fault's start
    and end)."""
    records = tmp_path / "records"
    window: list[float] = []
    options = {"pool": "process", "concurrency": 2, **FAST_LEASES, **(worker_options or {})}
    with contextlib.ExitStack() as stack:
        procs = [stack.enter_context(worker_process(url, queue.name, tmp_path / f"worker{n}.log", **options))
                 for n in range(workers)]
        if separate_producers:
            team = stack.enter_context(producer_processes(url, queue, records, total // producers, producers,
                                                          pause_s, tmp_path, queue_options))

            def acked() -> int:
                return sum(out.read_text().count("\nack ") + out.read_text().startswith("ack ")
                           for _, out in team.procs if out.exists())

            def join() -> Producer:
                return team.join()
        else:
            threads_team = [Producer(queue, records, f"f{n}-", sleep_s=job_sleep_s) for n in range(producers)]

            def produce(producer: Producer) -> None:
                for i in range(total // producers):
                    producer.enqueue(i, retry_for_s=45.0)
                    time.sleep(pause_s)

            threads = [threading.Thread(target=produce, args=(p,), daemon=True) for p in threads_team]
            for thread in threads:
                thread.start()

            def acked() -> int:
                return sum(len(p.acked) for p in threads_team)

            def join() -> Producer:
                for thread in threads:
                    thread.join(180)
                    assert not thread.is_alive(), "a producer is stuck"
                merged = Producer(queue, records, "f")
                for p in threads_team:
                    merged.acked += p.acked
                    merged.ack_times.update(p.ack_times)
                    merged.errors += p.errors
                    merged.error_kinds.update(p.error_kinds)
                    merged.abandoned += p.abandoned
                return merged

        wait_for(lambda: acked() >= total // 3 and read_records(records), "load to build up", timeout_s=120)
        window.append(time.time())
        fault()
        window.append(time.time())
        merged = join()
        wait_for(lambda: settled(queue, merged.acked, records), "every job to settle", timeout_s=120)
        if finally_ is not None:
            finally_(queue, records)
        for proc in procs:
            assert proc.poll() is None, "a worker died"
    return merged, records, (window[0], window[1])


def failover_verdict(name: str, queue: Queue, producer: Producer, records: Path, window: tuple[float, float],
                     *, writes_may_be_dropped: bool = True, notes: dict | None = None):
    """Check and report a fault under load. With ``writes_may_be_dropped`` (asynchronous replication), a
    loss or duplicate inside the fault's window is put down to Redis; without it, nothing is excused."""
    if writes_may_be_dropped:
        verdict = check(name, queue, producer.acked, records, failover_window=window, ack_times=producer.ack_times)
    else:
        verdict = check(name, queue, producer.acked, records)
    stall = longest_gap([r.at for r in read_records(records)], window[0])
    enqueue_stall = longest_gap(list(producer.ack_times.values()), window[0])
    verdict.recovery_s = max(x for x in (stall, enqueue_stall, 0.0) if x is not None)
    verdict.notes = {"failover_s": round(window[1] - window[0], 2), "processing_stall_s": stall,
                     "enqueue_stall_s": enqueue_stall, "enqueue_errors_retried": producer.errors,
                     "enqueue_error_kinds": dict(producer.error_kinds),
                     "enqueues_abandoned": len(producer.abandoned),
                     "lost_in_failover_window": verdict.lost_in_failover_window, **(notes or {})}
    report(verdict)
    return verdict


SENTINEL_FAULTS = pytest.mark.parametrize("how,producers,pause_s,durable", [
    pytest.param("sentinel-failover", 1, 0.01, 0, id="sentinel-failover"),
    pytest.param("kill-primary", 1, 0.01, 0, id="kill-primary"),
    # Four producers with hardly a pause: many writes in flight when the primary changes, to measure
    # how many acknowledged enqueues Redis's asynchronous replication drops, without and with WAIT.
    pytest.param("sentinel-failover", 4, 0.003, 0, id="sentinel-failover-flood"),
    pytest.param("sentinel-failover", 4, 0.003, 1, id="sentinel-failover-flood-durable"),
])


def switch_count(sentinel: SentinelGroup) -> int:
    """How many failovers the sentinels have announced so far (``+switch-master`` in the first one's log)."""
    return sentinel.sentinels[0].log_path.read_text(errors="replace").count("+switch-master")


@REPEAT
@SENTINEL_FAULTS
def test_sentinel_failover_under_load(
    sentinel: SentinelGroup, tmp_path: Path, run: int, how: str, producers: int, pause_s: float, durable: int
) -> None:
    """Producers run as processes of their own and workers as well: none is restarted, all follow the new
    primary by themselves."""
    sentinel.wait_healthy()
    queue = fresh_queue(sentinel.url, "sentinel")
    switches_before = switch_count(sentinel)

    def fault() -> None:
        if how == "sentinel-failover":
            sentinel.failover()
            return
        old = sentinel.primary
        old_port = old.port
        old.kill()
        new = sentinel.wait_for_failover(old_port)
        old.restart()
        old.admin.execute_command("REPLICAOF", HOST, new.port)
        sentinel.wait_healthy()

    total = 300 if producers == 1 else 3000
    queue_options = {"wait_replicas": durable, "wait_timeout_s": 1.0} if durable else {}
    try:
        producer, records, window = run_under_load(queue, sentinel.url, tmp_path, fault, total, producers, pause_s,
                                                   separate_producers=True, queue_options=queue_options)
    finally:
        keep_server_logs(sentinel.processes, tmp_path)
    name = f"Sentinel {how}" + (f" ({producers} producers, flood)" if producers > 1 else "")
    name += " durable (wait_replicas=1)" if durable else ""
    verdict = failover_verdict(name, queue, producer, records, window,
                               notes={"failovers": switch_count(sentinel) - switches_before})
    assert not producer.abandoned, verdict.summary()
    assert not verdict.not_terminal, verdict.summary()  # no stuck job
    assert verdict.lost == verdict.lost_in_failover_window, verdict.summary()  # Redis's async window only
    assert not verdict.unexplained_duplicates, verdict.summary()
    if durable:  # every acknowledged enqueue had reached the replica that was promoted
        assert verdict.lost == 0, verdict.summary()


def keep_server_logs(processes, tmp_path: Path) -> None:
    """Copy the servers' logs next to the worker's, for the post-mortem of a failover run."""
    for process in processes:
        with contextlib.suppress(OSError):
            shutil.copy(process.log_path, tmp_path / f"{process.name}.log")


def replica_of(cluster: Cluster, primary) -> object:
    for node in cluster.replicas():
        if int(node.info("replication").get("master_port", 0)) == primary.port:
            return node
    raise AssertionError(f"no replica follows {primary.name}")


@REPEAT
@pytest.mark.parametrize("how", ["cluster-failover", "kill-primary"])
def test_cluster_primary_failover_of_a_busy_queue_slot(cluster: Cluster, tmp_path: Path, run: int, how: str) -> None:
    cluster.wait_converged()
    queue = fresh_queue(cluster.url, "cluster")

    def fault() -> None:
        primary = cluster.node_for_slot(queue.slot)
        replica = replica_of(cluster, primary)
        if how == "cluster-failover":
            cluster.failover(replica)
            return
        primary.kill()
        wait_for(lambda: replica.admin.execute_command("ROLE")[0] == "master", "the replica to take over")
        primary.restart()
        cluster.wait_converged(60)

    try:
        producer, records, window = run_under_load(queue, cluster.url, tmp_path, fault, separate_producers=True)
    finally:
        keep_server_logs(cluster.processes, tmp_path)
    verdict = failover_verdict(f"Cluster {how}", queue, producer, records, window)
    assert not producer.abandoned, verdict.summary()
    assert not verdict.not_terminal, verdict.summary()
    assert verdict.lost == verdict.lost_in_failover_window, verdict.summary()
    assert not verdict.unexplained_duplicates, verdict.summary()
    if how == "cluster-failover":  # a coordinated failover loses no acknowledged write
        assert verdict.lost == 0, verdict.summary()



# --- 7. a busy queue's slot migrated to another node and back -------------------------------------


def worker_logs(tmp_path: Path) -> str:
    return "\n".join(path.read_text(errors="replace") for path in sorted(tmp_path.glob("worker*.log")))


@REPEAT
def test_a_busy_queues_slot_migrates_to_another_node_and_back(cluster: Cluster, tmp_path: Path, run: int) -> None:
    cluster.wait_converged()
    queue = fresh_queue(cluster.url, "migrate")
    moves: list[str] = []

    def fault() -> None:
        home = cluster.node_for_slot(queue.slot)
        away = next(node for node in cluster.primaries() if node.port != home.port)
        # Small batches with a pause stretch the migration the way a slot holding many keys would, so
        # producers and workers meet ASK, TRYAGAIN and then MOVED.
        for target in (away, home):
            cluster.migrate_slot(queue.slot, target, batch=10, between_batches=lambda: time.sleep(0.01))
            moves.append(f"{queue.slot}->{target.name}")
            time.sleep(0.5)

    def a_late_job_wakes_an_idle_worker(queue: Queue, records: Path) -> None:
        # The workers poll only every 10 minutes: this job starts only if their wake-up subscription
        # followed the slot to its new owner.
        late = Producer(queue, records, "late-")
        assert late.enqueue(0)
        wait_for(lambda: "late-0" in {r.job_id for r in read_records(records)}, "the late job to be woken up")

    try:
        producer, records, window = run_under_load(
            queue, cluster.url, tmp_path, fault, total=600, producers=2, pause_s=0.005, workers=2,
            worker_options={"idle_poll_s": 600.0}, finally_=a_late_job_wakes_an_idle_worker)
    finally:
        keep_server_logs(cluster.processes, tmp_path)
    verdict = check("Cluster slot migration under load (there and back)", queue, producer.acked, records)
    stall = longest_gap([r.at for r in read_records(records)], window[0])
    enqueue_stall = longest_gap(list(producer.ack_times.values()), window[0])
    verdict.recovery_s = max(x for x in (stall, enqueue_stall, 0.0) if x is not None)
    logs = worker_logs(tmp_path)
    verdict.notes = {"moves": moves, "migration_s": round(window[1] - window[0], 2), "processing_stall_s": stall,
                     "enqueue_stall_s": enqueue_stall, "enqueue_errors_retried": producer.errors,
                     "enqueue_error_kinds": dict(producer.error_kinds),
                     "worker_redis_errors": logs.count("Redis call failed")}
    report(verdict)
    assert "CROSSSLOT" not in logs
    assert not producer.error_kinds, verdict.summary()  # enqueue waited out TRYAGAIN instead of failing
    assert not producer.abandoned, verdict.summary()
    assert verdict.lost == 0 and verdict.failed == 0, verdict.summary()
    assert not verdict.unexplained_duplicates and not verdict.not_terminal, verdict.summary()


# --- 8. Redis restarted with AOF under load -----------------------------------------------------------

AOF = ("--appendonly", "yes", "--appendfsync", "always")


@pytest.fixture(scope="module")
def aof_standalone() -> Iterator[Standalone]:
    with Standalone(extra_args=AOF) as topology:
        yield topology


@REPEAT
@pytest.mark.parametrize("how", ["kill-9", "shutdown"])
def test_redis_restarted_with_aof_under_load_workers_and_producers_reconnect_by_themselves(
    aof_standalone: Standalone, tmp_path: Path, run: int, how: str
) -> None:
    server = aof_standalone.server
    queue = fresh_queue(aof_standalone.url, "aof")

    def fault() -> None:
        if how == "kill-9":
            server.kill()
        else:
            with contextlib.suppress(redis.ConnectionError):
                server.admin.execute_command("SHUTDOWN")
            wait_for(lambda: not server.is_running(), "the server to shut down")
        # Down for longer than the lease (2 s): the leases of the running jobs expire meanwhile.
        time.sleep(3.0)
        server.restart()

    try:
        # Jobs of 50 ms: the workers hold leased batches when the server goes away.
        producer, records, window = run_under_load(queue, aof_standalone.url, tmp_path, fault, workers=2,
                                                   job_sleep_s=0.05)
    finally:
        keep_server_logs(aof_standalone.processes, tmp_path)
    requeued = [job_id for job_id in producer.acked if (job := queue.fetch_job(job_id)) and job.attempts > 1]
    verdict = failover_verdict(f"Standalone restart with AOF ({how})", queue, producer, records, window,
                               writes_may_be_dropped=False, notes={"recovered_by_lease_expiry": len(requeued)})
    assert not producer.abandoned, verdict.summary()
    assert verdict.lost == 0 and verdict.failed == 0, verdict.summary()  # appendfsync always: nothing dropped
    assert not verdict.unexplained_duplicates and not verdict.not_terminal, verdict.summary()


# --- 9. poison jobs among normal ones -----------------------------------------------------------------

# (function, arguments, enqueue options, how its failure reason must start)
POISONS = {
    "os._exit": ("jobs.crash", (), {}, "abandoned"),
    "segfault": ("jobs.segfault", (), {}, "abandoned"),
    "infinite loop": ("jobs.spin_forever", (), {"job_timeout": 1}, "JobTimeoutError"),
    "infinite loop deaf to SIGALRM": ("jobs.spin_forever_deaf", (), {"job_timeout": 1}, "JobTimeoutError"),
    "unbounded memory": ("jobs.eat_memory", (), {}, "MemoryError"),
}


@REPEAT
def test_poison_jobs_fail_after_their_attempts_and_the_other_jobs_run(
    standalone: Standalone, tmp_path: Path, run: int
) -> None:
    url = standalone.url
    queue = fresh_queue(url, "poison")
    records, log = tmp_path / "records", tmp_path / "worker.log"
    producer = Producer(queue, records, "n", sleep_s=0.01)
    poison: dict[str, str] = {}
    for i in range(200):
        assert producer.enqueue(i)
        if i % 40 == 20:  # each kind of poison five times, spread among the normal jobs
            for kind, (func, args, options, _) in POISONS.items():
                job_id = f"poison-{kind.replace(' ', '-')}-{i}"
                poison[queue.enqueue(func, *args, job_id=job_id, **options).id] = kind
    with worker_process(url, queue.name, log, pool="process", concurrency=2, memory_limit_mb=256,
                        **FAST_LEASES) as proc:
        wait_for(lambda: settled(queue, [*producer.acked, *poison], records), "every job to settle", timeout_s=180)
        assert proc.poll() is None  # the supervisor survived every poison

    verdict = check("poison jobs (exit, segfault, infinite loops, unbounded memory)", queue,
                    [*producer.acked, *poison], records)
    reasons = {}
    for job_id, kind in poison.items():
        job = queue.fetch_job(job_id)
        assert job is not None
        reasons[job_id] = (job.exc_info or "").splitlines()[0] if job.exc_info else ""
        expected = POISONS[kind][3]
        assert reasons[job_id].startswith(expected), f"{kind}: {reasons[job_id]!r}"
    verdict.notes = {"poison_jobs": len(poison), "reasons": sorted({r[:70] for r in reasons.values()})}
    report(verdict)
    assert verdict.lost == 0 and verdict.failed == len(poison), verdict.summary()
    assert not verdict.unexplained_duplicates and not verdict.not_terminal, verdict.summary()
