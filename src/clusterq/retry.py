"""``Retry``: run a failed job again, after the intervals given (RQ's ``Retry(max=, interval=)``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Retry:
    """Retry a job that raised (or ran past its time limit) up to ``max`` more times.

    ``interval`` is seconds before each retry: one number for all, or a list (the last value repeats).
    A retry waits in the queue's scheduled set, so it survives worker restarts like any delayed job.
    """

    max: int
    interval: float | Sequence[float] = 0

    def __post_init__(self) -> None:
        if not isinstance(self.max, int) or isinstance(self.max, bool) or self.max < 1:
            raise ValueError(f"Retry(max=...) must be a positive int, got {self.max!r}")
        intervals = self.intervals_s()
        if any(i < 0 for i in intervals):
            raise ValueError(f"Retry intervals must not be negative, got {self.interval!r}")

    def intervals_s(self) -> list[float]:
        if isinstance(self.interval, (int, float)):
            return [float(self.interval)]
        values = [float(i) for i in self.interval]
        return values or [0.0]

    def encode(self) -> list[object]:
        """The form stored in the job's options: ``[max, [ms, ...]]``."""
        return [self.max, [int(i * 1000) for i in self.intervals_s()]]
