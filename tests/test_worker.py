"""The worker, in process, on every topology: results, statuses, registries, record TTLs, priority, a
1,000-job run over queues on several cluster primaries, bad input that must fail one job and nothing else,
time limits, lease recovery and fencing.

Workers run in burst mode in the test's thread (so SIGALRM time limits work), or in a background thread
with ``install_signal_handlers=False`` when the test needs them running while it acts. Waits use generous
deadlines; assertions are on outcomes, never on how long something took.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

import clusterq
from clusterq import Job, JobStatus, Queue, Worker, connect
from clusterq.state import keys as K
from clusterq.state import store as T
from clusterq.state import transitions as TR
from worker_thread import running

T_ = TypeVar("T_")
DEADLINE_S = 15.0


# --- helpers -----------------------------------------------------------------------------------------

def wait_for(check: Callable[[], T_], what: str, timeout_s: float = DEADLINE_S) -> T_:
    """Poll ``check`` until it returns something truthy; fail naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {timeout_s:g} s waiting for {what}")
        time.sleep(0.02)


def burst(url: str, queues: Any, **options: Any) -> Worker:
    """Run a worker in burst mode in this thread until its queues are empty; return it for its stats."""
    options.setdefault("install_signal_handlers", False)
    worker = Worker(queues, url, **options)
    worker.work(burst=True)
    return worker


def background_worker(url: str, queues: Any, **options: Any) -> Worker:
    options.setdefault("install_signal_handlers", False)
    return Worker(queues, url, **options)


def status(job: Job) -> JobStatus | None:
    return job.get_status()


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def primaries_serving(topology: Any, names: list[str]) -> set[int]:
    """Ports of the cluster primaries serving these queues' slots."""
    slot_map = topology.slot_map()
    ports = set()
    for name in names:
        slot = clusterq.queue_slot(name)
        ports.update(port for start, end, port, _ in slot_map if start <= slot <= end)
    return ports


def spread_queue_names(topology: Any, count: int, prefix: str) -> list[str]:
    """``count`` queue names whose slots fall on as many different primaries as possible (any names
    elsewhere). Deterministic: candidates are ``prefix-0``, ``prefix-1``..."""
    if topology.kind != "cluster":
        return [f"{prefix}-{i}" for i in range(count)]
    slot_map = topology.slot_map()

    def port_of(name: str) -> int:
        slot = clusterq.queue_slot(name)
        return next(port for start, end, port, _ in slot_map if start <= slot <= end)

    reachable = min(count, len({port for _, _, port, _ in slot_map}))
    chosen: list[str] = []
    ports: set[int] = set()
    for name in (f"{prefix}-{i}" for i in range(10_000)):
        port = port_of(name)
        if port in ports and len(ports) < reachable:
            continue  # still looking for a name on another primary
        chosen.append(name)
        ports.add(port)
        if len(chosen) == count:
            return chosen
    raise AssertionError("could not spread queue names over the cluster")


# --- processing --------------------------------------------------------------------------------------

def test_burst_worker_runs_jobs_of_several_queues_and_stores_their_results(url: str) -> None:
    high, low = Queue("high", url), Queue("low", url)
    adds = [high.enqueue("jobs.add", i, 10) for i in range(3)]
    echo = low.enqueue("jobs.echo", 1, "two", key=[3])
    failing = low.enqueue("jobs.fail", "no luck")

    worker = burst(url, ["high", "low"])

    assert worker.stats.processed == 5
    assert (worker.stats.finished, worker.stats.failed, worker.stats.lost) == (4, 1, 0)
    assert [job.return_value() for job in adds] == [10, 11, 12]
    assert echo.return_value() == {"args": [1, "two"], "kwargs": {"key": [3]}}
    assert all(status(job) == JobStatus.FINISHED for job in [*adds, echo])
    assert status(failing) == JobStatus.FAILED
    assert failing.exc_info.startswith("ValueError: no luck")
    assert failing.return_value() is None
    assert (high.count, low.count) == (0, 0)
    assert (high.finished_job_registry.count, high.failed_job_registry.count) == (3, 0)
    assert (low.finished_job_registry.count, low.failed_job_registry.count) == (1, 1)
    assert high.started_job_registry.count == low.started_job_registry.count == 0
    assert failing.id in low.failed_job_registry and echo.id in low.finished_job_registry


