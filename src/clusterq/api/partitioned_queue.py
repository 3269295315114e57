"""The synchronous and asyncio front ends of a partitioned queue (:mod:`clusterq.api.partitions`).

``Queue(name, connection, partitions=P)`` and ``AsyncQueue(name, connection, partitions=P)`` return these.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date, datetime, timedelta
from typing import Any

from clusterq.api.aio_job import AsyncJob
from clusterq.api.aio_queue import AsyncQueue
from clusterq.api.enqueue_options import EnqueueData
from clusterq.api.job import Job
from clusterq.api.partitions import PartitionedCore, layout, stored_partitions
from clusterq.api.queue import Queue
from clusterq.api.queue_core import PARTITIONED_FRONTS
from clusterq.connection.aio import AsyncConnectionLike
from clusterq.connection.sync import ConnectionLike, connect
from clusterq.state import store as T
from clusterq.state.aio_store import LazyStore
from clusterq.state.plan import Plan, R, arun_plan, run_plan

__all__ = ["AsyncPartitionedQueue", "PartitionedQueue", "PartitionedRegistry", "open_queue"]


class PartitionedQueue(PartitionedCore[Queue, Job]):
    """One logical queue over ``partitions`` ordinary queues, each in its own slot (see
    docs/partitioned-queues.md). Takes the options of :class:`~clusterq.Queue`; ``enqueue`` also takes
    ``partition_key=`` (a str: jobs of one key go to one partition, in order)."""

    def __init__(self, name: str = "default", connection: ConnectionLike = None, *, partitions: int,
                 **options: Any) -> None:
        names = self._setup_partitions(name, partitions)
        if options.get("is_async") is False:
            raise ValueError("a partitioned queue has no synchronous mode (is_async=False); use a plain Queue in tests")
        client = connect(connection)
        self.connection = client
        self._options = options
        self.parts = [Queue(n, client, **options) for n in names]
        self.store: T.Store = self.parts[0].store

    def _make_parts(self, names: Sequence[str]) -> list[Queue]:
        known = {part.name: part for part in self.parts}
        return [known.get(n) or Queue(n, self.connection, **self._options) for n in names]

    def resize(self, partitions: int) -> None:
        """Change the partition count while producers and workers run (see docs/partitioned-queues.md,
        changing the partition count): new jobs go to the new partitions; workers serve the old ones too
        until they are empty, then forget them."""
        self._run(self._resize_plan(partitions))

    def __repr__(self) -> str:
        return f"PartitionedQueue({self.name!r}, partitions={self.partitions})"

    def _run(self, plan: Plan[R]) -> R:
        return run_plan(plan, self.store)

    def exists(self) -> bool:
        """True once the partition count is stored (a producer declared it) or partition 0 is a known queue."""
        return bool(self.connection.exists(self.keys.partitions)) or self.parts[0].exists()

    def declare(self) -> None:
        """Store the partition count (or check it against the stored one) now; enqueues do it on first use."""
        self._run(self._declare_plan())

    # --- enqueue ------------------------------------------------------------------------------

    def enqueue(self, f: Callable[..., Any] | str, *args: Any, **kwargs: Any) -> Job:
        """:meth:`Queue.enqueue` on the partition this job routes to (``partition_key=``, else its
        concurrency key, debounce key or explicit id, else the next partition round-robin)."""
        data, key, kwargs = self._check_one(f, args, kwargs)
        self.declare()
        return self._pick(data, key).enqueue(f, *args, **kwargs)

    def enqueue_at(self, scheduled_time: datetime | date | str, f: Callable[..., Any] | str, *args: Any,
                   **kwargs: Any) -> Job:
        data, key, kwargs = self._check_one(f, args, kwargs)
        self.declare()
        return self._pick(data, key).enqueue_at(scheduled_time, f, *args, **kwargs)

    def enqueue_in(self, time_delta: timedelta | float | int, f: Callable[..., Any] | str, *args: Any,
                   **kwargs: Any) -> Job:
        data, key, kwargs = self._check_one(f, args, kwargs)
        self.declare()
        return self._pick(data, key).enqueue_in(time_delta, f, *args, **kwargs)

    def enqueue_call(self, func: Callable[..., Any] | str, args: Sequence[Any] | None = None,
                     kwargs: dict[str, Any] | None = None, at_front: bool = False, *,
                     partition_key: str | None = None, **options: Any) -> Job:
        return self.enqueue_many([self.prepare_data(func, args, kwargs, **options)], at_front=at_front,
                                 partition_keys=[partition_key])[0]

    def enqueue_many(self, jobs: Sequence[EnqueueData], *, at_front: bool = False,
                     partition_keys: Sequence[str | None] | None = None) -> list[Job]:
        """Enqueue many jobs, grouped by partition; the partitions' script calls go in one pipeline per
        node. ``partition_keys`` (one per job, or None) routes as ``enqueue``'s ``partition_key``."""
        return self._run(self._enqueue_many_plan(jobs, at_front, partition_keys))

    # --- reading ------------------------------------------------------------------------------

    def fetch_job(self, job_id: str) -> Job | None:
        """The job with this id in any partition, or None (one pipeline per node)."""
        index = self._run(self._find_plan(job_id))
        return None if index is None else self.parts[index].fetch_job(job_id)

    @property
    def count(self) -> int:
        """Jobs waiting in all partitions (one pipeline per node)."""
        return sum(self.counts())

    def counts(self) -> list[int]:
        """Jobs waiting in each partition, in partition order."""
        return self._run(self._counts_plan())

    def __len__(self) -> int:
        return self.count

    def is_empty(self) -> bool:
        return self.count == 0

    def layout(self) -> list[tuple[str, int, str]]:
        """Where each partition lives: (queue name, slot, node ``host:port``; "" off a cluster)."""
        return layout(self.connection, self.partition_names)

    def registry(self, name: str) -> PartitionedRegistry:
        return PartitionedRegistry(self, name)

    @property
    def started_job_registry(self) -> PartitionedRegistry:
        return self.registry("started")

    @property
    def finished_job_registry(self) -> PartitionedRegistry:
        return self.registry("finished")

    @property
    def failed_job_registry(self) -> PartitionedRegistry:
        return self.registry("failed")

    @property
    def canceled_job_registry(self) -> PartitionedRegistry:
        return self.registry("canceled")

    @property
    def scheduled_job_registry(self) -> PartitionedRegistry:
        return self.registry("scheduled")

    @property
    def deferred_job_registry(self) -> PartitionedRegistry:
        return self.registry("deferred")

    # --- removing and control -----------------------------------------------------------------

    def empty(self) -> int:
        """Remove every waiting job of every partition. Returns how many ids."""
        return sum(self._run(self._all_plan(lambda part: part._empty_plan())))

    def delete(self, delete_jobs: bool = True) -> None:
        """Delete every partition (see :meth:`Queue.delete`) and the stored partition count."""
        self._run(self._delete_all_plan())

    def suspend(self) -> None:
        self._run(self._all_plan(lambda part: part._suspend_plan(True)))

    def resume(self) -> None:
        self._run(self._all_plan(lambda part: part._suspend_plan(False)))

    @property
    def is_suspended(self) -> bool:
        """True while every partition is suspended."""
        return self._run(self._is_suspended_plan())

    def set_rate_limit(self, max_jobs: int, per_s: float) -> None:
        """Limit the logical queue to ``max_jobs`` starts per ``per_s`` seconds, split over the partitions
        (see :func:`~clusterq.api.partitions.rate_limit_shares` and docs/partitioned-queues.md)."""
        self._run(self._set_rate_limit_plan(max_jobs, per_s))

    def remove_rate_limit(self) -> None:
        self._run(self._remove_rate_limit_plan())

    @property
    def rate_limit(self) -> tuple[int, float] | None:
        return self._run(self._rate_limit_plan())

    def set_concurrency_limit(self, key: str | None, limit: int | None) -> None:
        """Set on every partition; jobs of one concurrency key all go to one partition, so the limit per key
        holds for the logical queue."""
        self._run(self._all_plan(lambda part: part._set_concurrency_limit_plan(key, limit)))

    @property
    def concurrency_limits(self) -> dict[str | None, int]:
        return self.parts[0].concurrency_limits


