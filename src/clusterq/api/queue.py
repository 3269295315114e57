"""The producer API, named as RQ names it: ``Queue(name, connection).enqueue(func, *args, **kwargs)``.

The rules (options, job records, which calls an operation sends and how replies are read) live in
:class:`~clusterq.api.queue_core.QueueCore`, shared with :class:`~clusterq.api.aio_queue.AsyncQueue`;
this front end runs its plans on a synchronous store.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from datetime import date, datetime, timedelta
from typing import Any

from clusterq.api.enqueue_options import (  # noqa: F401 - re-exported: their historical home
    DEBOUNCE_POINTER_TTL_S,
    MAX_PRIORITY,
    EnqueueData,
    make_enqueue_data,
    parse_duration,
    refuse_depends_on,
    split_enqueue_options,
    validate_job_id,
    validate_result_history,
)
from clusterq.api.execution import Executor
from clusterq.api.inline import inline_executor, run_inline
from clusterq.api.job import Job
from clusterq.api.queue_core import (  # noqa: F401 - re-exported: their historical home
    DRAIN_BATCH,
    ENQUEUE_CHUNK,
    ID_ATTEMPTS,
    QueueCore,
    check_duplicates,
    partitioned_front,
)
from clusterq.api.registry import Registry
from clusterq.api.registry_core import PAGE_LIMIT  # noqa: F401 - re-exported: its historical home
from clusterq.connection.sync import Client, ConnectionLike, connect
from clusterq.exceptions import explain_server_error
from clusterq.serializers import Serializer
from clusterq.signing import Signer, SigningKey
from clusterq.state import keys as K
from clusterq.state import store as T
from clusterq.state.plan import SERVER_ERRORS, Plan, R, run_plan

__all__ = ["EnqueueData", "Queue", "parse_duration", "split_enqueue_options"]


class Queue(QueueCore[Job]):
    """A named queue on a Redis deployment.

    ``connection`` is a URL (``redis://``, ``redis+sentinel://``, ``redis+cluster://``...), a redis-py
    client, or None for ``$CLUSTERQ_URL``. All of a queue's keys share one hash tag, so on a cluster the
    whole queue lives in one slot; different queues spread over the nodes.

    ``signing_key`` (bytes or str, or a list whose first key signs) makes every job this queue writes
    carry an HMAC that workers given the key check before running it (see :mod:`clusterq.signing`).

    ``is_async=False`` (for tests) makes ``enqueue`` run each job at once in the calling thread and
    record its outcome as a worker would (see :mod:`clusterq.inline`).

    ``hooks`` are :mod:`clusterq.api.hooks` objects: their ``before_enqueue`` runs for each job this
    queue writes (and, in synchronous mode, the perform hooks around it), after the process-wide ones.

    ``wait_replicas=N`` makes enqueue durable: it returns only once N replicas have the jobs (Redis
    ``WAIT``, at most ``wait_timeout_s``), and raises :class:`~clusterq.ReplicationTimeout` otherwise.
    """

    def __init__(
        self,
        name: str = "default",
        connection: ConnectionLike = None,
        *,
        serializer: Serializer | str | None = None,
        default_timeout: float | int | str | None = None,
        result_ttl: float | int | str | None = None,
        failure_ttl: float | int | str | None = None,
        max_attempts: int | None = None,
        signing_key: SigningKey | Signer | None = None,
        result_history: int | None = None,
        is_async: bool = True,
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
        self.connection: Client = connect(connection)
        self.is_async = is_async
        self._inline: Executor | None = None
        self.store = T.Store(self.connection)

    def __new__(cls, *args: Any, partitions: int | None = None, **kwargs: Any) -> Any:
        """``partitions=P`` (an int from 1 to 1024) makes one logical queue over P partitions, each an
        ordinary queue in its own slot: see docs/partitioned-queues.md."""
        if partitions is None or cls is not Queue:
            return super().__new__(cls)
        return partitioned_front("sync", args, {**kwargs, "partitions": partitions})

    def __repr__(self) -> str:
        return f"Queue({self.name!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Queue) and other.name == self.name and other.connection is self.connection

    def __hash__(self) -> int:
        return hash(self.name)

    def _run(self, plan: Plan[R]) -> R:
        return run_plan(plan, self.store)

    def _register(self) -> None:
        """Add this queue to the set of known queues (once per Queue object)."""
        self._run(self._register_plan())

    def _job(self, job_id: str) -> Job:
        return Job.trusted(self.name, job_id, self.keys, self.store, self.serializer)

    # --- enqueue ------------------------------------------------------------------------------

    def enqueue(self, f: Callable[..., Any] | str, *args: Any, **kwargs: Any) -> Job:
        """Enqueue ``f(*args, **kwargs)``.

        Options, as in RQ: ``job_id``, ``job_timeout``, ``result_ttl``, ``ttl``, ``failure_ttl``,
        ``description``, ``meta``, ``at_front``, ``max_attempts``; and ``args=``/``kwargs=`` to pass
        arguments whose names collide with those. Enqueueing an id that already has a job does nothing
        and returns that job, so retrying a timed-out enqueue cannot create a duplicate.
        """
        argv = self._fast_argv(f, args, kwargs) if self.is_async else None
        if argv is not None:  # no options: the script's arguments were built directly (QueueCore._fast_argv)
            for attempt in range(ID_ATTEMPTS):
                try:
                    reply = self.store.run_packed(self._fast_call(argv))
                except SERVER_ERRORS as exc:
                    raise explain_server_error(exc, f"enqueue to queue {self.name!r}") from exc
                retry = self._fast_settle(argv, reply, attempt)
                if retry is None:
                    return Job.trusted(self.name, argv[0], self.keys, self.store, self.serializer)
                argv = retry
        job = self._run(self._enqueue_one_plan(f, args, kwargs))
        self._run_inline([job])
        return job

    def enqueue_at(self, scheduled_time: datetime | date | str, f: Callable[..., Any] | str, *args: Any,
                   **kwargs: Any) -> Job:
        """Schedule ``f(*args, **kwargs)`` to run at ``scheduled_time``; the options of :meth:`enqueue`.

        ``scheduled_time`` is a datetime, a date (its local midnight) or an ISO 8601 string. A naive
        datetime is local time (as ``datetime.timestamp()`` reads it). The run-at time is
        computed on this machine's clock; workers promote the job once the server's clock reaches it.
        A time in the past runs the job at once (at the next promotion). ``ttl`` counts from the run-at
        time.
        """
        return self._run(self._enqueue_at_plan(scheduled_time, f, args, kwargs))

    def enqueue_in(self, time_delta: timedelta | float | int, f: Callable[..., Any] | str, *args: Any,
                   **kwargs: Any) -> Job:
        """Schedule ``f(*args, **kwargs)`` to run after ``time_delta`` (a timedelta or seconds), measured
        on the server's clock; the options of :meth:`enqueue`."""
        return self._run(self._enqueue_in_plan(time_delta, f, args, kwargs))

    def _schedule(self, jobs: Sequence[EnqueueData], at_front: bool, *, at_ms: int | None = None,
                  delay_ms: int | None = None) -> list[Job]:
        """Create scheduled jobs (status ``scheduled``, in :attr:`scheduled_job_registry`)."""
        return self._run(self._schedule_plan(jobs, at_front, at_ms=at_ms, delay_ms=delay_ms))

    def enqueue_call(self, func: Callable[..., Any] | str, args: Sequence[Any] | None = None,
                     kwargs: dict[str, Any] | None = None, at_front: bool = False, **options: Any) -> Job:
        """RQ's older spelling of :meth:`enqueue`."""
        return self.enqueue_many([make_enqueue_data(func, args, kwargs, options)], at_front=at_front)[0]

    def enqueue_many(self, jobs: Sequence[EnqueueData], *, at_front: bool = False) -> list[Job]:
        """Enqueue many jobs: chunks of :data:`ENQUEUE_CHUNK` per script call, all in one pipeline.

        A job with ``depends_on`` is created deferred (one script call each) and registered with its
        parents before this returns (see :class:`~clusterq.Dependency`)."""
        return self._enqueue(jobs, at_front)[0]

    def _enqueue(self, jobs: Sequence[EnqueueData], at_front: bool) -> tuple[list[Job], list[bool]]:
        """:meth:`enqueue_many`, also saying which jobs were created (False: the id existed)."""
        argvs = self._plain_jobs(jobs)
        plan = self._enqueue_plan(jobs, at_front) if argvs is None else self._enqueue_plain_plan(argvs, at_front)
        enqueued, created = self._run(plan)
        self._run_inline(enqueued)
        return enqueued, created

    def _run_inline(self, jobs: list[Job]) -> None:
        if not self.is_async:
            self._inline = self._inline or inline_executor(self)
            run_inline(self, self._inline, jobs)

    # --- reading ------------------------------------------------------------------------------

    def fetch_job(self, job_id: str) -> Job | None:
        """The job with this id in this queue, or None."""
        job = self._job(job_id)
        return job if job.exists() else None

    @property
    def count(self) -> int:
        """Jobs waiting in the queue (O(1))."""
        return self.store.count(self.keys)

    def __len__(self) -> int:
        return self.count

    @property
    def retried_count(self) -> int:
        """Failed attempts that were run again (``Retry``, ``RetryJob``) since the queue was created: the
        failed registry counts only final failures. O(1)."""
        return self._run(self._retried_count_plan())

    def exists(self) -> bool:
        """True once a job was enqueued to this queue (and until :meth:`delete`): it is a known queue."""
        return self._run(self._exists_plan())

    def is_empty(self) -> bool:
        return self.count == 0

    def get_job_ids(self, offset: int = 0, length: int = 100) -> list[str]:
        """A page of the ids waiting in the queue, in the order they will run: jobs without a priority,
        then those with one, by level (ids canceled meanwhile may still show; jobs set aside by a
        concurrency limit do not)."""
        return self._run(self._job_ids_plan(offset, length))

    @property
    def job_ids(self) -> list[str]:
        """The first 100 waiting ids; use :meth:`get_job_ids` to page further."""
        return self.get_job_ids()

    def get_jobs(self, offset: int = 0, length: int = 100) -> list[Job]:
        return [self._job(job_id) for job_id in self.get_job_ids(offset, length)]

    @property
    def jobs(self) -> list[Job]:
        return self.get_jobs()

    def iter_job_ids(self, page: int = 1000) -> Iterator[str]:
        """Every waiting id, read one page at a time."""
        offset = 0
        while True:
            ids = self.get_job_ids(offset, page)
            yield from ids
            if len(ids) < page:
                return
            offset += page

    # --- registries ---------------------------------------------------------------------------

    def registry(self, name: str) -> Registry:
        return Registry(self, name)

    @property
    def started_job_registry(self) -> Registry:
        return Registry(self, "started")

    @property
    def finished_job_registry(self) -> Registry:
        return Registry(self, "finished")

    @property
    def failed_job_registry(self) -> Registry:
        return Registry(self, "failed")

    @property
    def canceled_job_registry(self) -> Registry:
        return Registry(self, "canceled")

    @property
    def deferred_job_registry(self) -> Registry:
        """Jobs waiting for their dependencies (``depends_on``), oldest first."""
        return Registry(self, "deferred")

    @property
    def scheduled_job_registry(self) -> Registry:
        """Jobs waiting for their run-at time (:meth:`enqueue_at`, :meth:`enqueue_in`), earliest first."""
        return Registry(self, "scheduled")

    # --- removing -----------------------------------------------------------------------------

    def empty(self) -> int:
        """Remove every waiting job (and its record), in bounded batches. Returns how many ids."""
        return self._run(self._empty_plan())

    def delete(self, delete_jobs: bool = True) -> None:
        """Delete the queue: its waiting jobs, its registries and their records, in bounded batches.

        Jobs running now keep running; their outcome is then dropped. ``delete_jobs=False`` is accepted
        for RQ compatibility and behaves the same, since job records live in the queue's slot.
        """
        self._run(self._delete_plan())

    # --- control: suspend, limits ----------------------------------------------------------------

    def suspend(self) -> None:
        """Stop workers from starting this queue's jobs; they stay queued, running ones finish."""
        self._run(self._suspend_plan(True))

    def resume(self) -> None:
        """Let workers take this queue's jobs again (they are woken at once)."""
        self._run(self._suspend_plan(False))

    @property
    def is_suspended(self) -> bool:
        """True while :meth:`suspend` holds (the global :func:`clusterq.suspend` is separate)."""
        return self._run(self._is_suspended_plan())

    def set_rate_limit(self, max_jobs: int, per_s: float) -> None:
        """Start at most ``max_jobs`` of this queue's jobs per ``per_s`` seconds, across all workers.

        Counted in fixed windows that open at the first job started after the previous window ended, so
        at most ``max_jobs`` start in any window (and at most twice that across a window boundary).
        """
        self._run(self._set_rate_limit_plan(max_jobs, per_s))

    def remove_rate_limit(self) -> None:
        self._run(self._remove_rate_limit_plan())

    @property
    def rate_limit(self) -> tuple[int, float] | None:
        """``(max_jobs, per_s)``, or None."""
        return self._run(self._rate_limit_plan())

    def set_concurrency_limit(self, key: str | None, limit: int | None) -> None:
        """At most ``limit`` jobs enqueued with ``concurrency_key=key`` run at once in this queue, across
        all workers; ``key=None`` sets the default for every key without its own limit. ``limit=None``
        removes the limit. The limit is per queue: the same key in another queue is counted apart."""
        self._run(self._set_concurrency_limit_plan(key, limit))

    @property
    def concurrency_limits(self) -> dict[str | None, int]:
        """The limits set with :meth:`set_concurrency_limit` (the default under ``None``)."""
        return self._run(self._concurrency_limits_plan())

    # --- all queues ---------------------------------------------------------------------------

    @classmethod
    def all(cls, connection: ConnectionLike = None, **queue_options: Any) -> list[Queue]:
        """Every known queue (read with SSCAN, so it never blocks the server), sorted by name."""
        client = connect(connection)
        names = {n.decode() if isinstance(n, bytes) else n for n in client.sscan_iter(K.QUEUES, count=500)}
        return [cls(name, client, **queue_options) for name in sorted(names)]
