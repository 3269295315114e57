"""Enqueue options: the names ``enqueue`` takes and :class:`EnqueueData`, one job's description. Pure (no
I/O), shared by :class:`~clusterq.api.queue.Queue` and :class:`~clusterq.api.aio_queue.AsyncQueue` through
:class:`~clusterq.api.queue_core.QueueCore`: an option added here is added for both APIs. Each value is
checked by the rules of :mod:`clusterq.api.options` (one place for every check)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from clusterq.api import options as O
from clusterq.api.callbacks import Callback
from clusterq.api.dependency import DependsOn
from clusterq.api.retry import Repeat, Retry
from clusterq.state import keys as K

PAGE_LIMIT = 10_000
"""The longest page a listing returns."""

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
        raise TypeError("debounce= works with enqueue only (not enqueue_many or enqueue_at/in)")


def refuse_depends_on(jobs: Sequence[EnqueueData], where: str) -> None:
    """Raise TypeError if any of ``jobs`` has ``depends_on`` (for the calls that cannot defer a job)."""
    if any(data.depends_on is not None for data in jobs):
        raise TypeError(f"depends_on is not supported by {where}; enqueue the job with Queue.enqueue instead")


def make_enqueue_data(func: Callable[..., Any] | str, args: Sequence[Any] | None,
                      kwargs: dict[str, Any] | None, options: dict[str, Any]) -> EnqueueData:
    """An :class:`EnqueueData` from ``prepare_data``/``enqueue_call`` options (``timeout`` is RQ's spelling
    of ``job_timeout``), refusing an unknown option by name (rather than with ``EnqueueData.__init__``'s
    error) and checking the values where they are written, not at the later ``enqueue_many``."""
    if not options:  # the common case (enqueue_many of plain jobs): nothing to rename, refuse or check
        return EnqueueData(func, tuple(args or ()), dict(kwargs or {}))
    options = dict(options)
    if "timeout" in options:
        options.setdefault("job_timeout", options.pop("timeout"))
    if "at_front" in options:
        raise TypeError("prepare_data has no per-job at_front: pass at_front=True to enqueue_many")
    unknown = sorted(set(options) - _DATA_FIELDS)
    if unknown:
        known = sorted(_DATA_FIELDS - {"func", "args", "kwargs"})
        raise TypeError(f"unknown enqueue option(s) {unknown}; the options are {known} (and timeout)")
    O.check(**options)
    return EnqueueData(func, tuple(args or ()), dict(kwargs or {}), **options)


enqueue_data = make_enqueue_data  # the name the cores used before