def test_worker_records_who_ran_a_job_and_how_often(url: str, qname: str) -> None:
    queue = Queue(qname, url)
    job = queue.enqueue("jobs.noop")

    worker = burst(url, qname, name="worker-that-ran-it")

    job.refresh()
    assert job.worker_name == "worker-that-ran-it"
    assert job.attempts == 1
    assert job.started_at is not None and job.ended_at is not None
    assert worker.stats.processed == 1


def test_finished_job_records_expire_as_result_ttl_says(url: str, qname: str) -> None:
    queue = Queue(qname, url)
    client = queue.connection
    gone = queue.enqueue("jobs.add", 1, 1, result_ttl=0)
    forever = queue.enqueue("jobs.add", 2, 2, result_ttl=-1)
    minute = queue.enqueue("jobs.add", 3, 3, result_ttl=60)
    default = queue.enqueue("jobs.add", 4, 4)

    burst(url, qname)

    assert not gone.exists()
    assert gone.id not in queue.finished_job_registry
    assert client.exists(gone.key) == 0
    assert forever.return_value() == 4
    assert client.pttl(forever.key) == -1
    assert client.zscore(queue.keys.finished, forever.id) == float("inf")
    assert minute.return_value() == 6
    assert 0 < client.pttl(minute.key) <= 60_000
    assert 60_000 < client.pttl(default.key) <= 500_000  # RQ's default: 500 s
    assert queue.finished_job_registry.count == 3


def test_failed_job_records_expire_as_failure_ttl_says(url: str, qname: str) -> None:
    queue = Queue(qname, url)
    client = queue.connection
    gone = queue.enqueue("jobs.fail", failure_ttl=0)
    minute = queue.enqueue("jobs.fail", failure_ttl=60)
    forever = queue.enqueue("jobs.fail", failure_ttl=-1)

    burst(url, qname)

    assert not gone.exists()
    assert 0 < client.pttl(minute.key) <= 60_000
    assert client.pttl(forever.key) == -1
    assert status(minute) == status(forever) == JobStatus.FAILED
    assert set(queue.failed_job_registry.get_job_ids()) == {minute.id, forever.id}


def test_worker_tries_queues_in_the_order_given(url: str, tmp_path: Path) -> None:
    order = tmp_path / "order"
    for name in ("low", "mid", "high"):  # enqueue the lowest priority first
        queue = Queue(name, url)
        for i in (1, 2):
            queue.enqueue("jobs.record", str(order), f"{name}-{i}")

    burst(url, ["high", "mid", "low"], max_batch=1, pool="solo")

    assert lines(order) == ["high-1", "high-2", "mid-1", "mid-2", "low-1", "low-2"]


def test_a_job_arriving_on_a_higher_queue_runs_before_the_rest_of_a_lower_one(url: str, tmp_path: Path) -> None:
    order = tmp_path / "order"
    low = Queue("low", url)
    low.enqueue("jobs.record", str(order), "low-1")
    # The second low job enqueues a high job: it must run before low-3.
    low.enqueue("jobs.enqueue_then_record", url, "high", str(order), "high-1", "low-2")
    low.enqueue("jobs.record", str(order), "low-3")

    burst(url, ["high", "low"], max_batch=1, pool="solo")

    assert lines(order) == ["low-1", "low-2", "high-1", "low-3"]


