"""The job handle for asyncio: find a job from its queue and id (or its handle string alone) and act on it.

An :class:`AsyncJob` reads the same record, through the same scripts, as the synchronous
:class:`~clusterq.api.job.Job`; it decodes the fields it read with a ``Job`` too, so both show a job alike.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

from clusterq.api.job import DEFAULT_FAILURE_TTL_S, Job, JobStatus, Progress, make_handle, parse_handle
from clusterq.api.results import AsyncResultWaiter, Result, parse_latest, parse_results
from clusterq.connection.aio import AsyncConnectionLike
from clusterq.exceptions import InvalidJobOperation, NoSuchJobError
from clusterq.serializers import Serializer, resolve_serializer
from clusterq.state import keys as K
from clusterq.state import store as T
from clusterq.state import transitions as TR
from clusterq.state.aio_store import LazyStore
from clusterq.state.outbox import split_dependents

if TYPE_CHECKING:
    from clusterq.state.store import Store


class _Snapshot:
    """Stands in for a Store under a sync :class:`Job`, answering its reads with the fields an AsyncJob
    read asynchronously, so that the Job decodes them (status, arguments, meta, dates) as it does its own."""

    def __init__(self, fields: dict[str, bytes]) -> None:
        self.fields = fields

    def read_job(self, qk: K.QueueKeys, job_id: str) -> dict[str, bytes]:
        return self.fields


class AsyncJob:
    """A handle on one job, for asyncio. Cheap to create; reads Redis only when awaited.

    The fields (``func_name``, ``args``, ``exc_info``...) are those of the last read: ``fetch``,
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
        self._record: Job | None = None

    @classmethod
    def _bound(cls, queue: str, id: str, lazy: LazyStore, serializer: Serializer) -> AsyncJob:
        """A job sharing its queue's client (and so following it to a new event loop)."""
        job = cls.__new__(cls)
        job._setup(queue, id, lazy, serializer)
        return job

    def __repr__(self) -> str:
        return f"AsyncJob({self.queue_name!r}, {self.id!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AsyncJob) and (other.queue_name, other.id) == (self.queue_name, self.id)

    def __hash__(self) -> int:
        return hash((self.queue_name, self.id))

    @classmethod
    async def fetch(cls, handle_or_id: str, connection: AsyncConnectionLike = None, *, queue: str | None = None,
                    serializer: Serializer | str | None = None) -> AsyncJob:
        """Load a job from its handle (``job.handle``), or from its id and ``queue``.

        Raises :class:`NoSuchJobError` if there is no such job.
        """
        if queue is None:
            queue, job_id = parse_handle(handle_or_id)
        else:
            job_id = handle_or_id
        job = cls(queue, job_id, connection, serializer=serializer)
        try:
            return await job.refresh()
        except BaseException:
            await job.aclose()
            raise

    @property
    def handle(self) -> str:
        """A string that finds this job from nothing else: pass it to :meth:`AsyncJob.fetch` or ``Job.fetch``."""
        return make_handle(self.queue_name, self.id)

    @property
    def key(self) -> str:
        return self._keys.job(self.id)

    async def aclose(self) -> None:
        """Close the client this job opened from a URL. A client it was given, or shares with the queue
        that enqueued it, stays open."""
        if self._owns_client:
            await self._lazy.aclose()

    # --- reading ------------------------------------------------------------------------------

    async def refresh(self) -> AsyncJob:
        """Read the job's record again. Raises :class:`NoSuchJobError` if it is gone."""
        fields = await (await self._lazy.get()).read_job(self._keys, self.id)
        if fields is None:
            raise NoSuchJobError(f"no job {self.id!r} in queue {self.queue_name!r} (deleted or expired)")
        self._record = Job(self.queue_name, self.id, serializer=self.serializer,
                           store=cast("Store", _Snapshot(fields)))
        return self

    async def exists(self) -> bool:
        return await (await self._lazy.get()).read_job(self._keys, self.id) is not None

    def _loaded(self) -> Job:
        if self._record is None:
            raise InvalidJobOperation(f"{self!r} has not been read yet: await job.refresh() before reading fields")
        return self._record

    async def get_status(self, refresh: bool = True) -> JobStatus | None:
        """The job's status, or None if its record no longer exists."""
        if refresh:
            try:
                await self.refresh()
            except NoSuchJobError:
                return None
        return self._loaded().get_status(refresh=False)

    async def return_value(self, refresh: bool = True) -> Any:
        """The job's result once it finished, else None."""
        if refresh:
            await self.refresh()
        return self._loaded().return_value(refresh=False)

    @property
    def exc_info(self) -> str | None:
        """The failure's reason and traceback, once the job failed."""
        return self._loaded().exc_info

    @property
    def retries(self) -> int:
        return self._loaded().retries

    @property
    def retries_left(self) -> int | None:
        return self._loaded().retries_left

    @property
    def repeats(self) -> int:
        return self._loaded().repeats

    @property
    def callback_error(self) -> str | None:
        return self._loaded().callback_error

    # --- results ------------------------------------------------------------------------------

    async def results(self) -> list[Result]:
        """Every result the job keeps, newest first (see ``Job.results``)."""
        reply = await (await self._lazy.get()).run(T.results_call(self._keys, self.id))
        return parse_results(self.id, reply, self.serializer)

    async def _latest(self) -> Result | None:
        store = await self._lazy.get()
        values = await store.client.hmget(self._keys.job(self.id), T.LATEST_FIELDS)
        return parse_latest(self.id, values, self.serializer)

    async def latest_result(self, timeout: float = 0) -> Result | None:
        """The job's latest result, or None; with ``timeout`` (seconds) wait that long for a first one,
        without polling (see ``Job.latest_result``)."""
        latest = await self._latest()
        if latest is not None or not timeout or timeout <= 0:
            return latest
        store = await self._lazy.get()
        waiter = await AsyncResultWaiter.open(store.client, self._keys)
        try:
            code = TR.SET_FIELDS.code(await store.run(T.set_fields_call(self._keys, self.id, {"hw": "1"})))
            if code is TR.SetFieldsCode.NO_SUCH_JOB:
                raise NoSuchJobError(f"no job {self.id!r} in queue {self.queue_name!r}")
            latest = await self._latest()
            if latest is None and await waiter.wait(self.id, timeout):
                latest = await self._latest()
        finally:
            await waiter.aclose()
        return latest

    @property
    def func_name(self) -> str:
        return self._loaded().func_name

    @property
    def args(self) -> list[Any]:
        return self._loaded().args

    @property
    def kwargs(self) -> dict[str, Any]:
        return self._loaded().kwargs

    @property
    def description(self) -> str:
        return self._loaded().description

    @property
    def headers(self) -> dict[str, str]:
        """The headers the ``before_enqueue`` hooks gave the job, {} for none (read-only)."""
        return self._loaded().headers

    @property
    def meta(self) -> dict[str, Any]:
        return self._loaded().meta

    @property
    def timeout(self) -> float | None:
        return self._loaded().timeout

    @property
    def result_ttl(self) -> int | None:
        return self._loaded().result_ttl

    @property
    def failure_ttl(self) -> int | None:
        return self._loaded().failure_ttl

    @property
    def attempts(self) -> int:
        """How many times a worker has leased this job."""
        return self._loaded().attempts

    @property
    def worker_name(self) -> str | None:
        return self._loaded().worker_name

    @property
    def enqueued_at(self) -> datetime | None:
        return self._loaded().enqueued_at

    @property
    def started_at(self) -> datetime | None:
        return self._loaded().started_at

    @property
    def ended_at(self) -> datetime | None:
        return self._loaded().ended_at

    @property
    def progress(self) -> Progress | None:
        """The progress the job last reported (``set_progress``), as of the last read."""
        return self._loaded().progress

    # --- changing -----------------------------------------------------------------------------

    async def cancel(self) -> None:
        """Stop the job from running (again). A running job's outcome will no longer be recorded.

        Raises :class:`InvalidJobOperation` if it already finished, failed or was canceled.
        """
        if self._record is None:
            try:
                await self.refresh()  # for its failure_ttl
            except NoSuchJobError:
                pass  # the script will report the job missing
        keep_s = (self._record.failure_ttl if self._record else None) or DEFAULT_FAILURE_TTL_S
        store = await self._lazy.get()
        code = TR.CANCEL.code(await store.run(T.cancel_call(self._keys, self.id, int(keep_s * 1000))))
        self._record = None
        if code is TR.CancelCode.NO_SUCH_JOB:
            raise NoSuchJobError(f"no job {self.id!r} in queue {self.queue_name!r}")
        if code is TR.CancelCode.ALREADY_ENDED:
            status = await self.get_status()
            raise InvalidJobOperation(f"job {self.id!r} is already {status.value if status else 'gone'}")

    async def stop(self, reason: str | None = None) -> None:
        """Stop the job while it runs, as :meth:`Job.stop` does. Raises :class:`InvalidJobOperation` if
        it is not running."""
        store = await self._lazy.get()
        code = TR.STOP.code(await store.run(T.stop_call(self._keys, self.id, reason or "stop requested")))
        self._record = None
        if code is TR.StopCode.NO_SUCH_JOB:
            raise NoSuchJobError(f"no job {self.id!r} in queue {self.queue_name!r}")
        if code is TR.StopCode.NOT_RUNNING:
            status = await self.get_status()
            raise InvalidJobOperation(f"job {self.id!r} is not running (it is {status.value if status else 'gone'}); "
                                      "only a started job can be stopped (cancel() a queued or scheduled one)")

    async def dependents(self, limit: int = 100) -> tuple[list[str], list[str]]:
        """``(jobs, groups)``: handles of the jobs waiting for this one and of the groups it is a member
        of, the first ``limit`` entries in all, as :meth:`Job.dependents`."""
        store = await self._lazy.get()
        return split_dependents(await store.client.zrange(self._keys.dependents(self.id), 0, max(0, limit - 1)))

    async def delete(self) -> None:
        """Delete the job's record and its registry entries. Deleting a missing job is not an error."""
        await (await self._lazy.get()).run(T.delete_call(self._keys, self.id))
        self._record = None