class PartitionedRegistry:
    """A registry summed over the partitions: ``count`` in one pipeline per node; pages read partition by
    partition (bounded: at most ``offset + length`` ids from each)."""

    def __init__(self, queue: PartitionedQueue, name: str) -> None:
        queue.parts[0].keys.registry(name)  # an unknown name fails here
        self.queue = queue
        self.name = name

    def __repr__(self) -> str:
        return f"PartitionedRegistry({self.queue.name!r}, {self.name!r})"

    @property
    def count(self) -> int:
        return sum(self.counts())

    def counts(self) -> list[int]:
        return self.queue._run(self.queue._registry_counts_plan(self.name))

    def __len__(self) -> int:
        return self.count

    def get_job_ids(self, offset: int = 0, length: int = 100) -> list[str]:
        """A page of the ids, partition after partition."""
        ids: list[str] = []
        skip = offset
        for part, size in zip(self.queue.parts, self.counts()):
            if len(ids) >= length:
                break
            if skip >= size:
                skip -= size
                continue
            ids += part.registry(self.name).get_job_ids(skip, length - len(ids))
            skip = 0
        return ids

    def get_jobs(self, offset: int = 0, length: int = 100) -> list[Job]:
        by_id: list[Job] = []
        skip = offset
        for part, size in zip(self.queue.parts, self.counts()):
            if len(by_id) >= length:
                break
            if skip >= size:
                skip -= size
                continue
            by_id += part.registry(self.name).get_jobs(skip, length - len(by_id))
            skip = 0
        return by_id

    def clear(self) -> int:
        return sum(part.registry(self.name).clear() for part in self.queue.parts)