def test_one_worker_serves_five_queues_spread_over_the_cluster_without_crossslot(
    url: str, clusterq_topology: Any, caplog: pytest.LogCaptureFixture
) -> None:
    names = spread_queue_names(clusterq_topology, 5, "spread")
    if clusterq_topology.kind == "cluster":
        assert len(primaries_serving(clusterq_topology, names)) >= 3
    queues = [Queue(name, url) for name in names]
    for index, queue in enumerate(queues):
        queue.enqueue_many([queue.prepare_data("jobs.add", (index, i)) for i in range(200)])

    with caplog.at_level(logging.WARNING, logger="clusterq"):
        worker = burst(url, names)

    assert worker.stats.processed == 1000
    assert (worker.stats.finished, worker.stats.failed, worker.stats.lost) == (1000, 0, 0)
    for queue in queues:
        assert (queue.count, queue.started_job_registry.count) == (0, 0)
        assert (queue.finished_job_registry.count, queue.failed_job_registry.count) == (200, 0)
    assert queues[4].fetch_job(queues[4].finished_job_registry.get_job_ids(0, 1)[0]).return_value() >= 4
    assert not [r for r in caplog.records if "CROSSSLOT" in r.getMessage()]

    if clusterq_topology.kind == "cluster":
        assert_every_key_lives_in_its_queue_slot(clusterq_topology, names)


def assert_every_key_lives_in_its_queue_slot(topology: Any, names: list[str]) -> None:
    slots = {clusterq.queue_slot(name): name for name in names}
    assert len(slots) == len(names)
    seen_per_queue = dict.fromkeys(names, 0)
    for primary in topology.primaries():
        admin = primary.admin
        found = [k for k in admin.scan_iter(match="cq:*", count=1000)]
        queue_keys = [k for k in found if (k.decode() if isinstance(k, bytes) else k) not in (K.QUEUES, K.WORKERS)]
        pipe = admin.pipeline(transaction=False)
        for key in queue_keys:
            pipe.execute_command("CLUSTER KEYSLOT", key)
        server_slots = pipe.execute()
        for key, server_slot in zip(queue_keys, server_slots):
            slot = clusterq.key_slot(key)
            assert slot == int(server_slot), key
            assert slot in slots, f"{key!r} is in slot {slot}, which is no queue's slot"
            name = slots[slot]
            text = key.decode() if isinstance(key, bytes) else key
            assert text.startswith(K.QueueKeys(name).base + ":"), key
            seen_per_queue[name] += 1
    # Each queue has 200 finished job hashes plus its registry and stats keys, all in its one slot.
    assert all(count > 200 for count in seen_per_queue.values()), seen_per_queue


# --- bad input: the job fails with a reason that names the problem; the worker carries on ----------------

def _unknown_function(queue: Queue) -> tuple[Job, str]:
    return queue.enqueue("jobs.does_not_exist"), "has no attribute 'does_not_exist'"


def _unknown_module(queue: Queue) -> tuple[Job, str]:
    return queue.enqueue("no_such_module_here.run"), "module 'no_such_module_here' not found"


def _module_raising_on_import(queue: Queue) -> tuple[Job, str]:
    return (queue.enqueue("broken_module.never_reached"),
            "importing 'broken_module' raised RuntimeError: broken_module is broken on purpose")


def _not_a_function(queue: Queue) -> tuple[Job, str]:
    return queue.enqueue("jobs.MARKER_DIR"), "'jobs.MARKER_DIR' is a str, not a function"


def _wrong_arguments(queue: Queue) -> tuple[Job, str]:
    return queue.enqueue("jobs.add", 1, 2, 3), "wrong arguments for jobs.add"


def _missing_arguments(queue: Queue) -> tuple[Job, str]:
    return queue.enqueue("jobs.add", 1), "wrong arguments for jobs.add"


def _garbage_payload(queue: Queue) -> tuple[Job, str]:
    job = queue.enqueue("jobs.add", 1, 2)
    queue.connection.hset(job.key, "p", b"\x80\x81 not json {")
    return job, "DeserializationError: cannot decode the job's arguments"


def _payload_of_wrong_shape(queue: Queue) -> tuple[Job, str]:
    job = queue.enqueue("jobs.add", 1, 2)
    queue.connection.hset(job.key, "p", b'{"a": 1}')
    return job, "payload is not [args, kwargs]"


