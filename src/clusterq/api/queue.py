"""The producer API, named as RQ names it: ``Queue(name, connection).enqueue(func, *args, **kwargs)``."""

from __future__ import annotations

import dataclasses
import json
import math
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from clusterq.api import options as O
from clusterq.api.callbacks import Callback, encode_callbacks
from clusterq.api.dependency import DependsOn, parse_depends_on
from clusterq.api.execution import Executor
from clusterq.api.hooks import HookSet
from clusterq.api.inline import inline_executor, run_inline
from clusterq.api.job import DEFAULT_FAILURE_TTL_S, Job
from clusterq.api.registry import Registry
from clusterq.api.retry import Repeat, Retry
from clusterq.connection.sync import REDIS_ERRORS, Client, ConnectionLike, connect
from clusterq.exceptions import DuplicateJob, ReplicationTimeout, explain_server_error
from clusterq.serializers import Serializer, resolve_serializer
from clusterq.signing import Signer, SigningKey, make_signer
from clusterq.state import keys as K
from clusterq.state import store as T
from clusterq.state import transitions as TR
from clusterq.state.outbox import Forwarder, registration_entry
from clusterq.utils import decode_all, function_path

ENQUEUE_CHUNK = 500
"""Jobs per enqueue script call in ``enqueue_many``: large enough to amortise the call, small enough
that one call never holds the server for long."""
DRAIN_BATCH = 1000
PAGE_LIMIT = 10_000

# RQ options clusterq does not implement yet: refused, rather than silently passed to the job function.
_UNSUPPORTED = ("pipeline", "group_id")

_RESERVED = (
    "job_id", "job_timeout", "timeout", "result_ttl", "ttl", "failure_ttl", "description", "meta",
    "at_front", "max_attempts", "retry", "repeat", "result_history", "on_success", "on_failure", "on_stopped",
    "depends_on", "args", "kwargs", "priority", "unique", "concurrency_key", "debounce",
)

MAX_PRIORITY = 9
"""Priorities are 1 (first) to 9 (last); a job without one runs before all of them, as in BullMQ."""
DEBOUNCE_POINTER_TTL_S = 86_400
"""A debounce key remembers its job this long after the window opened: a job still not started by then
(no worker for a day) is no longer updated, and the next enqueue opens a new window."""


def parse_duration(value: float | int | str | None, what: str) -> float | None:
    """Seconds from a number or an RQ-style string (``"90"``, ``"15m"``, ``"2h"``, ``"1d"``); finite and
    bounded (see :func:`clusterq.api.options.seconds`), negative allowed (it means "no limit"/"forever")."""
    return O.seconds(value, what, negative=True)


validate_job_id = O.job_id
validate_result_history = O.result_history


@dataclass
class EnqueueData:
    """One job to enqueue with :meth:`Queue.enqueue_many` (see :meth:`Queue.prepare_data`)."""

    func: Callable[..., Any] | str
    args: Sequence[Any] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    job_id: str | None = None
    job_timeout: float | int | str | None = None
    result_ttl: float | int | str | None = None
    ttl: float | int | str | None = None
    failure_ttl: float | int | str | None = None
    description: str | None = None
    meta: dict[str, Any] | None = None
    max_attempts: int | None = None
    retry: Retry | None = None
    priority: int | None = None
    unique: bool = False
    concurrency_key: str | None = None
    debounce: tuple[str, float] | None = None
    repeat: Repeat | None = None
    depends_on: DependsOn | None = None
    result_history: int | None = None
    on_success: Callback | Callable[..., Any] | str | None = None
    on_failure: Callback | Callable[..., Any] | str | None = None
    on_stopped: Callback | Callable[..., Any] | str | None = None


_DATA_FIELDS = frozenset(f.name for f in dataclasses.fields(EnqueueData))


def make_enqueue_data(func: Callable[..., Any] | str, args: Sequence[Any] | None,
                      kwargs: dict[str, Any] | None, options: dict[str, Any]) -> EnqueueData:
    """An :class:`EnqueueData` from ``prepare_data``/``enqueue_call`` options, refusing an unknown option
    by name (rather than with ``EnqueueData.__init__``'s error)."""
    options = dict(options)
    if "timeout" in options:
        options.setdefault("job_timeout", options.pop("timeout"))
    if "at_front" in options:
        raise TypeError("prepare_data has no per-job at_front: pass at_front=True to enqueue_many")
    unknown = sorted(set(options) - _DATA_FIELDS)
    if unknown:
        known = sorted(_DATA_FIELDS - {"func", "args", "kwargs"})
        raise TypeError(f"unknown enqueue option(s) {unknown}; the options are {known} (and timeout)")
    O.check(**options)  # a bad option fails here, where it is written, not at enqueue_many
    return EnqueueData(func, tuple(args or ()), dict(kwargs or {}), **options)


