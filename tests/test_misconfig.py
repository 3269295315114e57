"""A misconfigured server: an eviction policy that can drop jobs is reported loudly, and a server at
``maxmemory`` refuses new jobs with a clear error while the jobs it holds stay whole. On every topology.

These tests change the settings of the session's servers with ``CONFIG SET`` (the harness's own admin
client, never clusterq) and put them back before they end.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import redis

from clusterq import JobStatus, Queue, ServerError, Worker
from clusterq.api import queue as queue_module
from clusterq.api import queue_core
from clusterq.cli.main import render_info
from clusterq.state import store as T
from clusterq.testing import Topology
from clusterq.testing.servers import ServerProcess

pytestmark = pytest.mark.compat  # ACLs and maxmemory are the engine's: also run on Valkey

PAYLOAD = "x" * 20_000


def primaries(topology: Topology) -> list[ServerProcess]:
    if topology.kind == "cluster":
        return topology.primaries()  # type: ignore[attr-defined,no-any-return]
    if topology.kind == "sentinel":
        return [topology.primary]  # type: ignore[attr-defined]
    return [topology.server]  # type: ignore[attr-defined]


def primary_of(topology: Topology, queue: Queue) -> ServerProcess:
    if topology.kind == "cluster":
        return topology.node_for_slot(queue.slot)  # type: ignore[attr-defined,no-any-return]
    return primaries(topology)[0]


@contextmanager
def configured(node: ServerProcess, **settings: Any) -> Iterator[None]:
    """CONFIG SET on one node for the block (names with underscores for dashes), then restore."""
    names = {name.replace("_", "-"): str(value) for name, value in settings.items()}
    before = {name: node.admin.config_get(name)[name] for name in names}
    try:
        for name, value in names.items():
            node.admin.config_set(name, value)
        yield
    finally:
        for name, value in before.items():
            node.admin.config_set(name, value)


def wait_for(check: Callable[[], Any], what: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.02)


def burst(url: str, queue: str) -> Worker:
    worker = Worker(queue, url, pool="solo", install_signal_handlers=False)
    worker.work(burst=True)
    return worker


def policy_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.levelno == logging.WARNING and "maxmemory-policy" in r.getMessage()]


# --- eviction policy -------------------------------------------------------------------------------------

@pytest.mark.parametrize("policy", ["allkeys-lru", "volatile-ttl"])
def test_worker_warns_loudly_at_start_when_a_primary_may_evict_and_info_shows_it(
    url: str, qname: str, clusterq_topology: Topology, caplog: pytest.LogCaptureFixture, policy: str
) -> None:
    queue = Queue(qname, url)
    job = queue.enqueue("jobs.add", 1, 2)
    careless = primaries(clusterq_topology)[-1]  # on a cluster: one primary of three, checked like the rest
    with configured(careless, maxmemory_policy=policy), caplog.at_level(logging.WARNING, "clusterq.worker"):
        burst(url, qname)
        info = render_info(url)

    assert job.return_value() == 3, "a warning, not a refusal: the worker runs"
    [warning] = policy_warnings(caplog)  # one line, for the one primary that evicts
    assert warning.startswith(f"Redis at {careless.address}")
    assert f"maxmemory-policy {policy}" in warning and "vanish" in warning and "noeviction" in warning
    assert f"WARNING: {warning}" in info.splitlines()

    caplog.clear()
    with caplog.at_level(logging.WARNING, "clusterq.worker"):
        burst(url, qname)
    assert policy_warnings(caplog) == []
    assert "WARNING" not in render_info(url)


# --- maxmemory ---------------------------------------------------------------------------------------------

@contextmanager
def full(topology: Topology, queue: Queue, margin: int = 1_000_000) -> Iterator[tuple[ServerProcess, int]]:
    """Fill the queue's primary with jobs until it refuses one; yield (primary, jobs written).
    The maxmemory setting is put back (and the server usable again) when the block ends."""
    node = primary_of(topology, queue)
    queue.enqueue("jobs.noop")  # registers the queue (a write outside scripts) while there is room
    used = int(node.info("memory")["used_memory"])
    with configured(node, maxmemory=used + margin, maxmemory_policy="noeviction"):
        written = 1
        with pytest.raises(ServerError) as refused:
            for _ in range(10_000):
                queue.enqueue_many([queue.prepare_data("jobs.echo", (PAYLOAD,)) for _ in range(5)])
                written += 5
        message = str(refused.value)
        assert f"enqueue to queue {queue.name!r} failed" in message
        assert "the server reached maxmemory" in message
        # Memory dips back under the limit once the refused call's arguments are freed: put the limit
        # below what is used, so that every write is refused from here on, however small.
        node.admin.config_set("maxmemory", int(node.info("memory")["used_memory"]) - 500_000)
        yield node, written


def test_a_full_server_refuses_enqueue_clearly_and_keeps_every_job_whole_until_memory_is_freed(
    url: str, qname: str, clusterq_topology: Topology
) -> None:
    queue = Queue(qname, url)
    with full(clusterq_topology, queue) as (_, written):
        assert queue.count == written
        for job in queue.get_jobs(0, written):
            assert job.get_status() == JobStatus.QUEUED and job.func_name in ("jobs.noop", "jobs.echo")
        with pytest.raises(ServerError, match="maxmemory"):
            queue.enqueue_at(queue_module.datetime.now(), "jobs.noop")
        assert queue.count == written and queue.scheduled_job_registry.count == 0
        info = render_info(url)  # reads still work
        assert qname in info

    worker = burst(url, qname)
    assert worker.stats.processed == written and worker.stats.failed == 0
    assert queue.finished_job_registry.count == written and queue.count == 0


def test_enqueue_many_on_a_filling_server_writes_whole_script_calls_and_says_how_many(
    url: str, qname: str, clusterq_topology: Topology, monkeypatch: pytest.MonkeyPatch
) -> None:
    queue = Queue(qname, url)
    with full(clusterq_topology, queue) as (node, written):
        # Room for about one call of 5 jobs: the first call starts below maxmemory and runs whole (a
        # script is never stopped half-way), the second starts above it and is refused before it runs.
        used = int(node.info("memory")["used_memory"])
        monkeypatch.setattr(queue_core, "ENQUEUE_CHUNK", 5)
        with configured(node, maxmemory=used + 400_000):
            with pytest.raises(ServerError) as refused:
                queue.enqueue_many([queue.prepare_data("jobs.echo", (PAYLOAD * 2,)) for _ in range(100)])
            created = queue.count - written
            assert 0 < created < 100 and created % 5 == 0, "whole calls of 5 jobs, never part of one"
            assert f"created {created} job(s); no job is half-written" in str(refused.value)
    assert burst(url, qname).stats.failed == 0


def test_on_a_full_server_leases_are_kept_and_jobs_can_be_deleted_but_nothing_new_starts(
    url: str, qname: str, clusterq_topology: Topology
) -> None:
    queue = Queue(qname, url)
    held = queue.enqueue("jobs.noop")
    leased = queue.store.run(T.lease_call(queue.keys, 1, 60_000, "w-test", 60_000))
    token = T.parse_lease(qname, leased)[1][0].token
    with full(clusterq_topology, queue):
        # refused before they run (nothing changes): new work and outcomes that add data
        before = queue.count
        with pytest.raises(redis.OutOfMemoryError):
            queue.store.run(T.lease_call(queue.keys, 1, 60_000, "w-test", 60_000))
        with pytest.raises(redis.OutOfMemoryError):
            queue.store.run(T.complete_call(queue.keys, [T.Outcome(held.id, token, "finished", PAYLOAD.encode(),
                                                                   60_000)]))
        assert queue.count == before and held.get_status() == JobStatus.STARTED
        # allowed (flags=allow-oom): heartbeats, hand-backs, stop requests and whatever frees memory
        assert queue.store.run(T.extend_call(queue.keys, [(held.id, token)], 60_000)) == [1]
        held.stop("the server is full")
        assert queue.connection.hget(queue.keys.job(held.id), "sp") == b"the server is full"
        victim = queue.get_jobs(0, 1)[0]
        victim.delete()
        assert not victim.exists() and queue.count == before - 1
        assert queue.store.run(T.release_call(queue.keys, [(held.id, token)])) == 1
        assert held.get_status() == JobStatus.QUEUED
        assert queue.count == before, "the released job is back"
        queue.empty()
        assert queue.count == 0 and not held.exists()


def test_a_job_finishing_while_the_server_is_full_keeps_its_lease_and_is_recorded_once_memory_is_freed(
    url: str, qname: str, clusterq_topology: Topology, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    release = tmp_path / "release"
    queue = Queue(qname, url)
    job = queue.enqueue("jobs.wait_for_file", str(release))
    # A one-second lease: the full server lasts several leases, so only heartbeats that still work on a
    # full server (extend.lua has allow-oom) keep the job from being taken back and run again.
    worker = Worker(qname, url, pool="thread", concurrency=1, lease_s=1.0, maintenance_interval_s=0.2,
                    install_signal_handlers=False)
    thread = threading.Thread(target=worker.work, daemon=True)
    with caplog.at_level(logging.WARNING, "clusterq.worker"):
        thread.start()
        try:
            wait_for(lambda: job.get_status() == JobStatus.STARTED, "the job to start")
            with full(clusterq_topology, queue):
                release.touch()  # the job ends now; its outcome meets a full server
                wait_for(lambda: any("Redis is at maxmemory" in r.getMessage() for r in caplog.records),
                         "the worker to say the server is full")
                deadline = queue.connection.zscore(queue.keys.active, job.id)
                wait_for(lambda: (queue.connection.zscore(queue.keys.active, job.id) or 0) > deadline + 2000,
                         "heartbeats to extend the lease by two more lease lengths on the full server")
                assert job.get_status() == JobStatus.STARTED, "nothing recorded, nothing lost"
            wait_for(lambda: job.get_status() == JobStatus.FINISHED, "the outcome to be recorded")
        finally:
            worker.request_stop()
            thread.join(30)
    assert job.return_value() == "released"
    assert job.attempts == 1, "its lease held: the job did not run twice"
    assert worker.stats.lost == 0