def _garbage_options(queue: Queue) -> tuple[Job, str]:
    job = queue.enqueue("jobs.add", 1, 2)
    queue.connection.hset(job.key, "o", b"{{{ not json")
    return job, "malformed job record: job options are not valid JSON"


def _options_of_wrong_type(queue: Queue) -> tuple[Job, str]:
    job = queue.enqueue("jobs.add", 1, 2)
    queue.connection.hset(job.key, "o", b'{"timeout": "soon"}')
    return job, "malformed job record: job options are malformed"


def _job_key_replaced_by_a_string(queue: Queue) -> tuple[Job, str]:
    job = queue.enqueue("jobs.add", 1, 2)
    queue.connection.delete(job.key)
    queue.connection.set(job.key, "not a hash")
    return job, "held a string, not a hash"


def _unserializable_result(queue: Queue) -> tuple[Job, str]:
    return queue.enqueue("jobs.unserializable"), "SerializationError: the job's return value cannot be stored"


def _other_serializer(queue: Queue) -> tuple[Job, str]:
    job = queue.enqueue("jobs.add", 1, 2)
    queue.connection.hset(job.key, "o", b'{"ser": "pickle"}')
    return job, "written with the 'pickle' serializer but this worker decodes 'json'"


def _function_outside_the_allowlist(queue: Queue) -> tuple[Job, str]:
    return queue.enqueue("os.system", "echo should never run"), "'os.system' is not in this worker's allowlist"


BAD_INPUT = {
    "unknown function": _unknown_function,
    "unknown module": _unknown_module,
    "module raising on import": _module_raising_on_import,
    "not a function": _not_a_function,
    "too many arguments": _wrong_arguments,
    "missing argument": _missing_arguments,
    "undecodable payload": _garbage_payload,
    "payload of the wrong shape": _payload_of_wrong_shape,
    "garbage options": _garbage_options,
    "options of the wrong type": _options_of_wrong_type,
    "job key replaced by a string": _job_key_replaced_by_a_string,
    "unserializable result": _unserializable_result,
    "other serializer": _other_serializer,
    "function outside the allowlist": _function_outside_the_allowlist,
}


@pytest.mark.parametrize("make_bad_job", BAD_INPUT.values(), ids=list(BAD_INPUT))
def test_bad_job_fails_with_a_reason_naming_the_problem_and_the_worker_carries_on(
    url: str, qname: str, make_bad_job: Callable[[Queue], tuple[Job, str]]
) -> None:
    queue = Queue(qname, url)
    before = queue.enqueue("jobs.add", 20, 1)
    bad, reason = make_bad_job(queue)
    after = queue.enqueue("jobs.add", 40, 2)

    worker = burst(url, qname, allow=["jobs.*", "broken_module.*", "no_such_module_here.*"])

    assert status(bad) == JobStatus.FAILED
    assert reason in bad.exc_info
    assert bad.id in queue.failed_job_registry
    assert (before.return_value(), after.return_value()) == (21, 42)
    assert queue.failed_job_registry.count == 1
    assert queue.finished_job_registry.count == 2
    assert queue.count == 0 and queue.started_job_registry.count == 0
    assert worker.stats.failed == (0 if make_bad_job is _job_key_replaced_by_a_string else 1)


def test_allowlist_refuses_before_importing_anything(url: str, qname: str) -> None:
    queue = Queue(qname, url)
    refused = queue.enqueue("broken_module.never_reached")
    allowed = queue.enqueue("jobs.add", 1, 1)

    burst(url, qname, allow=["jobs.*"])

    assert "not in this worker's allowlist ['jobs.*']" in refused.exc_info
    assert "broken on purpose" not in refused.exc_info
    assert allowed.return_value() == 2


def test_allowlist_cannot_be_bypassed_through_a_module_that_an_allowed_module_imports(
    url: str, qname: str, tmp_path: Path
) -> None:
    precious = tmp_path / "precious"
    precious.write_text("keep me")
    queue = Queue(qname, url)
    bypass = queue.enqueue("jobs:os.remove", str(precious))  # jobs.py imports os
    allowed = queue.enqueue("jobs:add", 1, 2)

    burst(url, qname, allow=["jobs:*"])

    assert precious.exists()
    assert status(bypass) == JobStatus.FAILED
    assert "'jobs:os.remove' reaches into another module" in bypass.exc_info
    assert allowed.return_value() == 3


