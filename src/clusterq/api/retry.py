"""Running a job again: ``Retry`` after a failure (RQ's ``Retry(max=, interval=)``, plus exponential
``Backoff`` with jitter), ``RetryJob`` raised by the job itself, and ``Repeat`` after a success (RQ's
``Repeat(times=, interval=)``).

Whether a job runs again is decided by ``complete.lua`` when the outcome is recorded, from the job's
counters (``rt`` retries, ``yr`` repeats) and the plan the worker sends with the outcome; the job then
waits its interval in the queue's scheduled set (or goes straight back to the queue), so it survives
worker restarts like any delayed job.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from clusterq.api import options as O
from clusterq.exceptions import ClusterQError

RETRY_JOB_MAX = 3
"""How many times a job without a ``Retry`` may run again by raising :class:`RetryJob` (unless the
exception says ``max=``)."""


MAX_RETRY_ON = 32
"""The most exception classes a ``Retry(on=...)`` names."""


def exception_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def retries_on(names: Sequence[str], exc: BaseException) -> bool:
    """Whether a failure raising ``exc`` may be retried under ``Retry(on=names)`` (empty: any failure).
    :class:`NoRetry` is never retried."""
    if isinstance(exc, NoRetry):
        return False
    if not names:
        return True
    mro = {exception_name(c) for c in type(exc).__mro__}
    return any(name in mro for name in names)


def _intervals_ms(interval: float | Sequence[float], what: str) -> list[int]:
    return O.interval_ms(interval, what)


def _positive_int(value: Any, what: str) -> None:
    O.whole(value, what, 1, O.MAX_ATTEMPTS)


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff: the k-th retry (k = 0, 1, ...) waits ``min(maximum, base * factor ** k)``
    seconds; with ``jitter``, a random part of it between half and all of it, drawn when the failure is
    recorded, so jobs that failed together do not all come back together."""

    base: float = 1.0
    factor: float = 2.0
    maximum: float = 3600.0
    jitter: bool = True

    def __post_init__(self) -> None:
        O.seconds(self.base, "Backoff(base=...)", positive=True)
        O.seconds(self.maximum, "Backoff(maximum=...)", positive=True)
        if isinstance(self.factor, bool) or not isinstance(self.factor, (int, float)) or not 1 <= self.factor <= 1e6:
            raise ValueError(f"Backoff(factor=...) must be a number from 1 to 1e6, got {self.factor!r}")
        if not self.maximum >= self.base:
            raise ValueError(f"Backoff needs base > 0, factor >= 1 and maximum >= base, got {self!r}")


@dataclass(frozen=True)
class Retry:
    """Retry a job that raised (or ran past its time limit) up to ``max`` more times.

    ``interval`` is seconds before each retry: one number for all, a list (the last value repeats), or
    a :class:`Backoff`. Retries count over the job's whole life (a repeated job shares them between runs).
    """

    max: int
    interval: float | Sequence[float] | Backoff = 0
    on: type[BaseException] | Sequence[type[BaseException]] | None = None
    """Retry only failures that are one of these exception classes (or subclasses); others are final at
    once. A time limit exceeded is :class:`~clusterq.JobTimeoutError`. None: every failure is retried."""

    def __post_init__(self) -> None:
        _positive_int(self.max, "Retry(max=...)")
        if not isinstance(self.interval, Backoff):
            _intervals_ms(self.interval, "Retry")
        if self.on is not None:
            classes = (self.on,) if isinstance(self.on, type) else tuple(self.on) if isinstance(
                self.on, (list, tuple, set, frozenset)) else None
            if (not classes or len(classes) > MAX_RETRY_ON
                    or not all(isinstance(c, type) and issubclass(c, BaseException) for c in classes)):
                raise TypeError(f"Retry(on=...) must be an exception class or a list of 1 to {MAX_RETRY_ON} of "
                                f"them, got {self.on!r}")
            object.__setattr__(self, "on", classes)

    def on_names(self) -> list[str]:
        """The ``on`` classes as the worker matches them: ``module.QualName`` (nothing is imported by name)."""
        return [exception_name(c) for c in (self.on or ())]  # type: ignore[union-attr]

    def intervals_s(self) -> list[float]:
        if isinstance(self.interval, Backoff):
            return [self.interval.base]
        return [ms / 1000 for ms in _intervals_ms(self.interval, "Retry")]

    def encode(self) -> list[object]:
        """The form stored in the job's options: ``[max, [ms, ...]]`` or ``[max, {"b": [base_ms, factor,
        maximum_ms, jitter]}]``."""
        if isinstance(self.interval, Backoff):
            b = self.interval
            return [self.max, {"b": [int(b.base * 1000), b.factor, int(b.maximum * 1000), 1 if b.jitter else 0]}]
        return [self.max, _intervals_ms(self.interval, "Retry")]


