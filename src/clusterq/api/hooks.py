"""Public hooks (middleware): code that runs around every job without being part of any job.

A hook is an object with some of the methods of :class:`Hook` (subclass it, or write any object with
the methods you need: hooks are duck-typed). Each method is a no-op in :class:`Hook`; a hook overrides
the ones it cares about, and only overridden methods are ever called, so a registered hook costs
nothing at the points it does not use, and no hook at all costs nothing anywhere (no Redis command,
nothing stored: a job with no headers has no ``hd`` field).

Where each method runs:

==========================  =============================================================================
``before_enqueue(job)``     the producer (``Queue``, ``AsyncQueue``, periodic jobs, ``Queue(is_async=False)``),
                            before anything is written; ``job.headers`` may be filled (str -> str). The
                            headers are stored with the job and covered by its signature.
``before_perform(job)``     the process and thread (or asyncio task) that runs the job, in every pool,
``around_perform(job)``     and in a queue's synchronous mode; ``around_perform`` returns a context
``after_perform(...)``      manager (or None) entered around the call: it sees the job's exception.
``on_retry(job, ...)``      same place, when a failed run will run again (``Retry``, ``RetryJob``).
``on_failure(job, ...)``    same place, when a job fails for good (not on a retried attempt); a job killed
                            at its hard time limit reports from the worker's supervisor process.
``on_abandoned(q, id)``     the worker (supervisor) whose maintenance failed the job because its lease
                            expired past its attempts (its worker died or hung).
``on_worker_start(worker)`` the worker process, before it forks its pool children (anything opened here,
``on_worker_stop(worker)``  a pipe say, is inherited by them) / after its last job was recorded.
``on_child_start()``        a forked pool child (``process`` and ``fork`` pools), when it starts and before
``on_child_exit()``         it exits normally (retired, or the pool closes): flush buffers here, since a
                            child leaves with ``os._exit`` and ``atexit`` handlers never run.
``on_report(data)``         the worker process, with what :func:`report` sent from wherever a job ran
                            (a forked child's reports travel over its pipe to the supervisor).
==========================  =============================================================================

Before-hooks run in registration order, after-hooks (``after_perform``, the exit of ``around_perform``,
``on_worker_stop``, ``on_child_exit``) in reverse, as in Dramatiq.

Errors: a hook that raises never fails, retries or delays a job. Its error is logged once per hook
method with the hook, the method and the exception (later ones at debug level), and the job goes on.
The one exception is ``before_enqueue``: its exception refuses the enqueue and reaches the caller
unchanged, and nothing of the batch is written (a producer-side check that failed must not be
silently skipped). Hooks run inline: keep them quick (a slow hook delays every job).

Registration: ``Queue(..., hooks=[...])`` (before_enqueue, and perform hooks in synchronous mode),
``Worker(..., hooks=[...])`` (everything else), ``clusterq worker --hook module:obj``,
:func:`register` (process-wide, for queues and workers created afterwards) and the ``clusterq.hooks``
entry point group (an installed distribution's hooks apply to every queue and worker of the process).
An entry point or ``--hook`` names a hook object, a hook class (instantiated without arguments) or a
function returning a hook.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from clusterq.exceptions import FunctionNotFound
from clusterq.utils import entry_points, import_attribute

if TYPE_CHECKING:
    from clusterq.state.store import LeasedJob

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "clusterq.hooks"
"""Distributions publish hooks under this entry point group."""

MAX_HEADERS_BYTES = 8192
"""Headers travel with every lease of the job: their JSON is capped so a hook cannot bloat the queue."""


@dataclass
class EnqueueInfo:
    """A job about to be enqueued, as ``before_enqueue`` sees it. Only ``headers`` may be changed."""

    queue: str
    id: str
    func: str  # the function's dotted path
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class JobInfo:
    """The job a worker (or a synchronous queue) runs, as the perform, retry and failure hooks see it.

    ``args``/``kwargs`` are None when the job could not be decoded (it fails before running);
    ``attempt`` counts this job's runs, this one included (1 for the first); ``retries`` is how many
    failed runs were retried before this one.
    """

    queue: str
    id: str
    func: str
    headers: Mapping[str, str]
    attempt: int
    retries: int
    args: list[Any] | None = None
    kwargs: dict[str, Any] | None = None


class Hook:
    """Base class of hooks: every method is a documented no-op. Override the ones you need."""

    def before_enqueue(self, job: EnqueueInfo) -> None:
        """Before ``job`` is written; may add ``job.headers`` entries. Raising refuses the enqueue."""

    def before_perform(self, job: JobInfo) -> None:
        """In the process and thread (or task) that runs the job, just before its function is called."""

    def around_perform(self, job: JobInfo) -> contextlib.AbstractContextManager[Any] | None:
        """A context manager entered around the call (its ``__exit__`` gets the job's exception; what
        it returns is ignored: a hook cannot swallow a job's error), or None."""
        return None

    def after_perform(self, job: JobInfo, result: Any, error: BaseException | None) -> None:
        """After the call: ``error`` is None when it returned ``result``."""

    def on_retry(self, job: JobInfo, error: BaseException | None, reason: str) -> None:
        """The run failed (``reason`` as recorded) and the job will run again."""

    def on_failure(self, job: JobInfo, error: BaseException | None, reason: str) -> None:
        """The job failed for good (no retry left, or none asked for). ``error`` is None when the job
        never ran (undecodable, unknown function, bad signature) or was killed at its hard limit."""

    def on_abandoned(self, queue: str, job_id: str) -> None:
        """The job failed as abandoned: its lease expired past its attempts (worker maintenance)."""

    def on_worker_start(self, worker: Any) -> None:
        """A :class:`~clusterq.Worker` starts, before it forks its pool children."""

    def on_worker_stop(self, worker: Any) -> None:
        """A worker stops, after it recorded its last outcomes."""

    def on_child_start(self) -> None:
        """A forked pool child starts (``process`` and ``fork`` pools)."""

    def on_child_exit(self) -> None:
        """A forked pool child is about to exit normally: flush what it buffers."""

    def on_report(self, data: Any) -> None:
        """In the worker process: ``data`` sent by :func:`report` wherever a job ran (a forked child's
        reports arrive over its pipe, in the supervisor's loop; a thread pool's in the job's thread, so
        keep this thread-safe)."""


METHODS = tuple(name for name in vars(Hook) if not name.startswith("_"))


def _overridden(hook: Any, name: str) -> Any:
    """The hook's bound method ``name`` unless it is missing or :class:`Hook`'s own no-op."""
    method = getattr(hook, name, None)
    if method is None or getattr(method, "__func__", None) is getattr(Hook, name):
        return None
    return method


def load_hook(spec: str | Any) -> Any:
    """A hook from ``module:attr`` (or an object): a hook object as is, a class instantiated, a
    function called (a factory). Raises ValueError naming the spec when it is not a hook."""
    try:
        obj = import_attribute(spec) if isinstance(spec, str) else spec
    except FunctionNotFound as exc:
        raise ValueError(f"cannot load hook {spec!r}: {exc}") from None
    if isinstance(obj, type) or (callable(obj) and not any(hasattr(obj, name) for name in METHODS)):
        obj = obj()
    if not any(callable(getattr(obj, name, None)) for name in METHODS):
        raise ValueError(f"hook {spec!r} is a {type(obj).__name__} with none of the hook methods "
                         f"({', '.join(METHODS)})")
    return obj


_report_sink: Callable[[Any], None] | None = None


def report(data: Any) -> None:
    """Send ``data`` (picklable) to the worker's ``on_report`` hooks: from a forked pool child over the
    child's pipe to the supervisor, from a thread, asyncio or solo pool directly. This is how a metrics
    hook counts in the children and keeps one registry in the worker (no multiprocess directory). Outside
    a worker it does nothing."""
    sink = _report_sink
    if sink is not None:
        sink(data)


def set_report_sink(sink: Callable[[Any], None] | None) -> Callable[[Any], None] | None:
    """Where :func:`report` sends in this process (the worker and its pool children set it); returns the
    previous one. One worker per process: a second worker started in the same process takes it over."""
    global _report_sink
    previous, _report_sink = _report_sink, sink
    return previous


_registered: list[Any] = []
_discovered: list[Any] | None = None
_discover_lock = threading.Lock()


def register(hook: Any) -> None:
    """Add ``hook`` to every :class:`~clusterq.Queue`, :class:`~clusterq.AsyncQueue` and
    :class:`~clusterq.Worker` created afterwards in this process."""
    _registered.append(load_hook(hook))


def unregister(hook: Any) -> None:
    """Undo :func:`register` (for queues and workers created afterwards)."""
    _registered[:] = [h for h in _registered if h is not hook]


def discover(refresh: bool = False) -> list[Any]:
    """The hooks published under the ``clusterq.hooks`` entry point group, loaded once per process
    (``refresh=True`` looks again). One that cannot be loaded is logged with the reason and skipped."""
    global _discovered
    with _discover_lock:
        if _discovered is None or refresh:
            found = []
            for point in entry_points(ENTRY_POINT_GROUP):
                try:
                    found.append(load_hook(point.load()))
                except Exception as exc:  # a broken plugin must not stop the application
                    log.error("clusterq hook entry point %r (%s) cannot be loaded and is ignored: %s: %s",
                              point.name, point.value, type(exc).__name__, exc)
            _discovered = found
        return list(_discovered)


def encode_headers(headers: Mapping[str, str]) -> str:
    """The stored form of ``headers``: "" for none, else compact JSON (checked: str -> str, capped)."""
    if not headers:
        return ""
    for key, value in headers.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError(f"job headers map str to str; got {key!r}: {value!r}")
    text = json.dumps(headers, separators=(",", ":"), sort_keys=True)
    if len(text) > MAX_HEADERS_BYTES:
        raise ValueError(f"job headers take {len(text)} bytes as JSON; at most {MAX_HEADERS_BYTES} are allowed")
    return text


def decode_headers(raw: bytes | str | None) -> dict[str, str]:
    """The headers stored as ``raw``; {} for none or for garbage (headers never stop a job)."""
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):  # forged or corrupt: as decode_options, never raise
        return {}
    if not isinstance(value, dict):
        return {}
    return {str(k): str(v) for k, v in value.items()}


