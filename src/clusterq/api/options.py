"""Enqueue options: the names ``enqueue`` takes, their checks and :class:`EnqueueData`, one job's
description. Pure (no I/O), shared by :class:`~clusterq.api.queue.Queue` and
:class:`~clusterq.api.aio_queue.AsyncQueue` through :class:`~clusterq.api.queue_core.QueueCore`: an option
added or checked here is added or checked for both APIs."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from clusterq.api.callbacks import Callback
from clusterq.api.dependency import DependsOn
from clusterq.api.retry import Repeat, Retry
from clusterq.exceptions import InvalidJobId
from clusterq.state import keys as K
from clusterq.state import store as T

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
    """Seconds from a number or an RQ-style string (``"90"``, ``"15m"``, ``"2h"``, ``"1d"``)."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError(f"{what} must be a number of seconds, got {value!r}")
    if isinstance(value, (int, float)):
        return float(value)
    text = str(value).strip().lower()
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    try:
        if text and text[-1] in units:
            return float(text[:-1]) * units[text[-1]]
        return float(text)
    except ValueError:
        raise ValueError(f"{what} must be seconds or a string like '15m', '2h'; got {value!r}") from None


def validate_job_id(job_id: object) -> str:
    if not isinstance(job_id, str) or not job_id:
        raise InvalidJobId(f"job_id must be a non-empty str, got {job_id!r}")
    if len(job_id.encode("utf-8", "surrogatepass")) > K.MAX_JOB_ID_BYTES:
        raise InvalidJobId(f"job_id is longer than {K.MAX_JOB_ID_BYTES} bytes")
    return job_id


def validate_result_history(value: object) -> int | None:
    """``result_history``: how many results a job keeps (the latest included), 1 to 1000."""
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= T.MAX_RESULT_HISTORY:
        raise ValueError(f"result_history must be an int from 1 to {T.MAX_RESULT_HISTORY}, got {value!r}")
    return value


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
    window_s = parse_duration(window, "debounce window")
    if window_s is None or window_s <= 0:
        raise ValueError(f"the debounce window must be positive, got {window!r}")
    if len(key.encode("utf-8", "surrogatepass")) > K.MAX_JOB_ID_BYTES:
        raise ValueError(f"the debounce key is longer than {K.MAX_JOB_ID_BYTES} bytes")
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


def enqueue_data(func: Callable[..., Any] | str, args: Sequence[Any] | None, kwargs: dict[str, Any] | None,
                 options: dict[str, Any]) -> EnqueueData:
    """An :class:`EnqueueData` from ``prepare_data``/``enqueue_call`` arguments (``timeout`` is RQ's
    spelling of ``job_timeout``)."""
    if "timeout" in options:
        options = dict(options)
        options.setdefault("job_timeout", options.pop("timeout"))
    return EnqueueData(func, tuple(args or ()), dict(kwargs or {}), **options)
