"""A worker's settings, grouped: timings, batch sizes and limits (the pools and queues are given apart)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from clusterq.api.execution import DEFAULT_JOB_TIMEOUT_S

DEFAULT_LEASE_S = 8.0
"""A dead worker's jobs come back within about this long: recovery falls due when the earliest lease ends.
Leases are extended every quarter of it (:data:`HEARTBEATS_PER_LEASE`), so a worker must miss three
heartbeats in a row (6 s at the default: a long GC pause, a stalled host) before its jobs run elsewhere."""
HEARTBEATS_PER_LEASE = 4
DEFAULT_MAX_ATTEMPTS = 3
ROUND_JOBS = 300
"""The most jobs one round trip to Redis carries by default, leased and recorded together (the worker's
``round_jobs``)."""


@dataclass(frozen=True)
class WorkerSettings:
    """How a :class:`~clusterq.Worker` leases, waits and maintains. Every field is also a keyword argument
    of ``Worker(...)``; pass either the keywords or ``settings=WorkerSettings(...)``."""

    lease_s: float = DEFAULT_LEASE_S
    """How long a leased job stays reserved without a heartbeat (extended every quarter of it): a dead
    worker's jobs run again about this long after it died."""
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    """How often a job whose worker died is retried before it fails as abandoned."""
    default_timeout_s: float = DEFAULT_JOB_TIMEOUT_S
    """A job's time limit when it sets none."""
    max_batch: int = 100
    """The most jobs one lease call takes per free slot."""
    batch_target_s: float = 0.05
    """About how much work (by the queue's average job time) a lease call takes per free slot."""
    round_jobs: int = ROUND_JOBS
    """The most jobs one round trip to Redis carries, leased and recorded together (half each when both
    wait). Redis runs a round trip's scripts back to back while every other client waits, about 10-12 us
    per job leased or recorded: the default bounds that near 3-4 ms; lower it for a shorter wait of the
    other clients of that Redis, at a cost in throughput (more round trips per job, see
    docs/worker-throughput.md)."""
    idle_poll_s: float = 30.0
    """While idle, look at every queue at least this often (a wake-up can be lost across a reconnect)."""
    maintenance_interval_s: float = 8.0
    """The longest wait between maintenance rounds (recovery of expired leases, promotion of due scheduled
    jobs); a round falls due sooner when the earliest lease held ends or a scheduled job is due. Keep it no
    longer than ``lease_s``: a lease taken just after a round is then seen by the next round before it
    ends, and a dead worker's jobs come back about ``lease_s`` after it died."""
    trim_interval_s: float = 300.0
    """How often the finished, failed and canceled registries are trimmed."""
    install_signal_handlers: bool = True
    """Handle SIGTERM and SIGINT (only in the main thread)."""

    @property
    def heartbeat_interval_s(self) -> float:
        return self.lease_s / HEARTBEATS_PER_LEASE

    def __post_init__(self) -> None:
        # A budget of 0 or less would lease nothing, and the fetch loop would spin: refused here, where the
        # keyword arguments, settings= and the CLI all pass.
        if isinstance(self.round_jobs, bool) or not isinstance(self.round_jobs, int) or self.round_jobs < 1:
            raise ValueError(f"round_jobs must be a whole number of jobs, 1 or more; got {self.round_jobs!r}")

    @property
    def lease_ms(self) -> int:
        return int(self.lease_s * 1000)

    @classmethod
    def merge(cls, settings: WorkerSettings | None, keywords: dict[str, Any]) -> WorkerSettings:
        """The settings from ``settings`` or from keyword arguments; both at once is refused unless the
        keywords are all at their defaults."""
        if settings is None:
            return cls(**keywords)
        defaults = cls()
        changed = sorted(name for name, value in keywords.items() if value != getattr(defaults, name))
        if changed:
            raise ValueError(f"pass either settings=WorkerSettings(...) or the keyword arguments, not both "
                             f"(got settings and {', '.join(changed)})")
        return settings

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]


__all__ = ["DEFAULT_LEASE_S", "DEFAULT_MAX_ATTEMPTS", "HEARTBEATS_PER_LEASE", "ROUND_JOBS", "WorkerSettings"]
