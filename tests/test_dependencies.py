"""Dependencies on every topology: ``depends_on`` (a job, a handle, an id, a ``Dependency``, a list),
children waiting in the deferred registry, released exactly once when their parents end, across queues
that live on different cluster nodes; failed, canceled and deleted parents; replays that change nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest
from redis.cluster import RedisCluster

import jobs
from clusterq import Dependency, DuplicateJob, Job, JobStatus, Queue, Worker
from clusterq.state import keys as K
from clusterq.state import store as T
from clusterq.state.outbox import DEPENDENTS_BATCH, FAULT_ENV, Forwarder, ended_entry, registration_entry
from worker_thread import running

pytestmark = pytest.mark.compat  # also run against the second server engine

DEADLINE_S = 60.0  # generous: only bounds a failing test, never asserts speed


def _worker(queues: list[Queue], **options: object) -> Worker:
    options.setdefault("pool", "thread")
    options.setdefault("concurrency", 4)
    return Worker(queues, queues[0].connection, install_signal_handlers=False, **options)  # type: ignore[arg-type]


def wait_for(predicate, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + DEADLINE_S
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def queues_on_different_nodes(url: str, prefix: str, count: int) -> list[Queue]:
    """``count`` queues whose slots are served by different primaries on a cluster (any names elsewhere)."""
    first = Queue(f"{prefix}-0", url)
    client = first.connection
    if not isinstance(client, RedisCluster):
        return [first] + [Queue(f"{prefix}-{i}", url) for i in range(1, count)]
    found: dict[str, Queue] = {}
    i = 0
    while len(found) < count:
        name = f"{prefix}-{i}"
        node = client.get_node_from_key(K.QueueKeys(name).base).name
        found.setdefault(node, Queue(name, url))
        i += 1
    return list(found.values())


# --- same queue, other queues -------------------------------------------------------------------------

def test_a_child_waits_deferred_until_its_parent_finishes_then_runs_once(url: str, qname: str,
                                                                         tmp_path: Path) -> None:
    q = Queue(qname, url)
    out = tmp_path / "ran"
    parent = q.enqueue(jobs.sleep_then_record, 0.3, str(out), "parent")
    child = q.enqueue(jobs.record, str(out), "child", depends_on=parent)
    assert child.get_status() == JobStatus.DEFERRED and child.is_deferred
    assert child.id in q.deferred_job_registry and q.deferred_job_registry.count == 1
    assert q.count == 1  # only the parent waits in the queue
    with running(_worker([q])):
        wait_for(lambda: child.get_status() == JobStatus.FINISHED, "the child to finish")
    assert lines(out) == ["parent", "child"]
    assert q.deferred_job_registry.count == 0
    # Nothing left behind: no outbox intent, no dependents set.
    assert q.connection.zcard(q.keys.outbox) == 0
    assert q.connection.exists(q.keys.dependents(parent.id)) == 0


def test_a_child_in_a_queue_on_another_node_is_released_when_its_parent_finishes(
        url: str, qname: str, tmp_path: Path) -> None:
    parents_q, children_q = queues_on_different_nodes(url, qname, 2)
    out = tmp_path / "ran"
    parent = parents_q.enqueue(jobs.sleep_then_record, 0.2, str(out), "parent")
    by_job = children_q.enqueue(jobs.record, str(out), "by-job", depends_on=parent)
    by_handle = children_q.enqueue(jobs.record, str(out), "by-handle", depends_on=parent.handle)
    by_dependency = children_q.enqueue(jobs.record, str(out), "by-dependency",
                                       depends_on=Dependency(jobs=[parent]))
    children = [by_job, by_handle, by_dependency]
    assert all(c.get_status() == JobStatus.DEFERRED for c in children)
    with running(_worker([children_q])):  # a worker of the children's queue only: nothing runs yet
        time.sleep(0.5)
        assert all(c.get_status() == JobStatus.DEFERRED for c in children)
    with running(_worker([parents_q, children_q])):
        wait_for(lambda: all(c.get_status() == JobStatus.FINISHED for c in children), "the children")
    ran = lines(out)
    assert ran[0] == "parent" and sorted(ran[1:]) == ["by-dependency", "by-handle", "by-job"]
    for q in (parents_q, children_q):
        assert q.connection.zcard(q.keys.outbox) == 0


def test_a_child_of_parents_in_three_queues_runs_after_all_of_them(url: str, qname: str,
                                                                   tmp_path: Path) -> None:
    qs = queues_on_different_nodes(url, qname, 3)
    out = tmp_path / "ran"
    parents = [q.enqueue(jobs.sleep_then_record, 0.1 * i, str(out), f"p{i}") for i, q in enumerate(qs)]
    child = qs[0].enqueue(jobs.record, str(out), "child", depends_on=[parents[0], parents[1].handle,
                                                                      Dependency([parents[2]])])
    # Run two parents only: the child still waits for the third.
    with running(_worker(qs[:2])):
        wait_for(lambda: parents[0].is_finished and parents[1].is_finished, "two parents")
        time.sleep(0.3)
        assert child.get_status() == JobStatus.DEFERRED
    with running(_worker(qs)):
        wait_for(lambda: child.get_status() == JobStatus.FINISHED, "the child")
    assert lines(out)[-1] == "child" and lines(out).count("child") == 1


def test_a_parent_that_already_finished_releases_its_child_at_enqueue(url: str, qname: str) -> None:
    parents_q, children_q = queues_on_different_nodes(url, qname, 2)
    parent = parents_q.enqueue(jobs.add, 1, 2)
    _worker([parents_q]).work(burst=True)
    assert parent.is_finished
    child = children_q.enqueue(jobs.add, 3, 4, depends_on=parent)
    assert child.get_status() == JobStatus.QUEUED
    assert children_q.count == 1 and children_q.deferred_job_registry.count == 0


def test_a_chain_across_queues_runs_in_order(url: str, qname: str, tmp_path: Path) -> None:
    qs = queues_on_different_nodes(url, qname, 3)
    out = tmp_path / "ran"
    a = qs[0].enqueue(jobs.record, str(out), "a")
    b = qs[1].enqueue(jobs.record, str(out), "b", depends_on=a)
    c = qs[2].enqueue(jobs.record, str(out), "c", depends_on=b)
    with running(_worker(list(reversed(qs)))):
        wait_for(lambda: c.get_status() == JobStatus.FINISHED, "the end of the chain")
    assert lines(out) == ["a", "b", "c"]


def test_enqueue_at_front_puts_the_released_child_at_the_head_of_its_queue(url: str, qname: str) -> None:
    parents_q, children_q = queues_on_different_nodes(url, qname, 2)
    parent = parents_q.enqueue(jobs.add, 1, 2)
    child = children_q.enqueue(jobs.add, 0, 0, depends_on=Dependency([parent], enqueue_at_front=True))
    others = [children_q.enqueue(jobs.add, i, i) for i in range(3)]
    _worker([parents_q]).work(burst=True)
    assert child.get_status() == JobStatus.QUEUED
    assert children_q.get_job_ids() == [child.id] + [o.id for o in others]


# --- failures, cancel, delete -------------------------------------------------------------------------

def test_a_failed_parent_cancels_its_child_with_a_reason_naming_the_parent(url: str, qname: str) -> None:
    parents_q, children_q = queues_on_different_nodes(url, qname, 2)
    parent = parents_q.enqueue(jobs.fail, "no")
    child = children_q.enqueue(jobs.add, 1, 2, depends_on=parent)
    grandchild = parents_q.enqueue(jobs.add, 1, 2, depends_on=child)
    tolerant = children_q.enqueue(jobs.add, 5, 5, depends_on=Dependency([parent], allow_failure=True))
    with running(_worker([parents_q, children_q])):
        wait_for(lambda: tolerant.get_status() == JobStatus.FINISHED, "the child that allows failure")
        wait_for(lambda: grandchild.get_status() == JobStatus.CANCELED, "the cancel to cascade")
    assert child.get_status() == JobStatus.CANCELED
    assert parent.handle in (child.exc_info or "") and "failed" in (child.exc_info or "")
    assert child.id in children_q.canceled_job_registry
    assert child.id not in children_q.deferred_job_registry
    assert child.handle in (grandchild.exc_info or "")
    assert tolerant.return_value() == 10


def test_canceling_a_parent_cancels_its_children_or_releases_them_when_asked(url: str, qname: str) -> None:
    parents_q, children_q = queues_on_different_nodes(url, qname, 2)
    first, second = parents_q.enqueue(jobs.add, 1, 1), parents_q.enqueue(jobs.add, 2, 2)
    canceled_child = children_q.enqueue(jobs.add, 1, 2, depends_on=first)
    released_child = children_q.enqueue(jobs.add, 1, 2, depends_on=second)
    first.cancel()
    assert canceled_child.get_status() == JobStatus.CANCELED
    assert first.handle in (canceled_child.exc_info or "") and "canceled" in (canceled_child.exc_info or "")
    second.cancel(enqueue_dependents=True)
    assert released_child.get_status() == JobStatus.QUEUED
    assert children_q.count == 1


def test_deleting_a_parent_cancels_its_children_or_deletes_them_when_asked(url: str, qname: str) -> None:
    parents_q, children_q = queues_on_different_nodes(url, qname, 2)
    first, second = parents_q.enqueue(jobs.add, 1, 1), parents_q.enqueue(jobs.add, 2, 2)
    canceled_child = children_q.enqueue(jobs.add, 1, 2, depends_on=first)
    deleted_child = children_q.enqueue(jobs.add, 1, 2, depends_on=second)
    first.delete()
    assert canceled_child.get_status() == JobStatus.CANCELED
    assert "deleted" in (canceled_child.exc_info or "")
    second.delete(delete_dependents=True)
    assert deleted_child.get_status() is None
    assert children_q.deferred_job_registry.count == 0


def test_canceling_or_deleting_a_deferred_child_takes_it_out_of_the_deferred_registry(url: str, qname: str) -> None:
    q = Queue(qname, url)
    parent = q.enqueue(jobs.add, 1, 1)
    first, second = (q.enqueue(jobs.add, i, i, depends_on=parent) for i in range(2))
    first.cancel()
    second.delete()
    assert q.deferred_job_registry.count == 0
    assert first.get_status() == JobStatus.CANCELED
    _worker([q]).work(burst=True)
    assert parent.is_finished and first.get_status() == JobStatus.CANCELED and second.get_status() is None


def test_a_parent_with_no_record_cancels_the_child_and_says_so(url: str, qname: str) -> None:
    q = Queue(qname, url)
    child = q.enqueue(jobs.add, 1, 2, depends_on=f"{q.name}-elsewhere/missing")
    assert child.get_status() == JobStatus.CANCELED
    assert "missing" in (child.exc_info or "") and "deleted" in (child.exc_info or "")


# --- idempotence, input ---------------------------------------------------------------------------------

def test_replaying_outbox_intents_changes_nothing_the_second_time(url: str, qname: str) -> None:
    parents_q, children_q = queues_on_different_nodes(url, qname, 2)
    first, second = parents_q.enqueue(jobs.add, 1, 1), parents_q.enqueue(jobs.add, 2, 2)
    child = children_q.enqueue(jobs.add, 1, 2, depends_on=[first, second])
    forwarder = Forwarder(parents_q.store, 60_000)
    # The parent's end is told three times (two replays of the same intent): the child counts it once.
    finished = ended_entry("finished", first.id)
    for _ in range(3):
        parents_q.store.run(T.register_call(parents_q.keys, f"j\t{child.handle}", [first.id]))
        parents_q.connection.zadd(parents_q.keys.outbox, {finished: 1})
        assert forwarder.forward([(parents_q.name, finished)]) == 1
    assert child.get_status() == JobStatus.DEFERRED  # still waiting for the second parent
    # The registration intent replayed: registering again with a waiting parent is harmless.
    again = registration_entry(second.handle, child.id)
    children_q.connection.zadd(children_q.keys.outbox, {again: 1})
    assert forwarder.forward([(children_q.name, again)]) == 1
    _worker([parents_q]).work(burst=True)
    assert child.get_status() == JobStatus.QUEUED
    assert children_q.count == 1
    assert children_q.connection.zcard(children_q.keys.outbox) == 0


def test_depends_on_refuses_what_is_not_a_job_and_enqueue_in_refuses_it(url: str, qname: str) -> None:
    q = Queue(qname, url)
    with pytest.raises(TypeError, match="depends_on takes jobs"):
        q.enqueue(jobs.add, 1, 2, depends_on=[42])
    with pytest.raises(ValueError, match="at least one job"):
        Dependency(jobs=[])
    with pytest.raises(TypeError, match="depends_on is not supported by enqueue_in"):
        q.enqueue_in(10, jobs.add, 1, 2, depends_on="x")
    assert q.count == 0 and q.deferred_job_registry.count == 0


def test_depends_on_an_empty_list_enqueues_at_once_and_a_bare_id_means_this_queue(url: str, qname: str) -> None:
    q = Queue(qname, url)
    plain = q.enqueue(jobs.add, 1, 2, depends_on=[])
    assert plain.get_status() == JobStatus.QUEUED
    child = q.enqueue(jobs.add, 1, 2, depends_on=plain.id)
    assert child.get_status() == JobStatus.DEFERRED
    _worker([q]).work(burst=True)
    assert child.is_finished and Job.fetch(child.handle, url).return_value() == 3


# --- a process dies in the middle of a release --------------------------------------------------------

@contextmanager
def worker_process(url: str, env: dict[str, str], log: Path, *queues: str) -> Iterator[subprocess.Popen[bytes]]:
    command = [sys.executable, "-m", "clusterq.cli", "worker", "-u", url, "--pool", "solo", *queues]
    with log.open("wb") as out:
        proc = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=log.parent,
                                start_new_session=True)
    try:
        yield proc
    finally:
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def exit_code(proc: subprocess.Popen[bytes], log: Path) -> int:
    try:
        return proc.wait(DEADLINE_S)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"the process did not exit; its log:\n{log.read_text()}") from None


@pytest.mark.parametrize("point", ["after_outbox", "after_apply"])
def test_a_worker_killed_in_the_middle_of_a_release_leaves_the_child_to_run_exactly_once(
        url: str, qname: str, tmp_path: Path, subprocess_env: dict[str, str], point: str) -> None:
    parents_q, children_q = queues_on_different_nodes(url, qname, 2)
    out = tmp_path / "ran"
    parent = parents_q.enqueue(jobs.record, str(out), "parent")
    child = children_q.enqueue(jobs.record, str(out), "child", depends_on=parent)
    # The first worker serves the parent's queue and dies right after recording the parent's outcome
    # (the outbox intent is written) or right after releasing the child (the intent is not removed).
    log = tmp_path / "first.log"
    with worker_process(url, {**subprocess_env, FAULT_ENV: point}, log, parents_q.name) as proc:
        assert exit_code(proc, log) == 137, log.read_text()
    assert parent.is_finished
    assert parents_q.connection.zcard(parents_q.keys.outbox) == 1, "the intent survives the crash"
    assert child.get_status() == (JobStatus.DEFERRED if point == "after_outbox" else JobStatus.QUEUED)
    # Another worker (of both queues) replays the intent; the child runs once.
    log = tmp_path / "second.log"
    with worker_process(url, subprocess_env, log, parents_q.name, children_q.name) as proc:
        wait_for(lambda: child.get_status() == JobStatus.FINISHED, "the child to run")
        wait_for(lambda: parents_q.connection.zcard(parents_q.keys.outbox) == 0, "the intent to be removed")
        proc.send_signal(signal.SIGTERM)
        assert exit_code(proc, log) == 0, log.read_text()
    assert lines(out) == ["parent", "child"]
    assert children_q.count == 0 and children_q.deferred_job_registry.count == 0
    assert parents_q.connection.exists(parents_q.keys.dependents(parent.id)) == 0


PRODUCER = """
import sys
from clusterq import Queue
Queue(sys.argv[2], sys.argv[1]).enqueue("jobs.record", sys.argv[4], "child", job_id="child",
                                        depends_on=sys.argv[3])
