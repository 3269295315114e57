"""The producer API for asyncio: ``await AsyncQueue(name, connection).enqueue(func, *args, **kwargs)``.

The names, options and records are those of :class:`~clusterq.api.queue.Queue` and :class:`~clusterq.api.job.Job`,
awaitable. Both APIs build the same script calls (:mod:`clusterq.state.store`) and differ only in how they send
them (:mod:`clusterq.aio_store`), so a job enqueued here is run by the ordinary
:class:`~clusterq.worker.Worker` and can be read with the synchronous :class:`~clusterq.api.job.Job`, and the
other way round.

An application opens one client when it starts and shares it between its queues (an asyncio client is
tied to its event loop; see :mod:`clusterq.aio_connection`). With FastAPI, for example::

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
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from types import TracebackType
from typing import Any

from clusterq.api import options as O
from clusterq.api.aio_job import AsyncJob
from clusterq.api.dependency import parse_depends_on
from clusterq.api.hooks import EMPTY, HookSet
from clusterq.api.job import DEFAULT_FAILURE_TTL_S
from clusterq.api.queue import (
    DRAIN_BATCH,
    ENQUEUE_CHUNK,
    PAGE_LIMIT,
    EnqueueData,
    Queue,
    _refuse_debounce,
    check_duplicates,
    parse_duration,
    refuse_depends_on,
    split_enqueue_options,
    validate_result_history,
)
from clusterq.connection.aio import AsyncClient, AsyncConnectionLike, connect_async, disconnect_async
from clusterq.exceptions import NoSuchJobError
from clusterq.serializers import Serializer, resolve_serializer
from clusterq.signing import Signer, SigningKey, make_signer
from clusterq.state import keys as K
from clusterq.state import store as T
from clusterq.state import transitions as TR
from clusterq.state.aio_store import AsyncStore, LazyStore
from clusterq.state.outbox import child_dependent, registration_entry, split_handle

__all__ = [
    "AsyncClient",
    "AsyncJob",
    "AsyncQueue",
    "AsyncStore",
    "EnqueueData",
    "JobDefaults",
    "build_new_job",
    "connect_async",
    "disconnect_async",
    "split_enqueue_options",
]


# --- building a job: the sync Queue's rules, without a sync Queue ---------------------------------------

@dataclass(frozen=True)
class JobDefaults:
    """What a queue lends the jobs it enqueues when they do not say otherwise."""

    serializer: Serializer
    default_timeout: float | None = None
    result_ttl: float | None = None
    failure_ttl: float | None = None
    max_attempts: int | None = None
    name: str = ""  # the queue's name, which a job's signature covers
    signer: Signer | None = None
    result_history: int | None = None
    hooks: HookSet = EMPTY  # before_enqueue runs for each job built


def build_new_job(data: EnqueueData, defaults: JobDefaults) -> T.NewJob:
    """The record the enqueue script stores for ``data``, by exactly the rules of :class:`Queue`.

    ``Queue._new_job`` reads nothing from its queue but the attributes of :class:`JobDefaults`,
    so it runs here with ``defaults`` standing in for the queue: one implementation of ids, option
    parsing and validation for both APIs. (Once queue.py offers this as a module-level function, this
    becomes an import.)
    """
    return Queue._new_job(defaults, data)  # type: ignore[arg-type]


# --- queues -----------------------------------------------------------------------------------------

class AsyncQueue:
    """A named queue on a Redis deployment, for asyncio.

    ``connection`` is a ``redis.asyncio`` client (from :func:`connect_async`, or the application's own),
    shared by as many queues as the application likes; or a URL, which this queue opens on first use and
    closes in ``aclose()`` (or ``async with``). The options are those of :class:`~clusterq.api.queue.Queue`.
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
        hooks: Sequence[Any] = (),
    ) -> None:
        self.name = K.validate_queue_name(name)
        self.keys = K.QueueKeys(name)
        self.serializer = resolve_serializer(serializer)
        self.defaults = JobDefaults(
            serializer=self.serializer,
            default_timeout=parse_duration(default_timeout, "default_timeout"),
            result_ttl=parse_duration(result_ttl, "result_ttl"),
            failure_ttl=parse_duration(failure_ttl, "failure_ttl"),
            max_attempts=O.max_attempts(max_attempts),
            name=self.name,
            signer=make_signer(signing_key),
            result_history=validate_result_history(result_history),
            hooks=HookSet(hooks),
        )
        self._lazy = LazyStore(connection)
        self._registered = False

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

    @property
    def key(self) -> str:
        """The common prefix (and hash tag) of this queue's keys."""
        return self.keys.base

    @property
    def slot(self) -> int:
        return K.queue_slot(self.name)

    def _job(self, job_id: str) -> AsyncJob:
        return AsyncJob._bound(self.name, job_id, self._lazy, self.serializer)

    # --- enqueue ------------------------------------------------------------------------------

    def prepare_data(self, func: Callable[..., Any] | str, args: Sequence[Any] = (),
                     kwargs: dict[str, Any] | None = None, **options: Any) -> EnqueueData:
        """Describe a job for :meth:`enqueue_many` (RQ's ``Queue.prepare_data``)."""
        O.check(**options)  # a bad option fails here, where it is written, not at enqueue_many
        if "timeout" in options:
            options.setdefault("job_timeout", options.pop("timeout"))
        return EnqueueData(func, tuple(args), dict(kwargs or {}), **options)

    async def enqueue(self, f: Callable[..., Any] | str, *args: Any, **kwargs: Any) -> AsyncJob:
        """Enqueue ``f(*args, **kwargs)``.

        Options, as in RQ: ``job_id``, ``job_timeout``, ``result_ttl``, ``ttl``, ``failure_ttl``,
        ``description``, ``meta``, ``at_front``, ``max_attempts``; and ``args=``/``kwargs=`` to pass
        arguments whose names collide with those. Enqueueing an id that already has a job does nothing
        and returns that job, so retrying a timed-out enqueue cannot create a duplicate.
        """
        data, at_front = split_enqueue_options(f, args, kwargs)
        return (await self.enqueue_many([data], at_front=at_front))[0]

    async def enqueue_at(self, scheduled_time: datetime | date | str, f: Callable[..., Any] | str, *args: Any,
                         **kwargs: Any) -> AsyncJob:
        """Schedule ``f(*args, **kwargs)`` to run at ``scheduled_time``, as :meth:`Queue.enqueue_at` does
        (a naive datetime is local time; a time in the past runs the job at the next promotion)."""
        data, at_front = split_enqueue_options(f, args, kwargs)
        at_ms = O.run_at_ms(scheduled_time)
        return (await self._schedule([data], at_front, at_ms=at_ms))[0]

    async def enqueue_in(self, time_delta: timedelta | float | int, f: Callable[..., Any] | str, *args: Any,
                         **kwargs: Any) -> AsyncJob:
        """Schedule ``f(*args, **kwargs)`` to run after ``time_delta`` (a timedelta or seconds), measured on
        the server's clock, as :meth:`Queue.enqueue_in` does."""
        delay_ms = O.delay_ms(time_delta)
        data, at_front = split_enqueue_options(f, args, kwargs)
        return (await self._schedule([data], at_front, delay_ms=delay_ms))[0]

    async def _schedule(self, jobs: Sequence[EnqueueData], at_front: bool, *, at_ms: int | None = None,
                        delay_ms: int | None = None) -> list[AsyncJob]:
        _refuse_debounce(jobs)
        refuse_depends_on(jobs, "enqueue_at/enqueue_in")
        new = [build_new_job(data, self.defaults) for data in jobs]  # bad input fails before any I/O
        store = await self._lazy.get()
        await self._register(store)
        calls = [T.schedule_call(self.keys, new[i : i + ENQUEUE_CHUNK], at_ms=at_ms, delay_ms=delay_ms,
                                 at_front=at_front) for i in range(0, len(new), ENQUEUE_CHUNK)]
        results = await store.run_many(calls)
        jobs_out = [self._job(job.id) for job in new]
        check_duplicates(self.name, new, [code for reply in results for code in TR.parse_schedule(reply).codes],
                         jobs_out)
        return jobs_out

    async def _register(self, store: AsyncStore) -> None:
        if not self._registered:  # the global set of known queues: once per queue object, never in a script
            await store.client.sadd(K.QUEUES, self.name)
            self._registered = True

    async def enqueue_call(self, func: Callable[..., Any] | str, args: Sequence[Any] | None = None,
                           kwargs: dict[str, Any] | None = None, at_front: bool = False,
                           **options: Any) -> AsyncJob:
        """RQ's older spelling of :meth:`enqueue`."""
        data = EnqueueData(func, tuple(args or ()), dict(kwargs or {}), **options)
        return (await self.enqueue_many([data], at_front=at_front))[0]

    async def enqueue_many(self, jobs: Sequence[EnqueueData], *, at_front: bool = False) -> list[AsyncJob]:
        """Enqueue many jobs: chunks of ``ENQUEUE_CHUNK`` per script call, all in one pipeline."""
        _refuse_debounce(jobs)
        new = [build_new_job(data, self.defaults) for data in jobs]  # bad input fails before any I/O
        deferred = [(job, parse_depends_on(data.depends_on, self.name))
                    for job, data in zip(new, jobs) if data.depends_on is not None]
        deferred = [(job, spec) for job, spec in deferred if spec[0]]  # depends_on=[]: nothing to wait for
        waiting = {job.id for job, _ in deferred}
        ready = [job for job in new if job.id not in waiting]
        store = await self._lazy.get()
        await self._register(store)
        calls = [
            T.enqueue_call(self.keys, ready[i : i + ENQUEUE_CHUNK], at_front)
            for i in range(0, len(ready), ENQUEUE_CHUNK)
        ]
        if at_front:
            calls.reverse()  # later chunks first, so the whole batch keeps its order at the head
        defer_calls = [T.defer_call(self.keys, job, parents, at_front or front) for job, (parents, front) in deferred]
        enqueue_replies, defer_replies = T.split_results(await store.run_many(calls + defer_calls), calls, defer_calls)
        deferred_codes = [TR.parse_defer(reply) for reply in defer_replies]
        chunks = [TR.parse_created(reply) for reply in enqueue_replies]
        if at_front:
            chunks.reverse()
        await self._register_children(store, [(job, parents) for (job, (parents, _)), code
                                              in zip(deferred, deferred_codes) if code is TR.Created.CREATED])
        jobs_out = [self._job(job.id) for job in new]
        check_duplicates(self.name, [*ready, *(job for job, _ in deferred)],
                         [*(code for reply in chunks for code in reply), *deferred_codes], jobs_out)
        return jobs_out

    @staticmethod
    def _text(value: Any) -> str:
        return value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else str(value)

    async def _register_children(self, store: AsyncStore, children: list[tuple[T.NewJob, list[tuple[str, bool]]]]
                                 ) -> None:
        """Register new deferred children with their parents (the forwarder's registration step, see
        :mod:`clusterq.state.outbox`). A parent that already ended is applied to the child here. Whatever fails
        or is interrupted stays in this queue's outbox, and the workers of this queue replay it."""
        pairs = [(job.id, handle) for job, parents in children for handle, _ in parents]
        if not pairs:
            return
        targets = [split_handle(handle) for _, handle in pairs]
        registered = await store.run_many(
            [T.register_call(K.QueueKeys(queue), child_dependent(self.name, child), [parent_id])
             for (child, _), (queue, parent_id) in zip(pairs, targets)], raise_on_error=False)
        ended = [(child, handle, "" if isinstance(reply, BaseException) else TR.parse_register(reply)[0])
                 for (child, handle), reply in zip(pairs, registered)]  # one parent per call
        applies = [T.resolve_call(self.keys, child, handle, how, DEFAULT_FAILURE_TTL_S * 1000)
                   for child, handle, how in ended if how]
        applied = await store.run_many(applies, raise_on_error=False) if applies else []
        if any(isinstance(r, BaseException) for r in [*registered, *applied]):
            return  # left for a replay: the acks below would hide them
        await store.run_many([T.ack_call(self.keys, registration_entry(handle, child)) for child, handle in pairs])

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

    async def is_empty(self) -> bool:
        return await self.count() == 0

    async def get_job_ids(self, offset: int = 0, length: int = 100) -> list[str]:
        """A page of the ids waiting in the queue, in order (ids canceled meanwhile may still show)."""
        if length < 0 or length > PAGE_LIMIT:
            raise ValueError(f"length must be between 0 and {PAGE_LIMIT}; page through longer queues")
        if length == 0:
            return []
        return await (await self._lazy.get()).job_ids(self.keys, offset, length)

    # --- removing -----------------------------------------------------------------------------

    async def empty(self) -> int:
        """Remove every waiting job (and its record), in bounded batches. Returns how many ids."""
        store = await self._lazy.get()
        removed = 0
        while True:
            n = TR.parse_count(await store.run(T.drain_call(self.keys, DRAIN_BATCH)))
            removed += n
            if not n:
                return removed
