"""``Group``: jobs in any queues tracked together; wait for all of them, or have a callback job run once
they have all ended.

A group is a counter homed in one queue's slot (its *home* queue, where its callback runs). Each member
has the group as a dependent, exactly like a child of a dependency, so a member's end reaches the group
through the member's outbox and the idempotent ``group_done`` script: counted once however often it is
replayed. Adding members costs one script call per 500 members (plus the enqueue itself); a member's end
costs one outbox intent and one script call; closing costs one call. Nothing grows with the group's size
on a hot path.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from clusterq.api.enqueue_options import EnqueueData, split_enqueue_options, validate_job_id
from clusterq.api.job import Job
from clusterq.api.job_core import JobCore
from clusterq.api.queue import Queue
from clusterq.api.queue_core import ENQUEUE_CHUNK, QueueCore
from clusterq.connection.sync import ConnectionLike
from clusterq.exceptions import InvalidJobOperation, NoSuchJobError, explain_server_error
from clusterq.state import store as T
from clusterq.state import transitions as TR
from clusterq.state.outbox import group_dependent, make_handle, split_handle
from clusterq.state.plan import SERVER_ERRORS, Plan, R, client_step, store_step

DEFAULT_GROUP_KEEP_S = 7 * 24 * 3600
"""Seconds a group's record is kept once all its members ended."""

J = TypeVar("J", bound=JobCore)


def _text(value: Any) -> str:
    return value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else str(value)


@dataclass(frozen=True)
class GroupStatus:
    """A group's counters. ``size`` counts members added so far; ``ended`` those that ended (finished,
    failed, canceled or deleted), of which ``failed`` did not finish. ``done``: closed and every member
    ended (the callback, if any, was released)."""

    size: int
    ended: int
    failed: int
    closed: bool
    done: bool
    callback: str | None  # the callback job's handle


class GroupCore(Generic[J]):
    """A group's rules as plans, shared by :class:`Group` and :class:`~clusterq.api.aio_group.AsyncGroup`."""

    id: str
    queue: QueueCore[J]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.id!r}, queue={self.queue.name!r})"

    @property
    def handle(self) -> str:
        """``queue/id``: finds the group from nothing else (``fetch``)."""
        return make_handle(self.queue.name, self.id)

    def _open_plan(self, keep_s: float) -> Plan[None]:
        try:
            created = TR.GROUP_OPEN.code(
                (yield store_step("run", T.group_open_call(self.queue.keys, self.id, int(keep_s * 1000)))))
        except SERVER_ERRORS as exc:
            raise explain_server_error(exc, f"create a group in queue {self.queue.name!r}") from exc
        if created is not TR.GroupOpenCode.CREATED:
            raise InvalidJobOperation(f"a group {self.id!r} already exists in queue {self.queue.name!r}")

    def _enqueue_many_plan(self, queue: QueueCore[J], jobs: Sequence[EnqueueData], at_front: bool,
                           after_enqueue: Callable[[list[J]], None] | None = None) -> Plan[list[J]]:
        """Enqueue ``jobs`` on ``queue`` as members. ``after_enqueue``: run on the new jobs before they
        join (the sync queue's inline mode runs them there)."""
        if (yield from self._status_plan()).closed:
            raise InvalidJobOperation(f"group {self.id!r} is closed: no members can be added")
        new, created = yield from queue._enqueue_plan(jobs, at_front)
        if after_enqueue is not None:
            after_enqueue(new)
        ids = [job_id for job_id, is_new in zip((j.id for j in new), created) if is_new]
        dependent = group_dependent(self.queue.name, self.id)
        calls = [T.register_call(queue.keys, dependent, ids[i : i + ENQUEUE_CHUNK])
                 for i in range(0, len(ids), ENQUEUE_CHUNK)]
        count = T.group_open_call(self.queue.keys, self.id, 0, added=len(ids))  # the group's count, last
        try:
            registered, _ = T.split_results((yield store_step("run_many", [*calls, count])), calls, [count])
        except SERVER_ERRORS as exc:
            raise explain_server_error(exc, f"add members to group {self.id!r}") from exc
        # Members that ended before they were registered (a fast worker) are told here instead.
        chunks = [ids[i : i + ENQUEUE_CHUNK] for i in range(0, len(ids), ENQUEUE_CHUNK)]
        ended = [(job_id, how) for chunk, reply in zip(chunks, registered)
                 for job_id, how in zip(chunk, TR.parse_register(reply)) if how]
        if ended:
            yield store_step("run_many", [T.group_done_call(self.queue.keys, self.id, make_handle(queue.name, job_id),
                                                            how) for job_id, how in ended])
        return new

    def _close_plan(self, on_done: EnqueueData | Callable[..., Any] | str | None) -> Plan[J | None]:
        calls: list[T.Call] = []
        callback = None
        if on_done is not None:
            data = on_done if isinstance(on_done, EnqueueData) else self.queue.prepare_data(on_done)
            if data.depends_on is not None:
                raise TypeError("a group callback waits for the group; it takes no depends_on")
            callback = self.queue._new_job(data)
            calls.append(T.defer_call(self.queue.keys, callback, []))
        close = T.group_close_call(self.queue.keys, self.id, callback.id if callback else None)
        try:
            _, (reply,) = T.split_results((yield store_step("run_many", [*calls, close])), calls, [close])
        except SERVER_ERRORS as exc:
            raise explain_server_error(exc, f"close group {self.id!r}") from exc
        code = TR.GROUP_CLOSE.code(reply)
        if code is TR.GroupCloseCode.NO_SUCH_GROUP:
            raise NoSuchJobError(f"no group {self.id!r} in queue {self.queue.name!r}")
        if code is TR.GroupCloseCode.ALREADY_CLOSED:
            raise InvalidJobOperation(f"group {self.id!r} is already closed")
        return self.queue._job(callback.id) if callback else None

    def _status_plan(self) -> Plan[GroupStatus]:
        key = self.queue.keys.group(self.id)
        size, closed_at, ended, failed, callback, done_at = yield client_step(
            "hmget", key, ["k", "t", "d", "x", "cb", "te"])
        if size is None and not (yield client_step("exists", key)):
            raise NoSuchJobError(f"no group {self.id!r} in queue {self.queue.name!r} (never created or expired)")
        return GroupStatus(
            size=int(size or 0), ended=int(ended or 0), failed=int(failed or 0), closed=closed_at is not None,
            done=done_at is not None,
            callback=make_handle(self.queue.name, _text(callback)) if callback is not None else None)


