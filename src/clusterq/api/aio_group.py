"""``AsyncGroup``: :class:`~clusterq.api.group.Group` for asyncio, with the same rules (both are a
:class:`~clusterq.api.group.GroupCore`) and the same records: a group made here is read by ``Group``
and the other way round."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from clusterq.api.aio_job import AsyncJob
from clusterq.api.aio_queue import AsyncQueue
from clusterq.api.enqueue_options import EnqueueData, split_enqueue_options, validate_job_id
from clusterq.api.group import DEFAULT_GROUP_KEEP_S, GroupCore, GroupStatus
from clusterq.connection.aio import AsyncConnectionLike
from clusterq.exceptions import NoSuchJobError
from clusterq.state.outbox import split_handle
from clusterq.state.plan import Plan, R

__all__ = ["AsyncGroup", "GroupStatus", "enqueue_group_async"]


class AsyncGroup(GroupCore[AsyncJob]):
    """A handle on a group homed in ``queue``, for asyncio. Create one with :meth:`create`, find one
    with :meth:`fetch`."""

    queue: AsyncQueue

    def __init__(self, group_id: str, queue: AsyncQueue | str = "default",
                 connection: AsyncConnectionLike = None) -> None:
        self.id = validate_job_id(group_id)
        self.queue = queue if isinstance(queue, AsyncQueue) else AsyncQueue(queue, connection)

    async def _run(self, plan: Plan[R]) -> R:
        return await self.queue._run(plan)

    @classmethod
    async def create(cls, queue: AsyncQueue | str = "default", connection: AsyncConnectionLike = None, *,
                     group_id: str | None = None, keep_s: float = DEFAULT_GROUP_KEEP_S) -> AsyncGroup:
        """A new, empty group homed in ``queue`` (see :meth:`Group.create`)."""
        group = cls(group_id or uuid.uuid4().hex, queue, connection)
        await group._run(group._open_plan(keep_s))
        return group

    @classmethod
    async def fetch(cls, handle: str, connection: AsyncConnectionLike = None) -> AsyncGroup:
        """The group with this handle; raises :class:`NoSuchJobError` if it has no record."""
        try:
            queue, group_id = split_handle(handle)
        except ValueError as exc:
            raise NoSuchJobError(str(exc)) from None
        group = cls(group_id, queue, connection)
        await group.status()
        return group

    async def enqueue(self, queue: AsyncQueue, f: Callable[..., Any] | str, *args: Any, **kwargs: Any) -> AsyncJob:
        """Enqueue ``f(*args, **kwargs)`` on ``queue`` as a member of this group."""
        data, at_front = split_enqueue_options(f, args, kwargs)
        return (await self.enqueue_many(queue, [data], at_front=at_front))[0]

    async def enqueue_many(self, queue: AsyncQueue, jobs: Sequence[EnqueueData], *,
                           at_front: bool = False) -> list[AsyncJob]:
        """Enqueue ``jobs`` on ``queue`` as members (see :meth:`Group.enqueue_many`)."""
        return await queue._run(self._enqueue_many_plan(queue, jobs, at_front))

    async def close(self, on_done: EnqueueData | Callable[..., Any] | str | None = None) -> AsyncJob | None:
        """No more members (see :meth:`Group.close`); returns the callback job, if any."""
        return await self._run(self._close_plan(on_done))

    async def status(self) -> GroupStatus:
        """The group's counters (one read). Raises :class:`NoSuchJobError` if it has no record."""
        return await self._run(self._status_plan())

    async def wait(self, timeout_s: float | None = None, poll_s: float = 0.1) -> bool:
        """Wait until the group is done (True) or ``timeout_s`` passed (False). Reads only."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while not (await self.status()).done:
            if deadline is not None and time.monotonic() >= deadline:
                return False
            await asyncio.sleep(poll_s if deadline is None else max(0.0, min(poll_s, deadline - time.monotonic())))
        return True


async def enqueue_group_async(queue: AsyncQueue, jobs: Sequence[EnqueueData],
                              on_done: EnqueueData | Callable[..., Any] | str | None = None) -> AsyncGroup:
    """:func:`~clusterq.api.group.enqueue_group` for asyncio."""
    group = await AsyncGroup.create(queue)
    await group.enqueue_many(queue, jobs)
    await group.close(on_done)
    return group