def split_enqueue_options(f: Callable[..., Any] | str, args: tuple[Any, ...],
                          kwargs: dict[str, Any]) -> tuple[EnqueueData, bool]:
    """Split ``enqueue``-style arguments into the job's description and ``at_front`` (shared by the sync
    and asyncio queues)."""
    unsupported = [name for name in _UNSUPPORTED if name in kwargs]
    if unsupported:
        raise TypeError(f"enqueue option(s) {unsupported} are not supported by clusterq yet; pass job "
                        "arguments with those names through kwargs={...}")
    options = {name: kwargs.pop(name) for name in _RESERVED if name in kwargs}
    if "timeout" in options:
        options.setdefault("job_timeout", options.pop("timeout"))
    at_front = bool(options.pop("at_front", False))
    call_args = options.pop("args", None)
    call_kwargs = options.pop("kwargs", None)
    if call_args is not None or call_kwargs is not None:
        if args or kwargs:
            raise TypeError("pass the job's arguments either directly or as args=/kwargs=, not both")
        args, kwargs = tuple(call_args or ()), dict(call_kwargs or {})
    return EnqueueData(f, args, kwargs, **options), at_front


def _check_debounce(data: EnqueueData) -> tuple[str, float]:
    spec = data.debounce
    if not (isinstance(spec, tuple) and len(spec) == 2 and isinstance(spec[0], str) and spec[0]):
        raise ValueError(f"debounce must be (key, window_s) with a non-empty str key, got {spec!r}")
    key, window = spec
    window_s = O.seconds(window, "the debounce window", positive=True)
    assert window_s is not None  # a tuple's second item is never None here: seconds() refused it
    O.text(key, "the debounce key", max_bytes=K.MAX_JOB_ID_BYTES)
    if data.job_id is not None or data.unique:
        raise ValueError("debounce chooses the job itself: do not pass job_id or unique with it")
    return key, window_s


def _refuse_debounce(jobs: Sequence[EnqueueData]) -> None:
    if any(data.debounce is not None for data in jobs):
        raise TypeError("debounce= works with Queue.enqueue only (not enqueue_many, enqueue_at/in or "
                        "AsyncQueue)")


def check_duplicates(queue: str, new: Sequence[T.NewJob], codes: Sequence[TR.Created], jobs: list[Any]) -> None:
    """Raise :class:`DuplicateJob` for the unique jobs the script refused (``Created.DUPLICATE``)."""
    refused = [job.id for job, code in zip(new, codes) if code is TR.Created.DUPLICATE]
    if refused:
        shown = ", ".join(repr(i) for i in refused[:5]) + (" ..." if len(refused) > 5 else "")
        raise DuplicateJob(f"queue {queue!r} already has a waiting or running job with id {shown} "
                           f"(unique=True); {len(new) - len(refused)} other job(s) of the call were enqueued",
                           refused, jobs)


def refuse_depends_on(jobs: Sequence[EnqueueData], where: str) -> None:
    """Raise TypeError if any of ``jobs`` has ``depends_on`` (for the calls that cannot defer a job)."""
    if any(data.depends_on is not None for data in jobs):
        raise TypeError(f"depends_on is not supported by {where}; enqueue the job with Queue.enqueue instead")


def _job_codes(reply: Any, *, schedule: bool = False) -> list[TR.Created]:
    """The per-job codes of an enqueue, schedule or defer (one job, a bare code) reply."""
    if not isinstance(reply, list):
        return [TR.parse_defer(reply)]
    return TR.parse_schedule(reply).codes if schedule else TR.parse_created(reply)


