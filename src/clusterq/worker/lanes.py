"""What the worker's parts share: its lanes (queues served by one pool) and its counters."""

from __future__ import annotations

from dataclasses import dataclass, field

from clusterq.worker.pools.factory import Pool


@dataclass
class WorkerStats:
    processed: int = 0
    finished: int = 0
    failed: int = 0
    stopped: int = 0  # jobs stopped by job.stop()
    lost: int = 0  # outcomes refused because the lease was lost
    crashed: int = 0  # jobs whose process died under them (left to the lease rules)


@dataclass
class Lane:
    """Queues served by one pool. ``avg_job_s`` sizes its lease batches."""

    queues: list[str]
    pool: Pool
    avg_job_s: float = 0.05
    ready: set[str] = field(default_factory=set)
