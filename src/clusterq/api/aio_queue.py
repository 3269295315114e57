"""The producer API for asyncio: ``await AsyncQueue(name, connection).enqueue(func, *args, **kwargs)``.

The names, options and records are those of :class:`~clusterq.api.queue.Queue` and :class:`~clusterq.api.job.Job`,
awaitable. Both APIs are one core (:class:`~clusterq.api.queue_core.QueueCore`, whose operations are plans:
:mod:`clusterq.state.plan`) and differ only in how a plan is run (:mod:`clusterq.state.aio_store` here), so a
job enqueued here is run by the ordinary
:class:`~clusterq.worker.Worker` and can be read with the synchronous :class:`~clusterq.api.job.Job`, and the
other way round.

An application opens one client when it starts and shares it between its queues (an asyncio client is
tied to its event loop; see :mod:`clusterq.connection.aio`). With FastAPI, for example::

    from contextlib import asynccontextmanager
    from fastapi import FastAPI, HTTPException, Request
    from clusterq import AsyncJob, AsyncQueue, NoSuchJobError, connect_async, disconnect_async

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.redis = await connect_async("redis+cluster://10.0.0.1:6379")  # a bad URL fails here
        app.state.emails = AsyncQueue("emails", app.state.redis)
        yield
        await disconnect_async(app.state.redis)

    app = FastAPI(lifespan=lifespan)

    @app.post("/signup")
    async def signup(request: Request, address: str) -> dict:
        # the job id makes a retried request enqueue once
        job = await request.app.state.emails.enqueue("myapp.tasks.welcome", address, job_id=f"welcome:{address}")
        return {"job": job.handle}

    @app.get("/jobs")
    async def job_status(request: Request, handle: str) -> dict:
        try:
            job = await AsyncJob.fetch(handle, request.app.state.redis)
        except NoSuchJobError:
            raise HTTPException(404) from None
        status = await job.get_status(refresh=False)
        return {"status": status.value if status else None, "result": await job.return_value(refresh=False)}

Workers stay synchronous processes: ``clusterq worker -u redis+cluster://10.0.0.1:6379 emails``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date, datetime, timedelta
from types import TracebackType
from typing import Any

from clusterq.api.aio_job import AsyncJob
from clusterq.api.enqueue_options import EnqueueData, make_enqueue_data, split_enqueue_options
from clusterq.api.queue_core import ID_ATTEMPTS, QueueCore, partitioned_front
from clusterq.api.registry_core import RegistryCore
from clusterq.connection.aio import AsyncClient, AsyncConnectionLike, connect_async, disconnect_async
from clusterq.exceptions import NoSuchJobError, explain_server_error
from clusterq.serializers import Serializer
from clusterq.signing import Signer, SigningKey
from clusterq.state import keys as K
from clusterq.state.aio_store import AsyncStore, LazyStore
from clusterq.state.plan import SERVER_ERRORS, Plan, R, arun_plan

__all__ = [
    "AsyncClient",
    "AsyncJob",
    "AsyncQueue",
    "AsyncRegistry",
    "AsyncStore",
    "EnqueueData",
    "connect_async",
    "disconnect_async",
    "split_enqueue_options",
]


class AsyncQueue(QueueCore[AsyncJob]):
    """A named queue on a Redis deployment, for asyncio.

    ``connection`` is a ``redis.asyncio`` client (from :func:`connect_async`, or the application's own),
    shared by as many queues as the application likes; or a URL, which this queue opens on first use and
    closes in ``aclose()`` (or ``async with``). The options are those of :class:`~clusterq.api.queue.Queue`
    (``wait_replicas`` included), and so are the rules: both are a
    :class:`~clusterq.api.queue_core.QueueCore`. Reads that are properties on ``Queue`` (``count``,
    ``is_suspended``, ``rate_limit``, ``concurrency_limits``, ``retried_count``) are coroutine methods here.
    ``hooks`` are :mod:`clusterq.api.hooks` objects, as for ``Queue``: their ``before_enqueue`` runs for each
    job this queue writes.
    """

    def __init__(
        self,
        name: str = "default",
        connection: AsyncConnectionLike = None,
        *,
        serializer: Serializer | str | None = None,
        default_timeout: float | int | str | None = None,
        result_ttl: float | int | str | None = None,
        failure_ttl: float | int | str | None = None,
        max_attempts: int | None = None,
        signing_key: SigningKey | Signer | None = None,
        result_history: int | None = None,
        wait_replicas: int = 0,
        wait_timeout_s: float = 1.0,
        hooks: Sequence[Any] = (),
        job_class: None = None,
        partitions: None = None,
    ) -> None:
        self._setup(name, serializer=serializer, default_timeout=default_timeout, result_ttl=result_ttl,
                    failure_ttl=failure_ttl, max_attempts=max_attempts, signing_key=signing_key,
                    result_history=result_history, wait_replicas=wait_replicas, wait_timeout_s=wait_timeout_s,
                    hooks=hooks, job_class=job_class)
        self._lazy = LazyStore(connection)

    def __new__(cls, *args: Any, partitions: int | None = None, **kwargs: Any) -> Any:
        """``partitions=P`` (an int from 1 to 1024) makes one logical queue over P partitions, each an
        ordinary queue in its own slot: see docs/partitioned-queues.md."""
        if partitions is None or cls is not AsyncQueue:
            return super().__new__(cls)
        return partitioned_front("async", args, {**kwargs, "partitions": partitions})

    def __repr__(self) -> str:
        return f"AsyncQueue({self.name!r})"

    async def __aenter__(self) -> AsyncQueue:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        traceback: TracebackType | None) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the client this queue opened from a URL (a client it was given stays open)."""
        await self._lazy.aclose()

    async def _run(self, plan: Plan[R]) -> R:
        return await arun_plan(plan, await self._lazy.get())

    def _job(self, job_id: str) -> AsyncJob:
        return AsyncJob._bound(self.name, job_id, self._lazy, self.serializer)

    # --- enqueue ------------------------------------------------------------------------------

    async def enqueue(self, f: Callable[..., Any] | str, *args: Any, **kwargs: Any) -> AsyncJob:
        """Enqueue ``f(*args, **kwargs)``, with the options of :meth:`Queue.enqueue` (``debounce`` too).

        Enqueueing an id that already has a job does nothing and returns that job, so retrying a
        timed-out enqueue cannot create a duplicate. Calls without options that concurrent tasks make in
        the same event-loop tick are sent in one pipeline (see :class:`~clusterq.state.aio_store.AutoPipeline`);
        each still returns its own job or raises its own error.
        """
        argv = self._fast_argv(f, args, kwargs)
        if argv is not None:  # no options: the script's arguments were built directly (QueueCore._fast_argv)
            store = await self._lazy.get()
            for attempt in range(ID_ATTEMPTS):
                try:
                    # Calls from concurrent tasks in one event-loop tick share one pipeline (AutoPipeline).
                    reply = await store.auto_pipeline.run(self._fast_call(argv))
                except SERVER_ERRORS as exc:
                    raise explain_server_error(exc, f"enqueue to queue {self.name!r}") from exc
                retry = self._fast_settle(argv, reply, attempt)
                if retry is None:
                    return self._job(argv[0])
                argv = retry
        return await self._run(self._enqueue_one_plan(f, args, kwargs))

    async def enqueue_at(self, scheduled_time: datetime | date | str, f: Callable[..., Any] | str, *args: Any,
                         **kwargs: Any) -> AsyncJob:
        """Schedule ``f(*args, **kwargs)`` to run at ``scheduled_time``, as :meth:`Queue.enqueue_at` does
        (a datetime, a date or an ISO 8601 string; a naive datetime is local time; a time in the past
        runs the job at the next promotion)."""
        return await self._run(self._enqueue_at_plan(scheduled_time, f, args, kwargs))

    async def enqueue_in(self, time_delta: timedelta | float | int, f: Callable[..., Any] | str, *args: Any,
                         **kwargs: Any) -> AsyncJob:
        """Schedule ``f(*args, **kwargs)`` to run after ``time_delta`` (a timedelta or seconds), measured on
        the server's clock, as :meth:`Queue.enqueue_in` does."""
        return await self._run(self._enqueue_in_plan(time_delta, f, args, kwargs))

    async def enqueue_call(self, func: Callable[..., Any] | str, args: Sequence[Any] | None = None,
                           kwargs: dict[str, Any] | None = None, at_front: bool = False,
                           **options: Any) -> AsyncJob:
        """RQ's older spelling of :meth:`enqueue`."""
        return (await self.enqueue_many([make_enqueue_data(func, args, kwargs, options)], at_front=at_front))[0]

    async def enqueue_many(self, jobs: Sequence[EnqueueData], *, at_front: bool = False) -> list[AsyncJob]:
        """Enqueue many jobs: chunks of ``ENQUEUE_CHUNK`` per script call, all in one pipeline; jobs with
        ``depends_on`` are deferred and registered with their parents before this returns."""
        argvs = self._plain_jobs(jobs)
        plan = self._enqueue_plan(jobs, at_front) if argvs is None else self._enqueue_plain_plan(argvs, at_front)
        return (await self._run(plan))[0]

    # --- reading ------------------------------------------------------------------------------

    async def fetch_job(self, job_id: str) -> AsyncJob | None:
        """The job with this id in this queue, already read, or None."""
        job = self._job(job_id)
        try:
            return await job.refresh()
        except NoSuchJobError:
            return None

    async def count(self) -> int:
        """Jobs waiting in the queue (O(1))."""
        return await (await self._lazy.get()).count(self.keys)

    async def retried_count(self) -> int:
        """See :attr:`Queue.retried_count`."""
        return await self._run(self._retried_count_plan())

    async def exists(self) -> bool:
        """True once a job was enqueued to this queue (and until :meth:`delete`): it is a known queue."""
        return await self._run(self._exists_plan())

    async def is_empty(self) -> bool:
        return await self.count() == 0

    async def get_job_ids(self, offset: int = 0, length: int = 100) -> list[str]:
        """A page of the ids waiting in the queue, in the order they will run (see :meth:`Queue.get_job_ids`)."""
        return await self._run(self._job_ids_plan(offset, length))

    async def get_jobs(self, offset: int = 0, length: int = 100) -> list[AsyncJob]:
        """Handles on a page of the waiting jobs (not read yet: await ``refresh()`` on those you read)."""
        return [self._job(job_id) for job_id in await self.get_job_ids(offset, length)]

    # --- registries ---------------------------------------------------------------------------

    def registry(self, name: str) -> AsyncRegistry:
        return AsyncRegistry(self, name)

    @property
    def started_job_registry(self) -> AsyncRegistry:
        return AsyncRegistry(self, "started")

    @property
    def finished_job_registry(self) -> AsyncRegistry:
        return AsyncRegistry(self, "finished")

    @property
    def failed_job_registry(self) -> AsyncRegistry:
        return AsyncRegistry(self, "failed")

    @property
    def canceled_job_registry(self) -> AsyncRegistry:
        return AsyncRegistry(self, "canceled")

    @property
    def deferred_job_registry(self) -> AsyncRegistry:
        return AsyncRegistry(self, "deferred")

    @property
    def scheduled_job_registry(self) -> AsyncRegistry:
        return AsyncRegistry(self, "scheduled")

    # --- removing -----------------------------------------------------------------------------

    async def empty(self) -> int:
        """Remove every waiting job (and its record), in bounded batches. Returns how many ids."""
        return await self._run(self._empty_plan())

    async def delete(self, delete_jobs: bool = True) -> None:
        """Delete the queue: its waiting jobs, its registries and their records (see :meth:`Queue.delete`)."""
        await self._run(self._delete_plan())

    # --- control: suspend, limits ----------------------------------------------------------------

    async def suspend(self) -> None:
        """Stop workers from starting this queue's jobs; they stay queued, running ones finish."""
        await self._run(self._suspend_plan(True))

    async def resume(self) -> None:
        """Let workers take this queue's jobs again (they are woken at once)."""
        await self._run(self._suspend_plan(False))

    async def is_suspended(self) -> bool:
        return await self._run(self._is_suspended_plan())

    async def set_rate_limit(self, max_jobs: int, per_s: float) -> None:
        """See :meth:`Queue.set_rate_limit`."""
        await self._run(self._set_rate_limit_plan(max_jobs, per_s))

    async def remove_rate_limit(self) -> None:
        await self._run(self._remove_rate_limit_plan())

    async def rate_limit(self) -> tuple[int, float] | None:
        """``(max_jobs, per_s)``, or None."""
        return await self._run(self._rate_limit_plan())

    async def set_concurrency_limit(self, key: str | None, limit: int | None) -> None:
        """See :meth:`Queue.set_concurrency_limit`."""
        await self._run(self._set_concurrency_limit_plan(key, limit))

    async def concurrency_limits(self) -> dict[str | None, int]:
        return await self._run(self._concurrency_limits_plan())

    # --- all queues ---------------------------------------------------------------------------

    @classmethod
    async def all(cls, connection: AsyncClient, **queue_options: Any) -> list[AsyncQueue]:
        """Every known queue (read with SSCAN, so it never blocks the server), sorted by name."""
        names = {n.decode() if isinstance(n, bytes) else n async for n in connection.sscan_iter(K.QUEUES, count=500)}
        return [cls(name, connection, **queue_options) for name in sorted(names)]


class AsyncRegistry(RegistryCore[AsyncJob]):
    """Jobs of one queue in one state, for asyncio (see :class:`~clusterq.api.registry.Registry`)."""

    queue: AsyncQueue

    def __init__(self, queue: AsyncQueue, name: str) -> None:
        super().__init__(queue, name)

    def _job(self, job_id: str) -> AsyncJob:
        return self.queue._job(job_id)

    def __repr__(self) -> str:
        return f"AsyncRegistry({self.queue.name!r}, {self.name!r})"

    async def count(self) -> int:
        """Entries whose record has not expired. O(log N)."""
        return await self.queue._run(self._count_plan())

    async def overdue_count(self) -> int:
        """See :meth:`Registry.overdue_count`."""
        return await self.queue._run(self._overdue_count_plan())

    async def score_time(self, job_id: str) -> float | None:
        """See :meth:`Registry.score_time`."""
        return await self.queue._run(self._score_time_plan(job_id))

    async def contains(self, item: object) -> bool:
        """``item in registry`` for asyncio: a job or a job id."""
        return await self.queue._run(self._contains_plan(item))

    async def get_job_ids(self, offset: int = 0, length: int = 100) -> list[str]:
        return await self.queue._run(self._job_ids_plan(offset, length))

    async def get_jobs(self, offset: int = 0, length: int = 100) -> list[AsyncJob]:
        return await self.queue._run(self._jobs_plan(offset, length))

    async def requeue(self, *job_ids: str, at_front: bool = False) -> int:
        return await self.queue._run(self._requeue_plan(job_ids, at_front))

    async def cleanup(self) -> int:
        return await self.queue._run(self._cleanup_plan())

    async def clear(self) -> int:
        return await self.queue._run(self._clear_plan())