class Group(GroupCore[Job]):
    """A handle on a group homed in ``queue``. Create one with :meth:`Group.create`, find one with
    :meth:`Group.fetch`."""

    queue: Queue

    def __init__(self, group_id: str, queue: Queue | str = "default", connection: ConnectionLike = None) -> None:
        self.id = validate_job_id(group_id)
        self.queue = queue if isinstance(queue, Queue) else Queue(queue, connection)
        self._keys = self.queue.keys

    def _run(self, plan: Plan[R]) -> R:
        return self.queue._run(plan)

    @classmethod
    def create(cls, queue: Queue | str = "default", connection: ConnectionLike = None, *,
               group_id: str | None = None, keep_s: float = DEFAULT_GROUP_KEEP_S) -> Group:
        """A new, empty group homed in ``queue`` (where its callback will run). ``keep_s``: how long
        its record stays readable after all members ended."""
        group = cls(group_id or uuid.uuid4().hex, queue, connection)
        group._run(group._open_plan(keep_s))
        return group

    @classmethod
    def fetch(cls, handle: str, connection: ConnectionLike = None) -> Group:
        """The group with this handle; raises :class:`NoSuchJobError` if it has no record."""
        try:
            queue, group_id = split_handle(handle)
        except ValueError as exc:
            raise NoSuchJobError(str(exc)) from None
        group = cls(group_id, queue, connection)
        group.status()
        return group

    # --- members ------------------------------------------------------------------------------

    def enqueue(self, queue: Queue, f: Callable[..., Any] | str, *args: Any, **kwargs: Any) -> Job:
        """Enqueue ``f(*args, **kwargs)`` on ``queue`` (any queue) as a member of this group; the options
        of :meth:`Queue.enqueue`."""
        data, at_front = split_enqueue_options(f, args, kwargs)
        return self.enqueue_many(queue, [data], at_front=at_front)[0]

    def enqueue_many(self, queue: Queue, jobs: Sequence[EnqueueData], *, at_front: bool = False) -> list[Job]:
        """Enqueue ``jobs`` on ``queue`` as members of this group (:meth:`Queue.enqueue_many`). A job
        whose id already existed is returned but does not join the group."""
        return queue._run(self._enqueue_many_plan(queue, jobs, at_front, queue._run_inline))

    # --- closing and waiting ------------------------------------------------------------------

    def close(self, on_done: EnqueueData | Callable[..., Any] | str | None = None) -> Job | None:
        """No more members: the group is done once every member added so far has ended. ``on_done``
        (a function, its dotted path, or ``queue.prepare_data(...)`` for arguments and options) is
        enqueued in the group's home queue then, whether members finished or failed; read the counts with
        :meth:`status` from it. Returns the callback job (``deferred`` until then)."""
        return self._run(self._close_plan(on_done))

    def status(self) -> GroupStatus:
        """The group's counters (one read). Raises :class:`NoSuchJobError` if it has no record."""
        return self._run(self._status_plan())

    def wait(self, timeout_s: float | None = None, poll_s: float = 0.1) -> bool:
        """Block until the group is done (True) or ``timeout_s`` passed (False). Reads only."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while not self.status().done:
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(poll_s if deadline is None else max(0.0, min(poll_s, deadline - time.monotonic())))
        return True


def enqueue_group(queue: Queue, jobs: Sequence[EnqueueData],
                  on_done: EnqueueData | Callable[..., Any] | str | None = None) -> Group:
    """Enqueue ``jobs`` on ``queue`` as one group homed there, closed at once (with ``on_done`` as its
    callback). For members in several queues use :meth:`Group.create` and :meth:`Group.enqueue_many`."""
    group = Group.create(queue)
    group.enqueue_many(queue, jobs)
    group.close(on_done)
    return group
