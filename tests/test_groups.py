"""Groups on every topology: members in queues on different cluster nodes, a callback released once when
all of them ended (finished or not), wait(), status counts, replays counted once."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

import jobs
from clusterq import Group, InvalidJobOperation, JobStatus, NoSuchJobError, Queue, Worker, enqueue_group
from clusterq.state import store as T
from clusterq.state.outbox import FAULT_ENV, Forwarder, ended_entry
from test_dependencies import exit_code, lines, queues_on_different_nodes, running, wait_for, worker_process

pytestmark = pytest.mark.compat  # also run against the second server engine


def _worker(queues: list[Queue]) -> Worker:
    return Worker(queues, queues[0].connection, pool="thread", concurrency=4, install_signal_handlers=False)


def test_a_group_across_queues_runs_its_callback_once_when_every_member_ended(
        url: str, qname: str, tmp_path: Path) -> None:
    home, other, third = queues_on_different_nodes(url, qname, 3)
    out = tmp_path / "ran"
    group = Group.create(home)
    members = group.enqueue_many(other, [other.prepare_data(jobs.record, (str(out), f"m{i}")) for i in range(5)])
    members += [group.enqueue(third, jobs.fail, "no"), group.enqueue(home, jobs.record, str(out), "h")]
    callback = group.close(on_done=home.prepare_data(jobs.record, (str(out), "callback")))
    assert callback is not None and callback.get_status() == JobStatus.DEFERRED
    assert group.status().size == 7 and group.status().closed and not group.status().done
    assert not group.wait(timeout_s=0.2)
    with running(_worker([home, other, third])):
        assert group.wait(timeout_s=60)
        wait_for(lambda: callback.get_status() == JobStatus.FINISHED, "the callback")
    status = group.status()
    assert (status.size, status.ended, status.failed, status.done) == (7, 7, 1, True)
    assert status.callback == callback.handle
    ran = lines(out)
    assert ran[-1] == "callback" and ran.count("callback") == 1 and len(ran) == 7
    assert Group.fetch(group.handle, url).status() == status
    for q in (home, other, third):
        assert q.connection.zcard(q.keys.outbox) == 0


def test_members_that_ended_before_the_group_closed_count_and_closing_fires_at_once(
        url: str, qname: str) -> None:
    home, other = queues_on_different_nodes(url, qname, 2)
    group = Group.create(home)
    group.enqueue_many(other, [other.prepare_data(jobs.add, (i, i)) for i in range(3)])
    _worker([other]).work(burst=True)
    assert group.status().ended == 3 and not group.status().done
    callback = group.close(on_done="jobs.noop")
    assert callback is not None and callback.get_status() == JobStatus.QUEUED
    assert group.status().done and group.wait(timeout_s=0)
    with pytest.raises(InvalidJobOperation, match="closed"):
        group.enqueue(other, jobs.add, 1, 1)
    with pytest.raises(InvalidJobOperation, match="already closed"):
        group.close()


def test_an_empty_group_is_done_when_closed_and_canceled_members_count_as_ended(url: str, qname: str) -> None:
    home, other = queues_on_different_nodes(url, qname, 2)
    empty = Group.create(home)
    assert empty.close() is None and empty.status().done
    group = Group.create(home)
    first, second = group.enqueue(other, jobs.add, 1, 1), group.enqueue(other, jobs.add, 2, 2)
    group.close()
    first.cancel()
    second.delete()
    status = group.status()
    assert (status.ended, status.failed, status.done) == (2, 2, True)


def test_a_member_end_told_twice_counts_once(url: str, qname: str) -> None:
    home, other = queues_on_different_nodes(url, qname, 2)
    group = Group.create(home)
    first, _second = group.enqueue(other, jobs.add, 1, 1), group.enqueue(other, jobs.add, 2, 2)
    group.close()
    first.cancel()
    # The same intent replayed (a forwarder that died before removing it): nothing changes.
    entry = ended_entry("canceled", first.id)
    for _ in range(2):
        other.connection.zadd(other.keys.outbox, {entry: 1})
        other.store.run(T.register_call(other.keys, f"g\t{group.handle}", [first.id]))
        Forwarder(other.store, 60_000).forward([(other.name, entry)])
    assert group.status().ended == 1 and not group.status().done


def test_groups_say_what_is_wrong(url: str, qname: str) -> None:
    q = Queue(qname, url)
    with pytest.raises(NoSuchJobError):
        Group.fetch(f"{qname}/missing", url)
    group = Group.create(q, group_id="fixed")
    with pytest.raises(InvalidJobOperation, match="already exists"):
        Group.create(q, group_id="fixed")
    with pytest.raises(TypeError, match="no depends_on"):
        group.close(on_done=q.prepare_data(jobs.noop, depends_on="x"))


def test_enqueue_group_is_a_closed_group_homed_in_that_queue(url: str, qname: str, tmp_path: Path) -> None:
    q = Queue(qname, url)
    out = tmp_path / "ran"
    group = enqueue_group(q, [q.prepare_data(jobs.record, (str(out), i)) for i in range(3)],
                            on_done=q.prepare_data(jobs.record, (str(out), "done")))
    _worker([q]).work(burst=True)
    assert group.status().done and lines(out)[-1] == "done"


@pytest.mark.parametrize("point", ["after_outbox", "after_apply"])
def test_a_worker_killed_while_telling_the_group_leaves_the_callback_to_run_exactly_once(
        url: str, qname: str, tmp_path: Path, subprocess_env: dict[str, str], point: str) -> None:
    home, members_q = queues_on_different_nodes(url, qname, 2)
    out = tmp_path / "ran"
    group = Group.create(home)
    group.enqueue_many(members_q, [members_q.prepare_data(jobs.record, (str(out), f"m{i}")) for i in range(3)])
    callback = group.close(on_done=home.prepare_data(jobs.record, (str(out), "callback")))
    assert callback is not None
    log = tmp_path / "first.log"
    # A short lease: members it still holds when it dies come back soon.
    with worker_process(url, {**subprocess_env, FAULT_ENV: point}, log, "--lease-s", "1", members_q.name) as proc:
        assert exit_code(proc, log) == 137, log.read_text()
    assert members_q.connection.zcard(members_q.keys.outbox) >= 1, "the intents survive the crash"
    log = tmp_path / "second.log"
    with worker_process(url, subprocess_env, log, members_q.name, home.name) as proc:
        wait_for(lambda: callback.get_status() == JobStatus.FINISHED, "the callback to run")
        wait_for(lambda: members_q.connection.zcard(members_q.keys.outbox) == 0, "the intents to be removed")
        proc.send_signal(signal.SIGTERM)
        assert exit_code(proc, log) == 0, log.read_text()
    status = group.status()
    assert (status.size, status.ended, status.failed, status.done) == (3, 3, 0, True)
    # A member the dead worker was still holding runs again (at-least-once); the callback runs once, last.
    ran = lines(out)
    assert set(ran) == {"callback", "m0", "m1", "m2"} and ran.count("callback") == 1 and ran[-1] == "callback"
