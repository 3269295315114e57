"""An idle worker, on every topology: woken by sharded pub/sub the moment one of its queues gets work
(whatever node that queue lives on), and cheap on the server while it waits.

The workers here poll only every 300 s and run maintenance every 300 s, so within the tests' deadlines
only a wake-up message can make them notice a job.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import clusterq
from clusterq import Job, JobStatus, Queue, Worker
from worker_thread import running

T_ = TypeVar("T_")
DEADLINE_S = 10.0
NEVER_S = 300.0  # fallback poll and maintenance: far beyond every deadline below


def wait_for(check: Callable[[], T_], what: str, timeout_s: float = DEADLINE_S) -> T_:
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {timeout_s:g} s waiting for {what}")
        time.sleep(0.01)


def slot_port(topology: Any, name: str) -> int:
    slot = clusterq.queue_slot(name)
    return next(port for start, end, port, _ in topology.slot_map() if start <= slot <= end)


def queues_on_every_primary(topology: Any, extra: list[str], prefix: str = "idle") -> list[str]:
    """One queue name per cluster primary (plus ``extra``); elsewhere three plain names plus ``extra``."""
    if topology.kind != "cluster":
        return [f"{prefix}-{i}" for i in range(3)] + extra
    wanted = {node.port for node in topology.primaries()}
    names: dict[int, str] = {}
    for i in range(10_000):
        name = f"{prefix}-{i}"
        names.setdefault(slot_port(topology, name), name)
        if set(names) == wanted:
            break
    assert set(names) == wanted
    return sorted(names.values()) + extra


def data_primaries(topology: Any) -> list[Any]:
    if topology.kind == "cluster":
        return topology.primaries()
    if topology.kind == "sentinel":
        return [topology.primary]
    return [topology.server]


def finished(job: Job) -> bool:
    return job.get_status() == JobStatus.FINISHED


def idle_worker(url: str, names: list[str], **options: Any) -> Worker:
    options.setdefault("idle_poll_s", NEVER_S)
    options.setdefault("maintenance_interval_s", NEVER_S)
    return Worker(names, url, install_signal_handlers=False, **options)


def settle_into_idle(url: str, names: list[str]) -> None:
    """Run two jobs one after the other: once the second has finished, the worker has done its start-up
    polls and its next empty poll puts it to sleep until a wake-up (or the 300 s fallback)."""
    for n in range(2):
        job = Queue(names[0], url).enqueue("jobs.add", n, 0)
        wait_for(lambda job=job: finished(job), "a warm-up job to finish")


def test_idle_worker_is_woken_by_a_job_on_any_of_its_queues(url: str, clusterq_topology: Any, qname: str) -> None:
    names = queues_on_every_primary(clusterq_topology, [qname])
    if clusterq_topology.kind == "cluster":
        assert len({slot_port(clusterq_topology, n) for n in names}) == 3
    worker = idle_worker(url, names)
    with running(worker):
        settle_into_idle(url, names)
        # One at a time, so each job finds the worker asleep again.
        for round_ in range(2):
            for name in reversed(names):
                job = Queue(name, url).enqueue("jobs.add", round_, 1)
                wait_for(lambda job=job: finished(job), f"the job on {name!r} to be noticed")
        assert worker.stats.processed == 2 + 2 * len(names)
        assert worker.stats.failed == 0


def test_idle_worker_is_woken_for_jobs_arriving_on_all_its_queues_at_once(url: str, clusterq_topology: Any) -> None:
    names = queues_on_every_primary(clusterq_topology, [])
    worker = idle_worker(url, names)
    with running(worker):
        settle_into_idle(url, names)
        jobs = [Queue(name, url).enqueue("jobs.add", i, 1) for i, name in enumerate(names) for _ in range(3)]
        wait_for(lambda: all(finished(job) for job in jobs), "every job to finish")
    assert [job.return_value() for job in jobs] == [i + 1 for i in range(len(names)) for _ in range(3)]


def test_idle_worker_is_woken_by_a_failed_job_being_requeued(url: str, qname: str) -> None:
    queue = Queue(qname, url)
    failed = queue.enqueue("jobs.fail", "first time")
    worker = idle_worker(url, [qname])
    with running(worker):
        wait_for(lambda: failed.get_status() == JobStatus.FAILED, "the job to fail")
        settle_into_idle(url, [qname])
        queue.connection.hset(failed.key, "f", "jobs.echo")  # fixed, as an operator would fix the code
        assert queue.failed_job_registry.requeue(failed.id) == 1
        wait_for(lambda: finished(failed), "the requeued job to run")
    assert queue.failed_job_registry.count == 0


def test_idle_worker_on_five_queues_issues_few_commands(url: str, clusterq_topology: Any) -> None:
    names = queues_on_every_primary(clusterq_topology, [], prefix="budget")
    names += [f"budget-extra-{i}" for i in range(5 - len(names))]
    primaries = data_primaries(clusterq_topology)

    def total_commands() -> int:
        total = 0
        for node in primaries:
            for name, stats in node.admin.info("commandstats").items():
                # Our own INFO, and replicas acknowledging replication, are not the worker's.
                if name not in ("cmdstat_info", "cmdstat_replconf"):
                    total += int(stats["calls"])
        return total

    worker = Worker(names, url, install_signal_handlers=False)  # default poll and maintenance intervals
    with running(worker):
        settle_into_idle(url, names)
        before = total_commands()
        time.sleep(3.0)  # the idle period being measured; nothing is asserted about time
        after = total_commands()
        assert worker.stats.processed == 2

    # The design aims at < 5 commands a second for an idle worker; sentinels' own pings and hellos
    # to the primary are counted too, so the bound leaves room for them.
    assert after - before < 60, f"an idle worker issued {after - before} commands in 3 s"