def test_job_running_past_its_time_limit_fails_with_time_limit_exceeded(url: str, qname: str) -> None:
    queue = Queue(qname, url)
    slow = queue.enqueue("jobs.sleep", 30, job_timeout=0.5)
    quick = queue.enqueue("jobs.add", 1, 2)

    worker = burst(url, qname)

    assert status(slow) == JobStatus.FAILED
    assert slow.exc_info.startswith("JobTimeoutError: time limit exceeded")
    assert quick.return_value() == 3
    assert (worker.stats.finished, worker.stats.failed) == (1, 1)


def test_worker_outside_the_main_thread_warns_that_time_limits_are_not_enforced(
    url: str, qname: str, caplog: pytest.LogCaptureFixture
) -> None:
    worker = background_worker(url, qname, name="threaded", pool="solo")
    with caplog.at_level(logging.WARNING, logger="clusterq.worker"), running(worker):
        wait_for(lambda: [w for w in clusterq.list_workers(url) if w.name == "threaded"], "registration")
    assert any("time limits (SIGALRM) are not enforced" in r.getMessage() for r in caplog.records)


def test_worker_default_timeout_applies_to_jobs_without_their_own(url: str, qname: str) -> None:
    queue = Queue(qname, url)
    slow = queue.enqueue("jobs.sleep", 30)

    burst(url, qname, default_timeout_s=0.5)

    assert "time limit exceeded" in slow.exc_info


# --- leases --------------------------------------------------------------------------------------------

def lease_as_dead_worker(queue: Queue, lease_ms: int = 500, worker: str = "dead-worker") -> T.LeasedJob:
    """Lease one job the way a worker does, then never complete it (the worker 'died')."""
    reply = queue.store.run(T.lease_call(queue.keys, 1, lease_ms, worker, 60_000))
    _, leased = T.parse_lease(queue.name, reply)
    assert len(leased) == 1
    return leased[0]


def requeue_when_expired(queue: Queue, max_attempts: int = 3) -> tuple[int, int]:
    """Run the maintenance transition until the expired lease is recovered; return (requeued, failed)."""
    call = T.requeue_expired_call(queue.keys, 100, max_attempts, 60_000)

    def recovered() -> tuple[int, int] | None:
        reply = TR.parse_recover(queue.store.run(call))
        return (reply.requeued, reply.abandoned) if reply.requeued or reply.abandoned else None

    return wait_for(recovered, "the lease to expire")


