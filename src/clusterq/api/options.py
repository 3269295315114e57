"""Every enqueue option checked in one place, before anything is written.

The sync and asyncio queues, ``enqueue_many``/``prepare_data``, ``enqueue_at``/``enqueue_in``, debounce,
``Retry``/``Repeat`` and the ``@job`` decorator all check their values here, so a value a worker could not
use (an infinite TTL, a NaN time limit, ``max_attempts=True``, a lone surrogate in an id) is refused at the
call with an error naming the option, instead of being stored and failing on a worker later.

A record that still carries such a value (written by an older version, or forged) is the worker's
problem: :func:`clusterq.api.execution.decode_options` turns it into a failed job with a reason.
"""

from __future__ import annotations

import math
import numbers
from datetime import date, datetime, time, timedelta
from typing import Any

from clusterq.exceptions import InvalidJobId
from clusterq.state import keys as K
from clusterq.state import store as T

MAX_DURATION_S = 3_153_600_000
"""The longest duration any option takes (ttl, result_ttl, failure_ttl, job_timeout, delays, intervals):
100 years. Far beyond any real use, far below what Redis's EXPIRE can hold (about 9.2e15 s); enqueue.lua
checks the same bound before it writes."""

MAX_ATTEMPTS = 1_000_000
"""The largest ``max_attempts`` and ``Retry(max=...)``/``Repeat(times=...)``: a job that needs more runs
wants a loop, not a retry budget."""

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _shown(value: object) -> str:
    """``repr(value)``, cut short: an error message must not quote a 400-digit int whole."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def text(value: object, what: str, *, max_bytes: int | None = None, error: type[ValueError] = ValueError) -> str:
    """``value`` if it is a str that encodes as UTF-8 (no lone surrogates) within ``max_bytes``."""
    if not isinstance(value, str):
        raise error(f"{what} must be a str, got {type(value).__name__}")
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise error(f"{what} is not valid text: {exc.reason} at position {exc.start} ({value[exc.start]!r}); "
                    "pass a str that encodes as UTF-8") from None
    if max_bytes is not None and size > max_bytes:
        raise error(f"{what} is {size} bytes long; the limit is {max_bytes} bytes")
    return value


def seconds(value: object, what: str, *, negative: bool = False, positive: bool = False) -> float | None:
    """Seconds from a number or an RQ-style string (``"90"``, ``"15m"``, ``"2h"``, ``"1d"``); None stays None.

    The result is finite and at most :data:`MAX_DURATION_S` in size; ``negative=False`` refuses values
    below 0 and ``positive=True`` anything not above 0.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError(f"{what} must be a number of seconds, got {value!r}")
    if isinstance(value, timedelta):
        number = value.total_seconds()
    elif isinstance(value, numbers.Real):  # int, float, and numpy's numbers
        try:
            number = float(value)
        except OverflowError:  # an int too large for a float
            number = math.inf
    else:  # a string, or anything whose str() is one (Decimal)
        stripped = str(value).strip().lower()
        try:
            if stripped and stripped[-1] in _UNITS:
                number = float(stripped[:-1]) * _UNITS[stripped[-1]]
            else:
                number = float(stripped)
        except ValueError:
            raise ValueError(f"{what} must be seconds or a string like '15m', '2h'; got {_shown(value)}") from None
    if not math.isfinite(number) or abs(number) > MAX_DURATION_S:
        raise ValueError(f"{what} must be a finite number of seconds of at most {MAX_DURATION_S} (100 years), "
                         f"got {_shown(value)}")
    if positive and number <= 0:
        raise ValueError(f"{what} must be positive, got {value!r}")
    if number < 0 and not negative:
        raise ValueError(f"{what} must not be negative, got {value!r}")
    return number


def whole(value: object, what: str, low: int, high: int) -> int:
    """``value`` if it is an int (not a bool) from ``low`` to ``high``."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{what} must be an int from {low} to {high}, got {_shown(value)}")
    return value


def max_attempts(value: object, what: str = "max_attempts") -> int | None:
    return None if value is None else whole(value, what, 1, MAX_ATTEMPTS)


def result_history(value: object) -> int | None:
    """``result_history``: how many results a job keeps (the latest included), 1 to 1000."""
    return None if value is None else whole(value, "result_history", 1, T.MAX_RESULT_HISTORY)


def job_id(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidJobId(f"job_id must be a non-empty str, got {value!r}")
    return text(value, "job_id", max_bytes=K.MAX_JOB_ID_BYTES, error=InvalidJobId)


def function_path(path: str) -> str:
    """A job's function path as the worker will import it: ``package.module.function`` or
    ``package.module:Class.method``, valid text."""
    text(path, "the function path")
    module, sep, attr = path.partition(":") if ":" in path else path.rpartition(".")
    if not path or not module or not attr or not sep:
        raise ValueError(f"the function path must look like 'package.module.function', got {path!r}")
    return path


def run_at_ms(when: object) -> int:
    """``enqueue_at``'s time as ms since the epoch: a datetime (naive: local time), a date (its local
    midnight) or an ISO 8601 string."""
    value = when
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(f"scheduled_time must be a datetime or an ISO 8601 string like "
                             f"'2030-01-31T12:00:00+00:00', got {when!r}") from None
    if isinstance(value, date) and not isinstance(value, datetime):
        value = datetime.combine(value, time())
    if not isinstance(value, datetime):
        raise ValueError(f"scheduled_time must be a datetime, a date or an ISO 8601 string, got "
                         f"{type(when).__name__}")
    try:
        return int(value.timestamp() * 1000)
    except (OverflowError, OSError, ValueError) as exc:
        raise ValueError(f"scheduled_time {when!r} cannot be used: {exc}") from None


def delay_ms(delay: object, what: str = "time_delta") -> int:
    """``enqueue_in``'s delay (a timedelta or seconds) in ms; a negative delay means now."""
    number = seconds(delay, what, negative=True)
    return max(0, int((number or 0.0) * 1000))


def interval_ms(values: object, what: str) -> list[int]:
    """Retry/Repeat intervals (one number of seconds or a list) in ms, each finite and >= 0."""
    items = [values] if isinstance(values, (int, float)) and not isinstance(values, bool) else values
    if isinstance(items, (str, bytes)) or not hasattr(items, "__iter__"):
        raise ValueError(f"{what} interval must be seconds or a list of seconds, got {values!r}")
    out = []
    for item in items:
        if isinstance(item, bool) or not isinstance(item, (int, float)):
            raise ValueError(f"{what} intervals must be numbers of seconds, got {item!r}")
        number = seconds(item, f"{what} interval")
        out.append(int((number or 0.0) * 1000))
    return out or [0]


_RULES: dict[str, Any] = {
    "job_id": job_id,
    "job_timeout": lambda v: seconds(v, "job_timeout", negative=True),
    "result_ttl": lambda v: seconds(v, "result_ttl", negative=True),
    "failure_ttl": lambda v: seconds(v, "failure_ttl", negative=True),
    "ttl": lambda v: seconds(v, "ttl", positive=True),
    "max_attempts": max_attempts,
    "result_history": result_history,
    "description": lambda v: text(str(v), "description"),
    "concurrency_key": lambda v: text(v, "concurrency_key", max_bytes=256),
}


def check(**options: Any) -> None:
    """Check the enqueue options given by name, by the rules enqueue applies (names this module has no
    rule for are left to the enqueue itself): for ``prepare_data`` and ``@job``, so a bad option fails
    where it is written rather than at the later enqueue."""
    for name, value in options.items():
        rule = _RULES.get("job_timeout" if name == "timeout" else name)
        if rule is not None and value is not None:
            rule(value)