class AsyncPartitionedQueue(PartitionedCore[AsyncQueue, AsyncJob]):
    """:class:`PartitionedQueue` for asyncio (reads are coroutine methods, as on :class:`AsyncQueue`)."""

    def __init__(self, name: str = "default", connection: AsyncConnectionLike = None, *, partitions: int,
                 **options: Any) -> None:
        names = self._setup_partitions(name, partitions)
        self._lazy = LazyStore(connection)
        self._connection = connection
        self._options = options
        self.parts = []
        self.parts = self._make_parts(names)

    def _make_parts(self, names: Sequence[str]) -> list[AsyncQueue]:
        known = {part.name: part for part in self.parts}
        parts = [known.get(n) or AsyncQueue(n, self._connection, **self._options) for n in names]
        for part in parts:
            part._lazy = self._lazy  # one client for every partition
        return parts

    async def resize(self, partitions: int) -> None:
        """See :meth:`PartitionedQueue.resize`."""
        await self._run(self._resize_plan(partitions))

    def __repr__(self) -> str:
        return f"AsyncPartitionedQueue({self.name!r}, partitions={self.partitions})"

    async def __aenter__(self) -> AsyncPartitionedQueue:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._lazy.aclose()

    async def _run(self, plan: Plan[R]) -> R:
        return await arun_plan(plan, await self._lazy.get())

    async def declare(self) -> None:
        await self._run(self._declare_plan())

    async def enqueue(self, f: Callable[..., Any] | str, *args: Any, **kwargs: Any) -> AsyncJob:
        data, key, kwargs = self._check_one(f, args, kwargs)
        await self.declare()
        return await self._pick(data, key).enqueue(f, *args, **kwargs)

    async def enqueue_at(self, scheduled_time: datetime | date | str, f: Callable[..., Any] | str, *args: Any,
                         **kwargs: Any) -> AsyncJob:
        data, key, kwargs = self._check_one(f, args, kwargs)
        await self.declare()
        return await self._pick(data, key).enqueue_at(scheduled_time, f, *args, **kwargs)

    async def enqueue_in(self, time_delta: timedelta | float | int, f: Callable[..., Any] | str, *args: Any,
                         **kwargs: Any) -> AsyncJob:
        data, key, kwargs = self._check_one(f, args, kwargs)
        await self.declare()
        return await self._pick(data, key).enqueue_in(time_delta, f, *args, **kwargs)

    async def enqueue_call(self, func: Callable[..., Any] | str, args: Sequence[Any] | None = None,
                           kwargs: dict[str, Any] | None = None, at_front: bool = False, *,
                           partition_key: str | None = None, **options: Any) -> AsyncJob:
        return (await self.enqueue_many([self.prepare_data(func, args, kwargs, **options)], at_front=at_front,
                                        partition_keys=[partition_key]))[0]

    async def enqueue_many(self, jobs: Sequence[EnqueueData], *, at_front: bool = False,
                           partition_keys: Sequence[str | None] | None = None) -> list[AsyncJob]:
        return await self._run(self._enqueue_many_plan(jobs, at_front, partition_keys))

    async def fetch_job(self, job_id: str) -> AsyncJob | None:
        index = await self._run(self._find_plan(job_id))
        return None if index is None else await self.parts[index].fetch_job(job_id)

    async def count(self) -> int:
        return sum(await self.counts())

    async def counts(self) -> list[int]:
        return await self._run(self._counts_plan())

    async def is_empty(self) -> bool:
        return await self.count() == 0

    async def registry_count(self, name: str) -> int:
        """The size of registry ``name`` summed over the partitions."""
        return sum(await self._run(self._registry_counts_plan(name)))

    async def empty(self) -> int:
        return sum(await self._run(self._all_plan(lambda part: part._empty_plan())))

    async def delete(self, delete_jobs: bool = True) -> None:
        await self._run(self._delete_all_plan())

    async def suspend(self) -> None:
        await self._run(self._all_plan(lambda part: part._suspend_plan(True)))

    async def resume(self) -> None:
        await self._run(self._all_plan(lambda part: part._suspend_plan(False)))

    async def is_suspended(self) -> bool:
        return await self._run(self._is_suspended_plan())

    async def set_rate_limit(self, max_jobs: int, per_s: float) -> None:
        await self._run(self._set_rate_limit_plan(max_jobs, per_s))

    async def remove_rate_limit(self) -> None:
        await self._run(self._remove_rate_limit_plan())

    async def rate_limit(self) -> tuple[int, float] | None:
        return await self._run(self._rate_limit_plan())

    async def set_concurrency_limit(self, key: str | None, limit: int | None) -> None:
        await self._run(self._all_plan(lambda part: part._set_concurrency_limit_plan(key, limit)))


PARTITIONED_FRONTS["sync"] = PartitionedQueue
PARTITIONED_FRONTS["async"] = AsyncPartitionedQueue


def open_queue(name: str, connection: ConnectionLike = None, **options: Any) -> Queue | PartitionedQueue:
    """The queue ``name`` as stored: a :class:`PartitionedQueue` with the stored partition count if a
    producer declared one, else a plain :class:`Queue` (one read; for tools that are given a name)."""
    client = connect(connection)
    partitions = stored_partitions(client, name)
    if partitions and partitions > 1:
        return PartitionedQueue(name, client, partitions=partitions, **options)
    return Queue(name, client, **options)