def test_job_leased_by_a_dead_worker_is_requeued_by_maintenance_and_runs(url: str, qname: str,
                                                                          tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    queue = Queue(qname, url)
    job = queue.enqueue("jobs.record", str(marker), "once")
    lease_as_dead_worker(queue)
    assert status(job) == JobStatus.STARTED and queue.count == 0

    worker = background_worker(url, qname, maintenance_interval_s=0.1, idle_poll_s=0.2)
    with running(worker):
        wait_for(lambda: status(job) == JobStatus.FINISHED, "the recovered job to finish")

    job.refresh()
    assert lines(marker) == ["once"]
    assert job.attempts == 2
    assert job.worker_name == worker.name
    assert queue.started_job_registry.count == 0
    assert queue.finished_job_registry.count == 1


def test_job_whose_leases_keep_expiring_fails_as_abandoned_after_max_attempts(url: str, qname: str) -> None:
    queue = Queue(qname, url)
    job = queue.enqueue("jobs.noop")
    lease_as_dead_worker(queue, worker="dead-1")
    assert requeue_when_expired(queue, max_attempts=2) == (1, 0)
    lease_as_dead_worker(queue, worker="dead-2")
    assert status(job) == JobStatus.STARTED

    # A real worker's maintenance finds the second expired lease: the limit (2) is reached.
    worker = background_worker(url, qname, max_attempts=2, maintenance_interval_s=0.1, idle_poll_s=0.2)
    with running(worker):
        wait_for(lambda: status(job) == JobStatus.FAILED, "the job to fail as abandoned")

    assert job.exc_info.startswith("abandoned")
    assert "dead-2" in job.exc_info and "(2)" in job.exc_info
    assert job.attempts == 2
    assert worker.stats.processed == 0
    assert job.id in queue.failed_job_registry
    assert queue.started_job_registry.count == 0 and queue.count == 0


def test_a_jobs_own_max_attempts_wins_over_the_workers(url: str, qname: str) -> None:
    queue = Queue(qname, url)
    job = queue.enqueue("jobs.noop", max_attempts=1)
    lease_as_dead_worker(queue)

    assert requeue_when_expired(queue, max_attempts=5) == (0, 1)
    assert job.get_status() == JobStatus.FAILED
    assert "attempt limit (1)" in job.exc_info


def test_stale_completion_is_refused_and_does_not_overwrite_the_newer_attempt(url: str, qname: str) -> None:
    queue = Queue(qname, url)
    job = queue.enqueue("jobs.add", 1, 2)
    old = lease_as_dead_worker(queue, worker="slow-worker")
    requeue_when_expired(queue)
    new = lease_as_dead_worker(queue, lease_ms=60_000, worker="new-worker")
    assert (old.token, new.token) == (1, 2)

    def complete(leased: T.LeasedJob, state: str, data: bytes) -> list[int]:
        outcome = T.Outcome(leased.id, leased.token, state, data, 60_000)
        return [int(code) for code in queue.store.run(T.complete_call(queue.keys, [outcome]))]

    assert complete(old, "failed", b"stale failure") == [0]
    assert status(job) == JobStatus.STARTED
    assert complete(new, "finished", b"3") == [1]
    assert complete(old, "finished", b"999") == [0]
    assert job.return_value() == 3
    assert job.exc_info is None
    assert job.worker_name == "new-worker"
    assert queue.finished_job_registry.count == 1 and queue.failed_job_registry.count == 0


def test_worker_drops_the_outcome_of_a_job_whose_lease_it_lost(url: str, qname: str) -> None:
    queue = Queue(qname, url)
    job = queue.enqueue("jobs.cancel_self", qname, "self-canceling", url, job_id="self-canceling")
    after = queue.enqueue("jobs.add", 2, 2)

    worker = burst(url, qname)

    assert status(job) == JobStatus.CANCELED
    assert job.return_value() is None
    assert worker.stats.lost == 1
    assert after.return_value() == 4
    assert queue.finished_job_registry.count == 1
    assert job.id in queue.canceled_job_registry


def test_heartbeat_keeps_a_job_longer_than_its_lease_from_running_twice(url: str, qname: str,
                                                                         tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    queue = Queue(qname, url)
    job = queue.enqueue("jobs.sleep_then_record", 2.0, str(marker), "once")

    busy = background_worker(url, qname, lease_s=1.0)  # heartbeat every 1/3 s
    watcher = background_worker(url, qname, lease_s=1.0, maintenance_interval_s=0.05, idle_poll_s=0.05)
    with running(busy):
        wait_for(lambda: status(job) == JobStatus.STARTED, "the job to start")
        with running(watcher):
            wait_for(lambda: status(job) == JobStatus.FINISHED, "the job to finish")

    job.refresh()
    assert lines(marker) == ["once"]
    assert job.attempts == 1
    assert job.worker_name == busy.name
    assert watcher.stats.processed == 0


def test_stopping_a_worker_hands_back_the_jobs_it_prefetched(url: str, qname: str, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    queue = Queue(qname, url)
    # Thirty instant jobs teach the worker to lease in batches; the slow one then shares its batch.
    # With a 10 s batch target, instant jobs grow batches as 1, 1, 1, 1, 2, 3, 7, 10, 10...: jobs 27-36
    # form one batch however noisy the machine (a job would have to take ~1 s to change that).
    warm_up = queue.enqueue_many([queue.prepare_data("jobs.noop") for _ in range(30)])
    slow = queue.enqueue("jobs.record_then_sleep", str(marker), "slow", 1.0)
    rest = queue.enqueue_many([queue.prepare_data("jobs.noop") for _ in range(9)])

    worker = background_worker(url, qname, max_batch=10, batch_target_s=10.0, pool="solo")
    with running(worker):
        wait_for(lambda: lines(marker), "the slow job to start")
        prefetched = [job for job in rest if status(job) == JobStatus.STARTED]
        assert prefetched, "precondition: the worker leased jobs beyond the one it runs"
        worker.request_stop()

    assert {status(job) for job in warm_up} == {JobStatus.FINISHED}
    assert status(slow) == JobStatus.FINISHED
    assert [status(job) for job in rest] == [JobStatus.QUEUED] * 9
    assert [Job.fetch(job.handle, url).attempts for job in rest] == [0] * 9
    assert queue.get_job_ids() == [job.id for job in rest]
    assert queue.started_job_registry.count == 0


# --- registration ----------------------------------------------------------------------------------

def test_running_worker_is_listed_with_its_queues_and_unlisted_when_it_stops(url: str) -> None:
    name = f"listed-{uuid.uuid4().hex[:6]}"
    worker = background_worker(url, ["alpha", "beta"], name=name, idle_poll_s=0.2)
    assert name not in [w.name for w in clusterq.list_workers(url)]
    with running(worker):
        listed = wait_for(lambda: [w for w in clusterq.list_workers(url) if w.name == name], "registration")
        assert listed[0].queues == ["alpha", "beta"]
        assert listed[0].pid > 0 and listed[0].host
        assert listed[0].last_heartbeat_ms > 0

    assert name not in [w.name for w in clusterq.list_workers(url)]
    client = connect(url)
    assert client.exists(K.worker(name)) == 0
    assert client.zscore(K.WORKERS, name) is None


def test_registering_worker_drops_registrations_of_workers_that_died(url: str, qname: str) -> None:
    client = connect(url)
    client.zadd(K.WORKERS, {"died-long-ago": 1, "died-a-minute-ago": int((time.time() - 60) * 1000)})
    alive = int((time.time() + 600) * 1000)
    client.zadd(K.WORKERS, {"still-alive": alive})

    burst(url, qname)

    assert {m.decode() for m in client.zrange(K.WORKERS, 0, -1)} == {"still-alive"}


def test_worker_refuses_no_queues_and_duplicate_queues(url: str) -> None:
    with pytest.raises(ValueError, match="at least one queue"):
        Worker([], url)
    with pytest.raises(ValueError, match="queue listed twice"):
        Worker(["a", "b", "a"], url)


def test_worker_accepts_queue_objects_and_uses_their_connection(url: str, qname: str) -> None:
    queue = Queue(qname, url)
    job = queue.enqueue("jobs.add", 5, 5)

    worker = Worker([queue], install_signal_handlers=False)
    worker.work(burst=True)

    assert worker.connection is queue.connection
    assert job.return_value() == 10


def test_max_jobs_stops_the_worker_after_that_many_jobs(url: str, qname: str) -> None:
    queue = Queue(qname, url)
    jobs = [queue.enqueue("jobs.noop") for _ in range(5)]

    worker = Worker(qname, url, install_signal_handlers=False)
    processed = worker.work(max_jobs=2)

    assert processed == 2
    assert [status(job) for job in jobs] == [JobStatus.FINISHED] * 2 + [JobStatus.QUEUED] * 3
    assert queue.count == 3 and queue.started_job_registry.count == 0


def test_worker_on_an_unreachable_server_fails_at_start_with_a_clear_error() -> None:
    # A cluster URL fails fast; a standalone one takes redis-py's retries (see the CLI tests).
    with pytest.raises(clusterq.ConnectionFailed, match=r"cannot reach Redis Cluster at 127\.0\.0\.1:1\b"):
        Worker("q", "redis+cluster://127.0.0.1:1")