print("not reached")
"""


def test_a_producer_killed_before_registering_a_child_leaves_the_registration_to_a_worker(
        url: str, qname: str, tmp_path: Path, subprocess_env: dict[str, str]) -> None:
    parents_q, children_q = queues_on_different_nodes(url, qname, 2)
    out = tmp_path / "ran"
    parent = parents_q.enqueue(jobs.record, str(out), "parent")
    command = [sys.executable, "-c", PRODUCER, url, children_q.name, parent.handle, str(out)]
    done = subprocess.run(command, env={**subprocess_env, FAULT_ENV: "after_outbox"}, capture_output=True,
                          timeout=DEADLINE_S)
    assert done.returncode == 137, done.stderr
    child = Job(children_q.name, "child", url)
    assert child.get_status() == JobStatus.DEFERRED
    assert children_q.connection.zcard(children_q.keys.outbox) == 1  # the registration intent
    log = tmp_path / "worker.log"
    with worker_process(url, subprocess_env, log, parents_q.name, children_q.name) as proc:
        wait_for(lambda: child.get_status() == JobStatus.FINISHED, "the child to run")
        wait_for(lambda: children_q.connection.zcard(children_q.keys.outbox) == 0, "the intent to be removed")
        proc.send_signal(signal.SIGTERM)
        assert exit_code(proc, log) == 0, log.read_text()
    assert lines(out) == ["parent", "child"]


def test_a_parent_with_more_children_than_one_batch_releases_all_of_them_once(url: str, qname: str) -> None:
    parents_q, children_q = queues_on_different_nodes(url, qname, 2)
    parent = parents_q.enqueue(jobs.add, 1, 1)
    count = DEPENDENTS_BATCH * 2 + 7
    children = children_q.enqueue_many([children_q.prepare_data(jobs.add, (i, 0), depends_on=parent)
                                        for i in range(count)])
    assert children_q.deferred_job_registry.count == count
    _worker([parents_q]).work(burst=True)
    assert children_q.count == count and children_q.deferred_job_registry.count == 0
    _worker([children_q]).work(burst=True)
    assert sorted(c.return_value() for c in children) == list(range(count))
    assert parents_q.connection.zcard(parents_q.keys.outbox) == 0
    assert parents_q.connection.exists(parents_q.keys.dependents(parent.id)) == 0


def test_an_abandoned_parent_cancels_its_child(url: str, qname: str) -> None:
    parents_q, children_q = queues_on_different_nodes(url, qname, 2)
    parent = parents_q.enqueue(jobs.crash, max_attempts=1)
    child = children_q.enqueue(jobs.add, 1, 2, depends_on=parent)
    worker = Worker([parents_q], parents_q.connection, pool="process", concurrency=1, install_signal_handlers=False)
    with running(worker):
        wait_for(lambda: child.get_status() == JobStatus.CANCELED, "the child to be canceled")
    assert parent.get_status() == JobStatus.FAILED and "abandoned" in (parent.exc_info or "")
    assert parent.handle in (child.exc_info or "")


def test_a_released_child_with_a_priority_joins_its_level_and_unique_children_are_refused_twice(
        url: str, qname: str) -> None:
    parents_q, children_q = queues_on_different_nodes(url, qname, 2)
    parent = parents_q.enqueue(jobs.add, 1, 1)
    child = children_q.enqueue(jobs.add, 1, 2, depends_on=parent, priority=1, job_id="c", unique=True)
    with pytest.raises(DuplicateJob):
        children_q.enqueue(jobs.add, 1, 2, depends_on=parent, job_id="c", unique=True)
    _worker([parents_q]).work(burst=True)
    assert child.get_status() == JobStatus.QUEUED
    assert children_q.connection.zscore(children_q.keys.prio, child.id) is not None
    assert children_q.count == 1
    _worker([children_q]).work(burst=True)
    assert child.return_value() == 3


def test_the_asyncio_queue_enqueues_children_that_wait_for_their_parents(url: str, qname: str) -> None:
    import asyncio

    from clusterq import AsyncQueue

    parents_q, children_q = queues_on_different_nodes(url, qname, 2)
    done = parents_q.enqueue(jobs.add, 1, 1)
    _worker([parents_q]).work(burst=True)
    waiting = parents_q.enqueue(jobs.add, 2, 2)

    async def enqueue() -> tuple[str, str]:
        async with AsyncQueue(children_q.name, url) as q:
            after_done = await q.enqueue(jobs.add, 1, 2, depends_on=done.handle)
            after_waiting = await q.enqueue(jobs.add, 3, 4, depends_on=Dependency([waiting]))
            assert await after_done.get_status() == JobStatus.QUEUED  # its parent had already finished
            assert await after_waiting.get_status() == JobStatus.DEFERRED
            return after_done.handle, after_waiting.handle

    first, second = asyncio.run(enqueue())
    assert children_q.connection.zcard(children_q.keys.outbox) == 0  # registrations done, not left to replay
    _worker([parents_q]).work(burst=True)
    _worker([children_q]).work(burst=True)
    assert Job.fetch(first, url).return_value() == 3 and Job.fetch(second, url).return_value() == 7


def test_a_child_lists_its_dependencies_and_says_when_they_are_met(url: str, qname: str) -> None:
    parents_q, children_q = queues_on_different_nodes(url, qname, 2)
    first, second = parents_q.enqueue(jobs.add, 1, 1), children_q.enqueue(jobs.add, 2, 2)
    child = children_q.enqueue(jobs.add, 1, 2, depends_on=[first, second.id])
    assert child.dependency_handles == sorted([first.handle, second.handle])
    assert sorted(child.dependency_ids) == sorted([first.id, second.id])
    assert not child.dependencies_are_met()
    _worker([parents_q]).work(burst=True)
    assert not child.dependencies_are_met()
    _worker([children_q]).work(burst=True)  # the second parent, then the child
    assert child.dependencies_are_met() and child.is_finished
    assert first.dependency_handles == [] and first.dependencies_are_met()
