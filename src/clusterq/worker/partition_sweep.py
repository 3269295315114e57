"""Maintenance of a partitioned queue's partitions without one round of calls per partition every interval.

Maintenance (:mod:`clusterq.worker.maintenance`) sends three calls per queue each round (recovery,
promotion, outbox). A worker on a 64-partition queue would then send ~200 calls per round while idle. So a
round covers a partition only when it may have work for maintenance:

- it is *warm*: it is marked ready (signalled: a job arrived, or ``schedule.lua`` published that a job
  became its earliest scheduled one), or this worker leased a job from it in the last ``WARM_S``;
- its own reply said something falls due (the earliest lease's deadline, the next scheduled job): the
  round when it falls due includes it;
- else it is swept: each round covers the next ``per_round`` partitions in turn, so every partition is
  looked at every ``interval_s * partitions / per_round`` seconds (a lease of a worker that died, which
  this worker never saw, or a job scheduled while no worker listened).

Ordinary (unpartitioned) queues are in every round, as before.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from clusterq.worker.lanes import Lane

WARM_S = 20.0
SWEEP_SHARE = 16
"""A sweep covers ``ceil(partitions / SWEEP_SHARE)`` partitions per round (4 of 64)."""


class PartitionSweep:
    def __init__(self, lanes: Sequence[Lane]) -> None:
        self.lanes = list(lanes)
        self.order = [name for lane in self.lanes for group in lane.groups if len(group) > 1 for name in group]
        self.partitions = set(self.order)
        self.per_round = max(1, math.ceil(len(self.order) / SWEEP_SHARE))
        self.cursor = 0
        self.due: dict[str, float] = {}  # partition -> when (monotonic) its reply said something falls due

    def __bool__(self) -> bool:
        return bool(self.partitions)

    def select(self, names: list[str], now: float) -> list[str]:
        """The queues of this round: every ordinary one, and the partitions that may need it."""
        if not self.partitions:
            return names
        warm: set[str] = set()
        for lane in self.lanes:
            warm |= lane.ready
            warm.update(name for name, at in lane.active.items() if now - at < WARM_S)
        swept = {self.order[(self.cursor + i) % len(self.order)] for i in range(self.per_round)}
        self.cursor = (self.cursor + self.per_round) % len(self.order)
        chosen = [name for name in names if name not in self.partitions or name in warm or name in swept
                  or self.due.get(name, math.inf) <= now]
        for name in chosen:
            self.due.pop(name, None)  # its replies say again what falls due next
        return chosen

    def earliest(self) -> float | None:
        """When the next partition left out of a round falls due (the round must come by then)."""
        return min(self.due.values(), default=None)

    def note(self, name: str, at: float) -> None:
        """``name``'s reply said something falls due at ``at`` (monotonic)."""
        if name in self.partitions:
            self.due[name] = min(at, self.due.get(name, math.inf))