@dataclass(frozen=True)
class Repeat:
    """Run a job that succeeded again, ``times`` more times, waiting ``interval`` seconds before each
    run (one number, or a list whose last value repeats). A failed run is not repeated (unless a
    ``Retry`` runs it again and it then succeeds)."""

    times: int
    interval: float | Sequence[float] = 0

    def __post_init__(self) -> None:
        _positive_int(self.times, "Repeat(times=...)")
        _intervals_ms(self.interval, "Repeat")

    def encode(self) -> list[object]:
        """The form stored in the job's options: ``[times, [ms, ...]]``."""
        return [self.times, _intervals_ms(self.interval, "Repeat")]


class RetryJob(ClusterQError):
    """Raise inside a job to have it run again after ``delay`` seconds.

    It counts as a retry: with a ``Retry`` on the job it uses one of its ``max`` retries (``delay=None``
    then waits the ``Retry``'s interval); without one the job may ask ``max`` times (default
    :data:`RETRY_JOB_MAX`). Once they are spent the job fails with this exception's text.
    """

    def __init__(self, reason: str = "", *, delay: float | None = None, max: int | None = None) -> None:
        if delay is not None and (isinstance(delay, bool) or not isinstance(delay, (int, float))):
            raise ValueError(f"RetryJob(delay=...) must be a number of seconds >= 0, got {delay!r}")
        O.seconds(delay, "RetryJob(delay=...)")
        if max is not None:
            _positive_int(max, "RetryJob(max=...)")
        super().__init__(reason or "the job asked to run again")
        self.delay = delay
        self.max = max


class NoRetry(ClusterQError):
    """Raise inside a job to make this failure final: the job fails at once, its ``Retry``'s retries unused
    (``raise NoRetry("bad input") from exc`` keeps the cause in the traceback). From an exception handler
    or anywhere else, ``job.retries_left = 0`` says the same for the job's current failure."""


# --- the plans complete.lua reads ("max;ms,ms,..." or "max;b:base_ms:factor:cap_ms:multiplier") ----------

def plan_template(value: Any) -> str:
    """A job's stored ``retry`` or ``repeat`` option as a plan; ``{j}`` stands for the jitter multiplier,
    drawn when a failure is recorded (:func:`draw`)."""
    if not value:
        return ""
    count, how = value
    if isinstance(how, dict):
        base_ms, factor, cap_ms, jitter = how["b"]
        return f"{int(count)};b:{int(base_ms)}:{float(factor):g}:{int(cap_ms)}:{'{j}' if jitter else '1'}"
    return f"{int(count)};{','.join(str(int(ms)) for ms in how)}"


def draw(template: str) -> str:
    """The plan to send with an outcome: the template with a fresh jitter multiplier in [0.5, 1]."""
    if "{j}" not in template:
        return template
    return template.replace("{j}", f"{random.uniform(0.5, 1.0):.4f}")


def retry_job_plan(template: str, exc: RetryJob) -> str:
    """The plan for a job that raised :class:`RetryJob`: its ``Retry``'s count (else the exception's
    ``max``, else :data:`RETRY_JOB_MAX`) and the delay the exception asked for (else the Retry's)."""
    count = template.partition(";")[0] if template else str(exc.max or RETRY_JOB_MAX)
    if exc.delay is None and template:
        return draw(template)
    return f"{count};{int((exc.delay or 0) * 1000)}"
