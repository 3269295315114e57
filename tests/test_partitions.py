"""Partitioned queues on every topology (standalone, Sentinel, Cluster): one logical queue over P ordinary
queues in their own slots. Declaring and checking the count, routing (round-robin, partition_key, ids and
keys whose checks need one slot), enqueue_many, summed counts and registries, workers serving every
partition fairly, control on the logical queue, bad input, and the asyncio front end."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from clusterq import (
    AsyncPartitionedQueue,
    AsyncQueue,
    DuplicateJob,
    Job,
    JobStatus,
    PartitionCountMismatch,
    PartitionedQueue,
    Queue,
    Retry,
    Worker,
)
from clusterq.api.partitions import partition_of, rate_limit_shares
from clusterq.state import keys as K
from test_worker_idle import NEVER_S, data_primaries, wait_for
from worker_thread import running


def _burst(queues: object, connection: object, **options: object) -> Worker:
    options.setdefault("pool", "solo")
    worker = Worker(queues, connection, install_signal_handlers=False, **options)  # type: ignore[arg-type]
    worker.work(burst=True)
    return worker


def _ran(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def test_queue_with_partitions_is_a_partitioned_queue_stored_and_checked(url: str, qname: str) -> None:
    q = Queue(qname, url, partitions=4)
    assert isinstance(q, PartitionedQueue)
    assert q.partition_names[0] == qname and len(set(q.partition_names)) == 4
    assert q.partition_names == list(K.partition_names(qname, 4))
    q.enqueue("jobs.noop")
    assert q.connection.hget(q.keys.partitions, "n") in (b"4", "4")
    Queue(qname, url, partitions=4).enqueue("jobs.noop")  # the same count: fine
    other = Queue(qname, url, partitions=6)
    with pytest.raises(PartitionCountMismatch, match=r"stored with 4 partitions.*declares 6"):
        other.enqueue("jobs.noop")
    assert q.count == 2  # the refused producer wrote nothing
    q.delete()


@pytest.mark.parametrize("bad", [0, -1, 1025, 2.0, "4", True, None])
def test_bad_partition_counts_are_refused_before_any_io(url: str, qname: str, bad: object) -> None:
    if bad is None:  # partitions=None is an ordinary queue
        assert type(Queue(qname, url, partitions=bad)) is Queue
        return
    with pytest.raises(ValueError, match="partitions must be an int from 1 to 1024"):
        Queue(qname, url, partitions=bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="partitions must be an int from 1 to 1024"):
        AsyncQueue(qname, url, partitions=bad)  # type: ignore[arg-type]
    assert not Queue(qname, url).exists()


def test_a_partition_key_that_is_not_a_str_is_refused_and_nothing_written(url: str, qname: str) -> None:
    q = Queue(qname, url, partitions=3)
    for bad in (42, b"k", ("a",)):
        with pytest.raises(TypeError, match="partition_key must be a str"):
            q.enqueue("jobs.noop", partition_key=bad)
    with pytest.raises(ValueError, match="must not be empty"):
        q.enqueue("jobs.noop", partition_key="")
    with pytest.raises(TypeError, match="partition_key must be a str"):
        q.enqueue_many([q.prepare_data("jobs.noop")], partition_keys=[7])  # type: ignore[list-item]
    assert q.count == 0
    assert q.connection.exists(q.keys.partitions) == 0


def test_round_robin_spreads_jobs_evenly_and_keys_keep_order_in_one_partition(url: str, qname: str,
                                                                              tmp_path: Path) -> None:
    q = Queue(qname, url, partitions=4)
    jobs = [q.enqueue("jobs.noop") for _ in range(40)]
    assert q.counts() == [10, 10, 10, 10]
    assert Counter(job.queue_name for job in jobs) == Counter({name: 10 for name in q.partition_names})
    out = tmp_path / "order"
    keyed = [q.enqueue("jobs.record", str(out), f"u1-{i}", partition_key="user-1") for i in range(5)]
    home = q.partition_names[partition_of("user-1", 4)]
    assert {job.queue_name for job in keyed} == {home} == {q.partition_for("user-1").name}
    assert q.count == 45
    # A job fetched by its handle or its id alone finds its partition.
    assert Job.fetch(keyed[0].handle, q.connection).id == keyed[0].id
    found = q.fetch_job(jobs[7].id)
    assert found is not None and found.queue_name == jobs[7].queue_name
    assert q.fetch_job("no-such-id") is None
    _burst([q], q.connection)
    assert _ran(out) == [f"u1-{i}" for i in range(5)]  # FIFO within a partition key
    assert q.count == 0 and q.finished_job_registry.count == 45
    assert sum(q.finished_job_registry.counts()) == 45
    assert len(q.finished_job_registry.get_job_ids(0, 100)) == 45
    q.delete()


def test_ids_unique_and_concurrency_keys_route_to_one_partition(url: str, qname: str) -> None:
    q = Queue(qname, url, partitions=5)
    first = q.enqueue("jobs.noop", job_id="order-17")
    again = q.enqueue("jobs.noop", job_id="order-17")
    assert first.queue_name == again.queue_name and q.count == 1  # the explicit id's idempotence holds
    q.enqueue("jobs.noop", job_id="u-1", unique=True)
    with pytest.raises(DuplicateJob):
        q.enqueue("jobs.noop", job_id="u-1", unique=True)
    limited = {q.enqueue("jobs.noop", concurrency_key="tenant-9").queue_name for _ in range(6)}
    assert len(limited) == 1
    q.set_concurrency_limit("tenant-9", 1)
    assert q.concurrency_limits == {"tenant-9": 1}
    assert all(part.concurrency_limits == {"tenant-9": 1} for part in q.parts)
    q.delete()


def test_enqueue_many_groups_by_partition_and_returns_jobs_in_call_order(url: str, qname: str) -> None:
    q = Queue(qname, url, partitions=6)
    data = [q.prepare_data("jobs.add", (i, 1)) for i in range(60)]
    keys = [None if i % 2 else f"k{i % 4}" for i in range(60)]
    jobs = q.enqueue_many(data, partition_keys=keys)
    assert [list(job.args) for job in jobs] == [[i, 1] for i in range(60)]
    for job, key in zip(jobs, keys):
        if key is not None:
            assert job.queue_name == q.partition_names[partition_of(key, 6)]
    assert q.count == 60 and sum(q.counts()) == 60
    with pytest.raises(ValueError, match="partition_keys has 1 entries for 2 jobs"):
        q.enqueue_many(data[:2], partition_keys=["a"])
    assert q.empty() == 60 and q.count == 0
    q.delete()


def test_a_worker_given_the_logical_name_serves_every_partition(url: str, qname: str) -> None:
    q = Queue(qname, url, partitions=8)
    jobs = q.enqueue_many([q.prepare_data("jobs.add", (i, i)) for i in range(80)])
    worker = _burst(qname, url, max_batch=7)
    assert worker.stats.processed == 80
    assert all(job.return_value() == 2 * i for i, job in enumerate(jobs))
    assert q.finished_job_registry.counts() == [10] * 8
    q.delete()


def test_leasing_rotates_over_the_partitions_none_favoured(url: str, qname: str) -> None:
    q = Queue(qname, url, partitions=4)
    q.enqueue_many([q.prepare_data("jobs.noop") for _ in range(40)])
    worker = Worker([q], q.connection, pool="solo", install_signal_handlers=False, max_batch=1)
    worker.work(burst=True, max_jobs=8)
    # One job per round from a rotating start: after 8 jobs every partition gave 2.
    assert q.counts() == [8, 8, 8, 8]
    q.delete()


def test_retries_delays_and_dependencies_work_inside_partitions(url: str, qname: str, tmp_path: Path) -> None:
    q = Queue(qname, url, partitions=3)
    runs = tmp_path / "runs"
    flaky = q.enqueue("jobs.fail_until", str(runs), 2, retry=Retry(max=3))
    later = q.enqueue_in(0.05, "jobs.add", 2, 3)
    parent = q.enqueue("jobs.add", 1, 1)
    child = q.enqueue("jobs.add", 5, 5, depends_on=parent)
    assert q.scheduled_job_registry.count == 1 and q.deferred_job_registry.count == 1
    time.sleep(0.1)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not all(j.get_status() and j.get_status().value == "finished"
                                                  for j in (flaky, later, parent, child)):
        _burst(qname, url)
        time.sleep(0.05)
    assert flaky.return_value() == 2 and len(_ran(runs)) == 2  # failed once, retried in its partition
    assert later.return_value() == 5 and parent.return_value() == 2 and child.return_value() == 10
    q.delete()


def test_suspend_resume_and_rate_limit_act_on_the_logical_queue(url: str, qname: str) -> None:
    q = Queue(qname, url, partitions=4)
    q.enqueue_many([q.prepare_data("jobs.noop") for _ in range(8)])
    q.suspend()
    assert q.is_suspended and all(part.is_suspended for part in q.parts)
    assert _burst(qname, url).stats.processed == 0
    q.resume()
    assert not q.is_suspended
    q.set_rate_limit(10, 2)
    assert q.rate_limit == (10, 2.0)
    assert [part.rate_limit for part in q.parts] == [(3, 2.0), (3, 2.0), (2, 2.0), (2, 2.0)]
    q.set_rate_limit(2, 1)
    assert [part.rate_limit for part in q.parts] == [(1, 2.0)] * 4
    q.remove_rate_limit()
    assert q.rate_limit is None and all(part.rate_limit is None for part in q.parts)
    assert _burst(qname, url).stats.processed == 8
    q.delete()
    assert q.connection.exists(q.keys.partitions) == 0


def test_rate_limit_shares_add_up() -> None:
    assert rate_limit_shares(12, 1.0, 12) == [(1, 1.0)] * 12
    assert sum(n for n, _ in rate_limit_shares(100, 1.0, 7)) == 100
    assert rate_limit_shares(3, 1.0, 6) == [(1, 2.0)] * 6  # 6 partitions x 1 per 2 s = 3 per s


def _settle(q: PartitionedQueue) -> None:
    """Two jobs one after the other: then the worker has done its start-up polls and sleeps (as in
    tests/test_worker_idle.py)."""
    for n in range(2):
        job = q.enqueue("jobs.add", n, 0)
        wait_for(lambda job=job: job.get_status() == JobStatus.FINISHED, "a warm-up job to finish")


def test_an_idle_worker_is_woken_by_a_job_in_any_partition(url: str, qname: str) -> None:
    q = Queue(qname, url, partitions=6)
    q.declare()  # workers read the count when they start
    worker = Worker(qname, url, pool="solo", install_signal_handlers=False, idle_poll_s=NEVER_S,
                    maintenance_interval_s=NEVER_S)
    with running(worker):
        _settle(q)
        for i in range(6):  # one at a time, each into the next partition, each finding the worker asleep
            job = q.enqueue("jobs.add", i, 0)
            wait_for(lambda job=job, i=i: job.return_value() == i, f"job {i} to be noticed")
    q.delete()


def test_an_idle_worker_promotes_scheduled_jobs_in_partitions_it_does_not_sweep_now(url: str, qname: str) -> None:
    # 64 partitions: maintenance covers 4 per round plus the warm ones, yet a job scheduled into any
    # partition is promoted in time (schedule.lua signals its partition, and the next round takes it).
    q = Queue(qname, url, partitions=64)
    q.declare()
    worker = Worker(qname, url, pool="solo", install_signal_handlers=False, idle_poll_s=NEVER_S,
                    maintenance_interval_s=NEVER_S)
    assert worker.maintenance.sweep and worker.maintenance.sweep.per_round == 4
    with running(worker):
        _settle(q)
        jobs = [q.enqueue_in(0.3, "jobs.add", i, 1) for i in range(3)]
        wait_for(lambda: all(job.get_status() == JobStatus.FINISHED for job in jobs), "the scheduled jobs to run")
    assert [job.return_value() for job in jobs] == [1, 2, 3]
    q.delete()


def test_an_idle_worker_on_64_partitions_does_not_maintain_every_partition_every_round(
        url: str, clusterq_topology: Any, qname: str) -> None:
    q = Queue(qname, url, partitions=64)
    q.declare()
    primaries = data_primaries(clusterq_topology)

    def script_calls() -> int:
        return sum(int(node.admin.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0))
                   for node in primaries)

    # Maintenance every 0.5 s, so the window below holds about 8 rounds; no fallback poll in it.
    worker = Worker(qname, url, pool="solo", install_signal_handlers=False, idle_poll_s=NEVER_S,
                    maintenance_interval_s=0.5)
    with running(worker):
        _settle(q)
        before = script_calls()
        time.sleep(4.0)  # the idle period being measured; nothing is asserted about time
        after = script_calls()
    # A round covers the 4 partitions of the sweep and the (at most 2) warm ones: 18 calls, where every
    # partition in every round would be 192, so ~8 rounds would be ~1,500. A quarter of that is the bound.
    full = 4.0 / 0.5 * 64 * 3
    assert after - before < full / 4, f"{after - before} script calls in ~8 maintenance rounds"
    assert worker.maintenance.sweep.per_round == 4
    q.delete()


def test_layout_shows_each_partitions_slot_evenly_spaced(url: str, qname: str) -> None:
    q = Queue(qname, url, partitions=12)
    rows = q.layout()
    assert [name for name, _, _ in rows] == q.partition_names
    slots = [slot for _, slot, _ in rows]
    assert slots == [K.partition_target_slot(qname, i, 12) for i in range(12)]
    gaps = sorted((b - a) % 16384 for a, b in zip(slots, slots[1:] + slots[:1]))
    assert gaps[0] >= 1365 and gaps[-1] <= 1366
    if "cluster" in url:  # three primaries, even shares: four partitions each
        assert sorted(Counter(node for _, _, node in rows).values()) == [4, 4, 4]


def test_async_partitioned_queue_matches_the_sync_one(url: str, qname: str) -> None:
    async def main() -> None:
        async with AsyncQueue(qname, url, partitions=3) as q:
            assert isinstance(q, AsyncPartitionedQueue)
            jobs = [await q.enqueue("jobs.add", i, 1) for i in range(6)]
            keyed = await q.enqueue("jobs.add", 0, 0, partition_key="k")
            assert keyed.queue_name == q.partition_names[partition_of("k", 3)]
            more = await q.enqueue_many([q.prepare_data("jobs.noop") for _ in range(3)])
            assert len(more) == 3
            assert await q.counts() == [4, 3, 3] or sorted(await q.counts()) == [3, 3, 4]
            assert await q.count() == 10
            found = await q.fetch_job(jobs[1].id)
            assert found is not None and found.id == jobs[1].id
            await q.suspend()
            assert await q.is_suspended()
            await q.resume()
            with pytest.raises(PartitionCountMismatch):
                await AsyncQueue(qname, url, partitions=5).enqueue("jobs.noop")
            with pytest.raises(TypeError, match="partition_key must be a str"):
                await q.enqueue("jobs.noop", partition_key=1)
    asyncio.run(main())
    sync = Queue(qname, url, partitions=3)
    assert sync.count == 10
    assert _burst(qname, url).stats.processed == 10
    assert sync.finished_job_registry.count == 10
    sync.delete()


def test_an_unpartitioned_producer_writes_to_partition_zero_which_workers_serve(url: str, qname: str) -> None:
    q = Queue(qname, url, partitions=3)
    q.declare()
    plain = Queue(qname, url).enqueue("jobs.add", 20, 1)  # partition 0 is the queue itself
    assert plain.queue_name == qname
    assert q.counts()[0] == 1
    _burst(qname, url)
    assert plain.return_value() == 21
    q.delete()


def test_an_idle_worker_promotes_a_scheduled_job_in_a_partition_it_does_not_sweep_now(url: str, qname: str) -> None:
    # 64 partitions: maintenance covers 4 per round plus the warm ones, yet a job scheduled into any
    # partition is promoted in time (schedule.lua signals its partition, which makes it warm).
    q = Queue(qname, url, partitions=64)
    q.declare()
    worker = Worker(qname, url, pool="solo", install_signal_handlers=False, idle_poll_s=300,
                    maintenance_interval_s=300)
    assert worker.maintenance.sweep and worker.maintenance.sweep.per_round == 4
    thread = threading.Thread(target=worker.work, kwargs={"max_jobs": 3}, daemon=True)
    thread.start()
    time.sleep(0.3)
    jobs = [q.enqueue_in(0.5, "jobs.add", i, 1) for i in range(3)]
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert [job.return_value() for job in jobs] == [1, 2, 3]
    q.delete()


def test_partition_sweep_selects_warm_due_and_a_rotating_slice() -> None:
    from clusterq.worker.lanes import Lane
    from clusterq.worker.partition_sweep import PartitionSweep
    from clusterq.worker.pools.factory import make_pool

    names = list(K.partition_names("sweep", 32))
    lane = Lane(["plain", *names], make_pool("solo", None), groups=[["plain"], names])
    sweep = PartitionSweep([lane])
    assert sweep.per_round == 2
    first = sweep.select(["plain", *names], now=100.0)
    assert first == ["plain", names[0], names[1]]
    lane.ready.add(names[10])
    lane.active[names[20]] = 95.0  # gave jobs 5 s ago: warm
    sweep.note(names[30], 100.5)
    assert sweep.select(["plain", *names], now=101.0) == ["plain", names[2], names[3], names[10], names[20], names[30]]
    lane.ready.clear()
    seen: set[str] = set()
    for round_ in range(16):
        seen.update(sweep.select(names, now=200.0 + round_))
    assert seen == set(names)  # every partition is swept within partitions / per_round rounds


def test_info_shows_the_logical_queue_summed_its_partitions_and_where_they_live(url: str, qname: str) -> None:
    from clusterq.cli.main import main, render_info

    q = Queue(qname, url, partitions=3)
    q.enqueue_many([q.prepare_data("jobs.noop") for _ in range(7)])
    text = render_info(url)
    row = next(line for line in text.splitlines() if line.startswith(f"{qname} [3 partitions]"))
    assert row.split()[3] == "7"  # queued, summed over the partitions
    for name in q.partition_names:
        assert f"  {name} " in text  # each partition's own row, indented
    assert f"{qname}: 3 partitions (partition, slot, node)" in text
    for index, (name, slot, _) in enumerate(q.layout()):
        assert any(line.split()[:2] == [str(index), str(slot)] and line.endswith(name) for line in text.splitlines())
    # The CLI's suspend, resume and empty act on the logical queue.
    assert main(["suspend", "-u", url, qname]) == 0
    assert q.is_suspended
    assert main(["resume", "-u", url, qname]) == 0
    assert not q.is_suspended
    assert main(["empty", "-u", url, qname]) == 0
    assert q.count == 0
    q.delete()


def test_metrics_show_the_partitioned_queue_summed(url: str, qname: str) -> None:
    pytest.importorskip("prometheus_client")
    from prometheus_client import CollectorRegistry, generate_latest

    from clusterq.observability.queues import QueueGauges

    q = Queue(qname, url, partitions=4)
    q.enqueue_many([q.prepare_data("jobs.noop") for _ in range(10)])
    registry = CollectorRegistry()
    registry.register(QueueGauges(q.connection, lambda: [known.name for known in Queue.all(q.connection)]))
    text = generate_latest(registry).decode()
    assert f'clusterq_partitioned_queue_jobs{{queue="{qname}",state="waiting"}} 10.0' in text
    for name, count in zip(q.partition_names, q.counts()):
        assert f'clusterq_queue_jobs{{queue="{name}",state="waiting"}} {float(count)}' in text
    q.delete()


def test_a_group_counts_members_in_every_partition(url: str, qname: str) -> None:
    from clusterq import Group

    q = Queue(qname, url, partitions=3)
    q.declare()  # nothing went through q itself: store the count so the worker serves every partition
    group = Group.create(q.parts[0])  # a group is homed in one queue: here partition 0
    members = [group.enqueue(part, "jobs.add", i, 1) for i, part in enumerate(q.parts)]
    group.close()
    assert _burst(qname, url).stats.processed == 3
    assert group.wait(timeout_s=10)
    status = group.status()
    assert (status.size, status.ended, status.failed, status.done) == (3, 3, 0, True)
    assert [job.return_value() for job in members] == [1, 2, 3]
    q.delete()


def test_a_worker_given_the_partitioned_queue_object_stores_the_count_itself(url: str, qname: str) -> None:
    q = Queue(qname, url, partitions=3)
    worker = Worker([q], pool="solo", install_signal_handlers=False)  # no producer wrote yet
    assert worker.queue_names == q.partition_names
    assert q.connection.hget(q.keys.partitions, "n") in (b"3", "3")
    with pytest.raises(PartitionCountMismatch):
        Worker([Queue(qname, url, partitions=4)], pool="solo", install_signal_handlers=False)


def test_resize_while_producers_and_a_worker_run_loses_no_job(url: str, qname: str, monkeypatch: Any) -> None:
    import clusterq.api.partitions as partitions_module
    import clusterq.worker.partition_refresh as refresh_module
    from clusterq import PartitionResizeInProgress

    monkeypatch.setattr(partitions_module, "REFRESH_S", 0.2)  # producers re-read the count this often
    monkeypatch.setattr(refresh_module, "REFRESH_S", 0.2)  # workers too
    monkeypatch.setattr(refresh_module, "RETIRE_GRACE_S", 1.0)
    q = Queue(qname, url, partitions=3)
    stale = Queue(qname, url, partitions=3)  # a second producer, which learns of the resize by itself
    q.declare()
    stale.declare()
    old_names = q.partition_names
    worker = Worker(qname, url, pool="solo", install_signal_handlers=False, idle_poll_s=NEVER_S)
    jobs = []
    with running(worker):
        _settle(q)
        jobs += [q.enqueue_in(1.0, "jobs.add", i, 100) for i in range(6)]  # waiting in the old partitions
        q.resize(5)
        assert q.partitions == 5 and q.partition_names == list(K.partition_names(qname, 5))
        with pytest.raises(PartitionResizeInProgress, match="from 3 to 5"):
            q.resize(7)
        with pytest.raises(PartitionCountMismatch):
            Queue(qname, url, partitions=3).enqueue("jobs.noop")  # a new producer must declare 5
        jobs += [stale.enqueue("jobs.add", i, 200) for i in range(3)]  # may still go to old partitions
        time.sleep(0.3)
        jobs += [stale.enqueue("jobs.add", i, 300) for i in range(5)]
        assert stale.partitions == 5  # it followed the resize
        jobs += [q.enqueue("jobs.add", i, 400) for i in range(5)]
        assert {job.queue_name for job in jobs[-10:]} <= set(q.partition_names)
        wait_for(lambda: all(job.get_status() == JobStatus.FINISHED for job in jobs), "every job to run",
                 timeout_s=30)
        wait_for(lambda: q.connection.hget(q.keys.partitions, "old") is None, "the resize to finish", timeout_s=30)
        wait_for(lambda: set(worker.queue_names) == set(q.partition_names), "the worker to forget the old partitions",
                 timeout_s=30)
    assert sorted(job.return_value() for job in jobs) == sorted(
        [i + 100 for i in range(6)] + [i + 200 for i in range(3)] + [i + 300 for i in range(5)]
        + [i + 400 for i in range(5)])
    retired = set(old_names) - set(q.partition_names)
    assert retired and all(Queue(name, url).count == 0 for name in retired)
    q.resize(2)  # a second resize once the first one ended
    assert q.connection.hget(q.keys.partitions, "n") in (b"2", "2")
    q.delete()


def test_a_partition_left_out_of_a_round_brings_the_next_round_forward() -> None:
    from clusterq.worker.lanes import Lane
    from clusterq.worker.partition_sweep import PartitionSweep
    from clusterq.worker.pools.factory import make_pool

    names = list(K.partition_names("sweep", 64))
    sweep = PartitionSweep([Lane(names, make_pool("solo", None), groups=[names])])
    sweep.note(names[40], 10.5)  # its next scheduled job is due at 10.5
    assert names[40] not in sweep.select(names, now=10.0)
    assert sweep.earliest() == 10.5  # maintenance comes back by then (Maintenance.run calls soon())
    assert names[40] in sweep.select(names, now=10.5)


def test_debounced_jobs_of_one_key_collect_in_one_partition(url: str, qname: str) -> None:
    q = Queue(qname, url, partitions=4)
    jobs = [q.enqueue("jobs.add", i, 0, debounce=("user-7", 60)) for i in range(5)]
    assert len({job.id for job in jobs}) == 1  # one job per window, whichever partition it is in
    assert len({job.queue_name for job in jobs}) == 1
    assert q.scheduled_job_registry.count == 1
    assert list(jobs[0].args) == [4, 0]  # the latest arguments win
    q.delete()


def test_delete_during_a_resize_removes_the_retired_partitions_too(url: str, qname: str) -> None:
    q = Queue(qname, url, partitions=3)
    q.enqueue_many([q.prepare_data("jobs.noop") for _ in range(6)])
    old_names = q.partition_names
    before = q.counts()
    q.resize(5)  # no worker runs: the resize stays open, the retired partitions keep their jobs
    q.enqueue_many([q.prepare_data("jobs.noop") for _ in range(5)])
    assert q.count == 5 + before[0]  # partition 0 (the queue itself) is never retired
    assert sum(Queue(name, url).count for name in old_names[1:]) == sum(before[1:]) == 4
    q.delete()
    assert all(Queue(name, url).count == 0 for name in {*old_names, *q.partition_names})
    assert q.connection.exists(q.keys.partitions) == 0