def _raise_first_error(results: Sequence[Any], doing: str, skip: int = 0) -> None:
    """Raise the first failed call's error, saying how many jobs the other calls created.

    Each call is one script (at most ENQUEUE_CHUNK jobs) and a script runs whole or not at all (a full
    server refuses it before it starts), so no job is ever half-written; but of several calls, some may
    have gone through. Ids the caller chose can simply be enqueued again: existing ones are skipped.
    ``skip``: 1 for schedule replies (their run-at time comes first), 0 for enqueue and defer replies.
    """
    errors = [r for r in results if isinstance(r, BaseException)]
    if not errors:
        return
    error = explain_server_error(errors[0], doing)
    done = [r for r in results if not isinstance(r, BaseException)]
    if done:
        created = sum(code is TR.Created.CREATED for reply in done for code in _job_codes(reply, schedule=bool(skip)))
        error.args = (f"{error.args[0]} ({len(done)} of {len(results)} script calls went through whole and "
                      f"created {created} job(s); no job is half-written)",)
    raise error from errors[0]


class Queue:
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
    ) -> None:
        if job_class is not None:
            raise TypeError("Queue(job_class=...) is not supported: clusterq has one Job class. Move what a "
                            "Job subclass did into callbacks (on_success/on_failure/on_stopped), meta, or "
                            "a helper that takes the Job (see docs/migrating-from-rq.md, custom classes)")
        if not isinstance(wait_replicas, int) or isinstance(wait_replicas, bool) or wait_replicas < 0:
            raise ValueError(f"wait_replicas must be an int >= 0, got {wait_replicas!r}")
        if not isinstance(wait_timeout_s, (int, float)) or isinstance(wait_timeout_s, bool) or wait_timeout_s <= 0:
            raise ValueError(f"wait_timeout_s must be a positive number of seconds, got {wait_timeout_s!r}")
        self.name = K.validate_queue_name(name)
        self.keys = K.QueueKeys(name)
        self.signer = make_signer(signing_key)
        self.hooks = HookSet(hooks)  # with the process-wide ones (clusterq.hooks.register, entry points)
        self.connection: Client = connect(connection)
        self.is_async = is_async
        self._inline: Executor | None = None
        self.store = T.Store(self.connection)
        self.serializer = resolve_serializer(serializer)
        self.default_timeout = parse_duration(default_timeout, "default_timeout")
        self.result_ttl = parse_duration(result_ttl, "result_ttl")
        self.failure_ttl = parse_duration(failure_ttl, "failure_ttl")
        self.max_attempts = O.max_attempts(max_attempts)
        self.result_history = validate_result_history(result_history)
        self.wait_replicas = wait_replicas
        self.wait_timeout_s = float(wait_timeout_s)
        self._registered = False

    def __repr__(self) -> str:
        return f"Queue({self.name!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Queue) and other.name == self.name and other.connection is self.connection

    def __hash__(self) -> int:
        return hash(self.name)

    @property
    def key(self) -> str:
        """Refused: RQ's ``q.key`` is the list of waiting ids, so ``conn.llen(q.key)`` counts a queue. A
        clusterq queue is several keys (a list, a priority set, tombstones of canceled ids), and no single
        key gives the count: ``q.count`` does. ``q.keys.base`` is the prefix all its keys share."""
        raise AttributeError(f"Queue.key does not exist in clusterq: no single Redis key holds queue "
                             f"{self.name!r}. Use q.count for the waiting jobs, q.get_job_ids() to list them, "
                             f"q.keys.base ({self.keys.base!r}) for the prefix of its keys")

    @property
    def slot(self) -> int:
        return K.queue_slot(self.name)

    # --- enqueue ------------------------------------------------------------------------------

    @staticmethod
    def prepare_data(func: Callable[..., Any] | str, args: Sequence[Any] | None = None,
                     kwargs: dict[str, Any] | None = None, **options: Any) -> EnqueueData:
        """Describe a job for :meth:`enqueue_many` (RQ's ``Queue.prepare_data``); callable on the class,
        as RQ's docs do, or on a queue. Takes the options of :class:`EnqueueData`; ``timeout`` means
        ``job_timeout``. Raises TypeError naming an unknown option."""
        return make_enqueue_data(func, args, kwargs, options)

    def _new_job(self, data: EnqueueData) -> T.NewJob:
        job_id = validate_job_id(data.job_id) if data.job_id is not None else uuid.uuid4().hex
        payload = self.serializer.dumps([list(data.args), data.kwargs]) if (data.args or data.kwargs) else b""
        options: dict[str, Any] = {}
        timeout = parse_duration(data.job_timeout, "job_timeout") or self.default_timeout
        if timeout is not None:
            options["timeout"] = timeout
        for name, value, default in (
            ("result_ttl", data.result_ttl, self.result_ttl),
            ("failure_ttl", data.failure_ttl, self.failure_ttl),
        ):
            seconds = parse_duration(value, name)
            seconds = default if seconds is None else seconds
            if seconds is not None:
                options[name] = seconds
        if data.description:
            options["description"] = O.text(str(data.description), "description")
        if data.retry is not None:
            if not isinstance(data.retry, Retry):
                raise TypeError(f"retry must be a clusterq.Retry, got {type(data.retry).__name__}")
            options["retry"] = data.retry.encode()
            if data.retry.on:
                options["ron"] = data.retry.on_names()
        if data.repeat is not None:
            if not isinstance(data.repeat, Repeat):
                raise TypeError(f"repeat must be a clusterq.Repeat, got {type(data.repeat).__name__}")
            options["repeat"] = data.repeat.encode()
        history = validate_result_history(data.result_history)
        history = self.result_history if history is None else history
        if history is not None and history != T.RESULT_HISTORY:
            options["hist"] = history
        callbacks = encode_callbacks(data.on_success, data.on_failure, data.on_stopped)
        if callbacks:
            options["cb"] = callbacks
        if self.serializer.name != "json":
            options["ser"] = self.serializer.name
        ttl = O.seconds(data.ttl, "ttl", positive=True)
        max_attempts = O.max_attempts(data.max_attempts if data.max_attempts is not None else self.max_attempts)
        priority = data.priority or 0
        if isinstance(priority, bool) or not isinstance(priority, int) or not 0 <= priority <= MAX_PRIORITY:
            raise ValueError(f"priority must be an int from 1 (runs first) to {MAX_PRIORITY}, or 0/None for "
                             f"none; got {data.priority!r}")
        concurrency_key = O.text(data.concurrency_key or "", "concurrency_key", max_bytes=256)
        if data.unique and data.job_id is None:
            raise ValueError("unique=True needs a job_id: uniqueness is by id")
        func = O.function_path(function_path(data.func))
        options_json = json.dumps(options, separators=(",", ":")) if options else ""
        # Last, once the job is valid: a hook sees only jobs that will be written, and may refuse them.
        headers = (self.hooks.before_enqueue(self.name, job_id, func, data.args, data.kwargs)
                   if self.hooks.enqueue else "")
        return T.NewJob(
            id=job_id,
            func=func,
            payload=payload,
            options=options_json,
            meta=self.serializer.dumps(data.meta) if data.meta else b"",
            ttl_s=math.ceil(ttl) if ttl else 0,
            max_attempts=max_attempts,
            fresh_id=data.job_id is None,
            signature=self.signer.sign(self.name, job_id, func, payload, options_json, headers) if self.signer else "",
            unique=bool(data.unique),
            priority=priority,
            concurrency_key=concurrency_key,
            headers=headers,
        )

    def _register(self) -> None:
        # The set of known queues is a global key: written once per Queue object, never in a script.
        if not self._registered:
            self.connection.sadd(K.QUEUES, self.name)
            self._registered = True

    def _job(self, job_id: str) -> Job:
        return Job.trusted(self.name, job_id, self.keys, self.store, self.serializer)

    def enqueue(self, f: Callable[..., Any] | str, *args: Any, **kwargs: Any) -> Job:
        """Enqueue ``f(*args, **kwargs)``.

        Options, as in RQ: ``job_id``, ``job_timeout``, ``result_ttl``, ``ttl``, ``failure_ttl``,
        ``description``, ``meta``, ``at_front``, ``max_attempts``; and ``args=``/``kwargs=`` to pass
        arguments whose names collide with those. Enqueueing an id that already has a job does nothing
        and returns that job, so retrying a timed-out enqueue cannot create a duplicate.
        """
        data, at_front = split_enqueue_options(f, args, kwargs)
        if data.debounce is not None:
            return self._debounce(data)
        return self.enqueue_many([data], at_front=at_front)[0]

    def _debounce(self, data: EnqueueData) -> Job:
        """One job per window for ``data.debounce = (key, window_s)``: the first call schedules it at the
        end of the window, later calls in the window replace its arguments (the latest wins)."""
        key, window_s = _check_debounce(data)
        job = self._new_job(data)
        try:
            self._register()
            for _ in range(5):
                call = T.debounce_call(self.keys, key, job, int(window_s * 1000), DEBOUNCE_POINTER_TTL_S * 1000)
                reply = TR.parse_debounce(self.store.run(call))
                job_id = reply.job_id
                if reply.code is not TR.DebounceCode.OTHER_ID:
                    break
                # A signing queue signs the job's id too: sign the update for the id the key points at.
                job = self._new_job(dataclasses.replace(data, job_id=job_id))
        except REDIS_ERRORS as exc:
            raise explain_server_error(exc, f"enqueue (debounced) to queue {self.name!r}") from exc
        return self._job(job_id)

    def enqueue_at(self, scheduled_time: datetime | date | str, f: Callable[..., Any] | str, *args: Any,
                   **kwargs: Any) -> Job:
        """Schedule ``f(*args, **kwargs)`` to run at ``scheduled_time``; the options of :meth:`enqueue`.

        ``scheduled_time`` is a datetime, a date (its local midnight) or an ISO 8601 string. A naive
        datetime is local time (as ``datetime.timestamp()`` reads it). The run-at time is
        computed on this machine's clock; workers promote the job once the server's clock reaches it.
        A time in the past runs the job at once (at the next promotion). ``ttl`` counts from the run-at
        time.
        """
        data, at_front = split_enqueue_options(f, args, kwargs)
        refuse_depends_on([data], "enqueue_at")
        return self._schedule([data], at_front, at_ms=O.run_at_ms(scheduled_time))[0]

    def enqueue_in(self, time_delta: timedelta | float | int, f: Callable[..., Any] | str, *args: Any,
                   **kwargs: Any) -> Job:
        """Schedule ``f(*args, **kwargs)`` to run after ``time_delta`` (a timedelta or seconds), measured
        on the server's clock; the options of :meth:`enqueue`."""
        delay_ms = O.delay_ms(time_delta)
        data, at_front = split_enqueue_options(f, args, kwargs)
        refuse_depends_on([data], "enqueue_in")
        return self._schedule([data], at_front, delay_ms=delay_ms)[0]

    def _schedule(self, jobs: Sequence[EnqueueData], at_front: bool, *, at_ms: int | None = None,
                  delay_ms: int | None = None) -> list[Job]:
        """Create scheduled jobs (status ``scheduled``, in :attr:`scheduled_job_registry`)."""
        _refuse_debounce(jobs)
        new = [self._new_job(data) for data in jobs]
        calls = [T.schedule_call(self.keys, new[i : i + ENQUEUE_CHUNK], at_ms=at_ms, delay_ms=delay_ms,
                                 at_front=at_front) for i in range(0, len(new), ENQUEUE_CHUNK)]
        try:
            self._register()
            results = self._write(calls, new, f"schedule a job in queue {self.name!r}", skip=1)
        except REDIS_ERRORS as exc:
            raise explain_server_error(exc, f"schedule a job in queue {self.name!r}") from exc
        jobs_out = [self._job(job.id) for job in new]
        check_duplicates(self.name, new, [code for reply in results for code in TR.parse_schedule(reply).codes],
                         jobs_out)
        return jobs_out

    def _write(self, calls: list[T.Call], new: Sequence[T.NewJob], doing: str, skip: int = 0) -> list[Any]:
        """Run the calls that create ``new`` and return their replies; with ``wait_replicas``, also wait
        for the replicas."""
        if not self.wait_replicas:
            results = self.store.run_many(calls, raise_on_error=False)
            _raise_first_error(results, doing, skip)
            return results
        results, acknowledged = self.store.run_and_wait(calls, self.keys.stats, self.wait_replicas,
                                                  max(1, int(self.wait_timeout_s * 1000)))
        if acknowledged < self.wait_replicas:
            ids = [job.id for job in new]
            raise ReplicationTimeout(
                f"queue {self.name!r}: {len(ids)} job(s) ({', '.join(ids[:3])}{', ...' if len(ids) > 3 else ''}) "
                f"were written to the primary, but only {acknowledged} of {self.wait_replicas} replica(s) "
                f"acknowledged them within {self.wait_timeout_s:g} s; they will run unless the primary fails "
                "before a replica has them, so they may or may not survive a failover (retrying with the same "
                "job_id is safe)", job_ids=ids, acknowledged=acknowledged, wanted=self.wait_replicas)
        return results

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
        _refuse_debounce(jobs)
        new = [self._new_job(data) for data in jobs]
        deferred = [(job, parse_depends_on(data.depends_on, self.name))
                    for job, data in zip(new, jobs) if data.depends_on is not None]
        deferred = [(job, spec) for job, spec in deferred if spec[0]]  # depends_on=[]: nothing to wait for
        waiting = {job.id for job, _ in deferred}
        ready = [job for job in new if job.id not in waiting]
        try:
            self._register()
        except REDIS_ERRORS as exc:
            raise explain_server_error(exc, f"enqueue to queue {self.name!r}") from exc
        calls = [
            T.enqueue_call(self.keys, ready[i : i + ENQUEUE_CHUNK], at_front)
            for i in range(0, len(ready), ENQUEUE_CHUNK)
        ]
        if at_front:
            calls.reverse()  # later chunks first, so the whole batch keeps its order at the head
        defer_calls = [T.defer_call(self.keys, job, parents, at_front or front) for job, (parents, front) in deferred]
        try:
            results = self._write([*calls, *defer_calls], new, f"enqueue to queue {self.name!r}")
            enqueue_replies, defer_replies = T.split_results(results, calls, defer_calls)
            deferred_codes = [TR.parse_defer(reply) for reply in defer_replies]
            # Register each new child with its parents now; if this process dies first, a worker serving
            # this queue replays the registrations from the outbox.
            self._forwarder().forward(
                (self.name, registration_entry(handle, job.id))
                for (job, (parents, _)), created in zip(deferred, deferred_codes)
                if created is TR.Created.CREATED for handle, _ in parents)
        except REDIS_ERRORS as exc:
            raise explain_server_error(exc, f"enqueue to queue {self.name!r}") from exc
        enqueued = [self._job(job.id) for job in new]
        chunks = [TR.parse_created(reply) for reply in enqueue_replies]
        codes = [code for reply in (reversed(chunks) if at_front else chunks) for code in reply]
        check_duplicates(self.name, [*ready, *(job for job, _ in deferred)], [*codes, *deferred_codes], enqueued)
        if not self.is_async:
            self._inline = self._inline or inline_executor(self)
            run_inline(self, self._inline, enqueued)
        return enqueued, self._created(new, ready, chunks, at_front, deferred_codes)

    @staticmethod
    def _created(new: Sequence[T.NewJob], ready: Sequence[T.NewJob], chunks: Sequence[list[TR.Created]],
                 at_front: bool, deferred: Sequence[TR.Created]) -> list[bool]:
        """Per job of ``new``: was it created (False: a job with its id existed)? ``chunks`` are the
        enqueue calls' replies (in call order, reversed for ``at_front``), ``deferred`` the defer calls'."""
        created: dict[str, bool] = {}
        replies = list(reversed(chunks)) if at_front else list(chunks)
        for index, codes in enumerate(replies):
            for job, code in zip(ready[index * ENQUEUE_CHUNK : (index + 1) * ENQUEUE_CHUNK], codes):
                created[job.id] = code is TR.Created.CREATED  # not EXISTED, nor a DUPLICATE refused (unique)
        ready_ids = {job.id for job in ready}
        waiting = [job for job in new if job.id not in ready_ids]
        for job, code in zip(waiting, deferred):
            created[job.id] = code is TR.Created.CREATED
        return [created.get(job.id, False) for job in new]

    def _forwarder(self) -> Forwarder:
        return Forwarder(self.store, DEFAULT_FAILURE_TTL_S * 1000)

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
        return int(self.connection.hget(self.keys.stats, "retried") or 0)

    def exists(self) -> bool:
        """True once a job was enqueued to this queue (and until :meth:`delete`): it is a known queue."""
        return bool(self.connection.sismember(K.QUEUES, self.name))

    def is_empty(self) -> bool:
        return self.count == 0

    def get_job_ids(self, offset: int = 0, length: int = 100) -> list[str]:
        """A page of the ids waiting in the queue, in the order they will run: jobs without a priority,
        then those with one, by level (ids canceled meanwhile may still show; jobs set aside by a
        concurrency limit do not)."""
        if length < 0 or length > PAGE_LIMIT:
            raise ValueError(f"length must be between 0 and {PAGE_LIMIT}; page through longer queues")
        if length == 0:
            return []
        ids = decode_all(self.connection.lrange(self.keys.pending, offset, offset + length - 1))
        if len(ids) < length:  # past the list: go on in the prio set
            start = max(0, offset - int(self.connection.llen(self.keys.pending)))
            ids += decode_all(self.connection.zrange(self.keys.prio, start, start + length - len(ids) - 1))
        return ids

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
        removed = 0
        while True:
            n = TR.parse_count(self.store.run(T.drain_call(self.keys, DRAIN_BATCH)))
            removed += n
            if not n:
                return removed

    def delete(self, delete_jobs: bool = True) -> None:
        """Delete the queue: its waiting jobs, its registries and their records, in bounded batches.

        Jobs running now keep running; their outcome is then dropped. ``delete_jobs=False`` is accepted
        for RQ compatibility and behaves the same, since job records live in the queue's slot.
        """
        self.empty()
        for name in ("scheduled", "deferred", "finished", "failed", "canceled", "started"):
            self.registry(name).clear()
        self.connection.delete(self.keys.stats)
        self.connection.srem(K.QUEUES, self.name)
        self._registered = False

    # --- control: suspend, limits ----------------------------------------------------------------

    def _configure(self, fields: dict[str, Any], doing: str) -> None:
        try:
            self.store.run(T.configure_call(self.keys, fields))
        except REDIS_ERRORS as exc:
            raise explain_server_error(exc, f"{doing} queue {self.name!r}") from exc

    def suspend(self) -> None:
        """Stop workers from starting this queue's jobs; they stay queued, running ones finish."""
        self._configure({"sus": "1"}, "suspend")

    def resume(self) -> None:
        """Let workers take this queue's jobs again (they are woken at once)."""
        self._configure({"sus": ""}, "resume")

    @property
    def is_suspended(self) -> bool:
        """True while :meth:`suspend` holds (the global :func:`clusterq.suspend` is separate)."""
        return "sus" in self.store.control(self.keys)

    def set_rate_limit(self, max_jobs: int, per_s: float) -> None:
        """Start at most ``max_jobs`` of this queue's jobs per ``per_s`` seconds, across all workers.

        Counted in fixed windows that open at the first job started after the previous window ended, so
        at most ``max_jobs`` start in any window (and at most twice that across a window boundary).
        """
        if isinstance(max_jobs, bool) or not isinstance(max_jobs, int) or max_jobs < 1:
            raise ValueError(f"max_jobs must be a positive int, got {max_jobs!r}")
        period_s = parse_duration(per_s, "per_s")
        if period_s is None or period_s < 0.001:
            raise ValueError(f"per_s must be at least 0.001 seconds, got {per_s!r}")
        self._configure({"rn": max_jobs, "rp": int(period_s * 1000), "rw": "", "rc": ""}, "set the rate limit of")

    def remove_rate_limit(self) -> None:
        self._configure({"rn": "", "rp": "", "rw": "", "rc": ""}, "remove the rate limit of")

    @property
    def rate_limit(self) -> tuple[int, float] | None:
        """``(max_jobs, per_s)``, or None."""
        control = self.store.control(self.keys)
        if "rn" not in control:
            return None
        return int(control["rn"]), int(control.get("rp", "1000")) / 1000

    def set_concurrency_limit(self, key: str | None, limit: int | None) -> None:
        """At most ``limit`` jobs enqueued with ``concurrency_key=key`` run at once in this queue, across
        all workers; ``key=None`` sets the default for every key without its own limit. ``limit=None``
        removes the limit. The limit is per queue: the same key in another queue is counted apart."""
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
            raise ValueError(f"limit must be a positive int or None, got {limit!r}")
        if key is not None and (not isinstance(key, str) or not key):
            raise ValueError(f"key must be a non-empty str or None (the default), got {key!r}")
        field_name = "cd" if key is None else f"c:{key}"
        self._configure({field_name: "" if limit is None else limit}, "set a concurrency limit of")

    @property
    def concurrency_limits(self) -> dict[str | None, int]:
        """The limits set with :meth:`set_concurrency_limit` (the default under ``None``)."""
        control = self.store.control(self.keys)
        limits: dict[str | None, int] = {k[2:]: int(v) for k, v in control.items() if k.startswith("c:")}
        if "cd" in control:
            limits[None] = int(control["cd"])
        return limits

    # --- all queues ---------------------------------------------------------------------------

    @classmethod
    def all(cls, connection: ConnectionLike = None, **queue_options: Any) -> list[Queue]:
        """Every known queue (read with SSCAN, so it never blocks the server), sorted by name."""
        client = connect(connection)
        names = {n.decode() if isinstance(n, bytes) else n for n in client.sscan_iter(K.QUEUES, count=500)}
        return [cls(name, client, **queue_options) for name in sorted(names)]
