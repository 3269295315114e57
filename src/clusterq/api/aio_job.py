"""The job handle for asyncio: find a job from its queue and id (or its handle string alone) and act on it.

An :class:`AsyncJob` reads the same record, through the same plans, as the synchronous
:class:`~clusterq.api.job.Job`: both are :class:`~clusterq.api.job_core.JobCore`, so they decode a record
alike and change a job with the same calls and reply codes.
"""

from __future__ import annotations

import asyncio
from typing import Any

from clusterq.api.job_core import JobCore, JobStatus, locate_plan, status_of
from clusterq.api.results import AsyncResultWaiter, Result, poll_delays
from clusterq.connection.aio import AsyncConnectionLike
from clusterq.connection.sync import is_proxy
from clusterq.exceptions import InvalidJobOperation, NoSuchJobError
from clusterq.serializers import Serializer, resolve_serializer
from clusterq.state import keys as K
from clusterq.state.aio_store import LazyStore
from clusterq.state.plan import Plan, R, arun_plan


class AsyncJob(JobCore):
    """A handle on one job, for asyncio. Cheap to create; reads Redis only when awaited.

    The fields (``func_name``, ``args``, ``exc_info``, ``meta``...) are those of the last read: ``fetch``,
    ``refresh``, ``get_status`` and ``return_value`` read; reading a field before any read raises
    :class:`InvalidJobOperation` rather than blocking the event loop. A job given a URL opens its own
    client; close it with ``aclose()``.
    """

    def __init__(self, queue: str, id: str, connection: AsyncConnectionLike = None, *,
                 serializer: Serializer | str | None = None) -> None:
        self._setup(queue, id, LazyStore(connection), resolve_serializer(serializer))
        self._owns_client = True

    def _setup(self, queue: str, id: str, lazy: LazyStore, serializer: Serializer) -> None:
        self.queue_name = K.validate_queue_name(queue)
        self.id = id
        self.serializer = serializer
        self._keys = K.QueueKeys(queue)
        self._lazy = lazy
        self._owns_client = False
        self._fields = None

    @classmethod
    def _bound(cls, queue: str, id: str, lazy: LazyStore, serializer: Serializer) -> AsyncJob:
        """A job sharing its queue's client (and so following it to a new event loop)."""
        job = cls.__new__(cls)
        job._setup(queue, id, lazy, serializer)
        return job

    async def _run(self, plan: Plan[R]) -> R:
        return await arun_plan(plan, await self._lazy.get())

    def __repr__(self) -> str:
        return f"AsyncJob({self.queue_name!r}, {self.id!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AsyncJob) and (other.queue_name, other.id) == (self.queue_name, self.id)

    def __hash__(self) -> int:
        return hash((self.queue_name, self.id))

    @classmethod
    async def fetch(cls, handle_or_id: str, connection: AsyncConnectionLike = None, *, queue: str | None = None,
                    serializer: Serializer | str | None = None) -> AsyncJob:
        """Load a job from its handle (``job.handle``), or from its id and ``queue``; an id alone is looked
        up through the known queues, as :meth:`Job.fetch` does.

        Raises :class:`NoSuchJobError` if there is no such job.
        """
        lazy = LazyStore(connection)
        try:
            queue_name, job_id = await arun_plan(locate_plan(handle_or_id, queue), await lazy.get())
            job = cls.__new__(cls)
            job._setup(queue_name, job_id, lazy, resolve_serializer(serializer))
            job._owns_client = True
            return await job.refresh()
        except BaseException:
            await lazy.aclose()
            raise

    @classmethod
    async def fetch_many(cls, job_ids: list[str], connection: AsyncConnectionLike = None, *,
                         queue: str | None = None, serializer: Serializer | str | None = None
                         ) -> list[AsyncJob | None]:
        """RQ's ``Job.fetch_many``: one :meth:`fetch` per handle or id, None where there is no such job."""
        jobs: list[AsyncJob | None] = []
        for job_id in job_ids:
            try:
                jobs.append(await cls.fetch(job_id, connection, queue=queue, serializer=serializer))
            except NoSuchJobError:
                jobs.append(None)
        return jobs

    async def aclose(self) -> None:
        """Close the client this job opened from a URL. A client it was given, or shares with the queue
        that enqueued it, stays open."""
        if self._owns_client:
            await self._lazy.aclose()

    # --- reading ------------------------------------------------------------------------------

    def _field(self, name: str) -> bytes | None:
        if self._fields is None:
            raise InvalidJobOperation(f"{self!r} has not been read yet: await job.refresh() before reading fields")
        return self._fields.get(name)

    async def refresh(self) -> AsyncJob:
        """Read the job's record again. Raises :class:`NoSuchJobError` if it is gone."""
        await self._run(self._refresh_plan())
        self.__dict__.pop("_meta", None)  # meta is read from the new record
        return self

    async def exists(self) -> bool:
        return await (await self._lazy.get()).read_job(self._keys, self.id) is not None

    async def get_status(self, refresh: bool = True) -> JobStatus | None:
        """The job's status, or None if its record no longer exists."""
        if refresh:
            return await self._run(self._status_plan())
        return status_of({"s": raw} if (raw := self._field("s")) is not None else None)

    async def return_value(self, refresh: bool = True) -> Any:
        """The job's result once it finished, else None."""
        if refresh:
            await self.refresh()
        return self._value()

    async def get_meta(self, refresh: bool = True) -> dict[str, Any]:
        """:attr:`meta`, read again first (by default)."""
        if refresh:
            await self.refresh()
        return self.meta

    async def save_meta(self) -> None:
        """Write :attr:`meta` to Redis (only that field). Raises NoSuchJobError if the job is gone."""
        await self._run(self._save_meta_plan())

    async def set_retries_left(self, value: int) -> None:
        """Allow at most ``value`` more retries (``0``: a failure now is final), as setting
        ``Job.retries_left`` does; written at once. It can only lower what the ``Retry`` allows."""
        await self._run(self._set_retries_left_plan(value))

    def _refuse_retries_left(self, value: int) -> None:
        raise AttributeError("AsyncJob.retries_left cannot be assigned (it would block the event loop): "
                             "await job.set_retries_left(n)")

    retries_left = JobCore.retries_left.setter(_refuse_retries_left)  # type: ignore[attr-defined]

    async def set_progress(self, value: Any, message: str | None = None) -> None:
        """Store the job's progress (any JSON value) and an optional message, as ``Job.set_progress``."""
        await self._run(self._set_progress_plan(value, message))

    async def dependency_handles(self) -> list[str]:
        """Handles of the jobs this one was enqueued to wait for (``depends_on``), sorted."""
        return await self._run(self._dependency_handles_plan())

    async def dependencies_are_met(self) -> bool:
        """True once every job this one depends on has ended as its dependency asks; one read."""
        return await self._run(self._dependencies_met_plan())

    # --- results ------------------------------------------------------------------------------

    async def results(self) -> list[Result]:
        """Every result the job keeps, newest first (see ``Job.results``)."""
        return await self._run(self._results_plan())

    async def _latest(self) -> Result | None:
        return await self._run(self._latest_plan())

    async def latest_result(self, timeout: float = 0) -> Result | None:
        """The job's latest result, or None; with ``timeout`` (seconds) wait that long for a first one,
        without polling (see ``Job.latest_result``)."""
        latest = await self._latest()
        if latest is not None or not timeout or timeout <= 0:
            return latest
        store = await self._lazy.get()
        if is_proxy(store.client):  # a proxy relays no pub/sub: look again, less often as time passes
            for delay in poll_delays(timeout):
                await asyncio.sleep(delay)
                latest = await self._latest()
                if latest is not None:
                    break
            return latest
        waiter = await AsyncResultWaiter.open(store.client, self._keys)
        try:
            await self._run(self._set_fields_plan({"hw": "1"}))
            latest = await self._latest()
            if latest is None and await waiter.wait(self.id, timeout):
                latest = await self._latest()
        finally:
            await waiter.aclose()
        return latest

    # --- changing -----------------------------------------------------------------------------

    async def cancel(self, enqueue_dependents: bool = False) -> None:
        """Stop the job from running (again), as :meth:`Job.cancel` does: dependents are canceled in turn,
        or with ``enqueue_dependents=True`` count this job as finished. Raises
        :class:`InvalidJobOperation` if it already finished, failed or was canceled."""
        await self._run(self._cancel_plan(enqueue_dependents))

    async def stop(self, reason: str | None = None) -> None:
        """Stop the job while it runs, as :meth:`Job.stop` does. Raises :class:`InvalidJobOperation` if
        it is not running."""
        await self._run(self._stop_plan(reason))

    async def dependents(self, limit: int = 100) -> tuple[list[str], list[str]]:
        """``(jobs, groups)``: handles of the jobs waiting for this one and of the groups it is a member
        of, the first ``limit`` entries in all, as :meth:`Job.dependents`."""
        return await self._run(self._dependents_plan(limit))

    async def delete(self, delete_dependents: bool = False) -> None:
        """Delete the job's record and its registry entries, as :meth:`Job.delete` does (dependents are
        canceled, or deleted too with ``delete_dependents=True``). Deleting a missing job is no error."""
        await self._run(self._delete_plan(delete_dependents))

    async def requeue(self, at_front: bool = False) -> AsyncJob:
        """Put a failed, canceled or finished job back on its queue."""
        await self._run(self._requeue_plan(at_front))
        return self


__all__ = ["AsyncJob", "NoSuchJobError"]