class HookSet:
    """The hooks of one queue, worker or executor, with each point's methods looked up once.

    False when empty, so callers skip all hook work with one test.
    """

    def __init__(self, hooks: Iterable[Any] = (), *, defaults: bool = True) -> None:
        given = [load_hook(h) for h in hooks]
        chosen = [*_registered, *discover(), *given] if defaults else given
        seen: set[int] = set()
        self.hooks = [h for h in chosen if not (id(h) in seen or seen.add(id(h)))]  # type: ignore[func-returns-value]
        self._methods = {name: [m for m in (_overridden(h, name) for h in self.hooks) if m is not None]
                         for name in METHODS}
        self._failed: set[tuple[int, str]] = set()
        self.enqueue = bool(self._methods["before_enqueue"])
        self.perform = any(self._methods[name] for name in (
            "before_perform", "around_perform", "after_perform", "on_retry", "on_failure"))

    def __bool__(self) -> bool:
        return bool(self.hooks)

    def __repr__(self) -> str:
        return f"HookSet({self.hooks!r})"

    def _failed_once(self, method: Any, name: str, exc: BaseException) -> None:
        owner = getattr(method, "__self__", method)
        key = (id(owner), name)
        if key in self._failed:
            log.debug("hook %r %s raised again: %s: %s", owner, name, type(exc).__name__, exc)
            return
        self._failed.add(key)
        log.error("hook %r raised in %s (logged once; the job is not affected): %s: %s", owner, name,
                  type(exc).__name__, exc, exc_info=exc)

    def call(self, name: str, *args: Any, reverse: bool = False) -> None:
        """Call every hook's ``name``; an exception is logged (once) and never propagates."""
        methods = self._methods[name]
        for method in (reversed(methods) if reverse else methods):
            try:
                method(*args)
            except Exception as exc:
                self._failed_once(method, name, exc)

    # --- the producer ---------------------------------------------------------------------------

    def before_enqueue(self, queue: str, job_id: str, func: str, args: Sequence[Any],
                       kwargs: dict[str, Any]) -> str:
        """Run the before-enqueue hooks; returns the headers to store ("" for none). Raises what a hook
        raised (the enqueue is refused)."""
        info = EnqueueInfo(queue, job_id, func, tuple(args), dict(kwargs))
        for method in self._methods["before_enqueue"]:
            method(info)
        return encode_headers(info.headers)

    # --- the process running the job -------------------------------------------------------------

    @staticmethod
    def info(leased: LeasedJob, args: list[Any] | None = None, kwargs: dict[str, Any] | None = None,
             *, trusted: bool = True) -> JobInfo:
        """``trusted=False`` (a job whose signature failed): its headers are not passed on."""
        return JobInfo(leased.queue, leased.id, leased.func, decode_headers(leased.headers) if trusted else {},
                       leased.token, leased.retries, None if args is None else list(args),  # copies: a hook
                       None if kwargs is None else dict(kwargs))  # cannot change what the job is called with

    def enter(self, job: JobInfo) -> list[Any]:
        """``before_perform`` then ``around_perform`` (entered); returns what :meth:`leave` exits."""
        self.call("before_perform", job)
        entered = []
        for method in self._methods["around_perform"]:
            try:
                manager = method(job)
                if manager is not None:
                    manager.__enter__()
                    entered.append(manager)
            except Exception as exc:
                self._failed_once(method, "around_perform", exc)
        return entered

    def leave(self, job: JobInfo, entered: list[Any], result: Any, error: BaseException | None) -> None:
        """Exit the ``around_perform`` managers (in reverse) with the job's error, then ``after_perform``."""
        exc_info = (type(error), error, error.__traceback__) if error is not None else (None, None, None)
        for manager in reversed(entered):
            try:
                manager.__exit__(*exc_info)  # its answer is ignored: a hook cannot swallow the error
            except Exception as exc:
                self._failed_once(manager, "around_perform (exit)", exc)
        self.call("after_perform", job, result, error, reverse=True)

    def failed(self, job: JobInfo, error: BaseException | None, reason: str, plan: str) -> None:
        """``on_retry`` if ``plan`` (the outcome's Retry) runs the job again, else ``on_failure``."""
        retried = False
        if plan:
            count, _, _ = plan.partition(";")
            retried = count.isdigit() and job.retries < int(count)  # complete.lua's rule: rt < max
        self.call("on_retry" if retried else "on_failure", job, error, reason)

    # --- the worker ------------------------------------------------------------------------------

    def abandoned(self, queue: str, job_ids: Iterable[Any]) -> None:
        for job_id in job_ids:
            self.call("on_abandoned", queue, job_id.decode() if isinstance(job_id, bytes) else str(job_id))


EMPTY = HookSet(defaults=False)
"""No hooks (a queue or executor that has none)."""


__all__ = ["ENTRY_POINT_GROUP", "EnqueueInfo", "Hook", "HookSet", "JobInfo", "decode_headers",
           "discover", "encode_headers", "load_hook", "register", "report", "set_report_sink", "unregister"]
