"""What the worker's parts share: its lanes (queues served by one pool) and its counters."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from clusterq.api.partitions import resolve_partitions
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
    groups: list[list[str]] = field(default_factory=list)
    """The queues in priority order, the partitions of one partitioned queue together in one group (tried
    together, in one pipeline per node, from a rotating start); empty: each queue its own group."""
    turns: dict[int, int] = field(default_factory=dict)  # group index -> where its next round starts
    active: dict[str, float] = field(default_factory=dict)  # partition -> when (monotonic) it last gave jobs

    def lease_groups(self) -> list[list[str]]:
        return self.groups or [[name] for name in self.queues]

    def rotated(self, index: int, group: list[str]) -> list[str]:
        """``group``'s ready queues, from where the previous round stopped (no partition favoured)."""
        if len(group) == 1:
            return group if group[0] in self.ready else []
        start = self.turns.get(index, 0) % len(group)
        return [name for name in group[start:] + group[:start] if name in self.ready]

    def advance(self, index: int, group: list[str], asked: list[str]) -> None:
        if len(group) > 1 and asked:
            self.turns[index] = group.index(asked[-1]) + 1


def expand_partitions(client: Any, lanes: list[Lane]) -> dict[str, tuple[str, ...]]:
    """Replace each partitioned queue's name in ``lanes`` by its partitions (read the stored counts: one
    pipeline per node), grouped so the fetch step leases from them together, from a random start. Returns
    each name's partitions."""
    names = [name for lane in lanes for name in lane.queues]
    expanded = resolve_partitions(client, names)
    for lane in lanes:
        groups = [list(expanded.get(name, (name,))) for name in lane.queues]
        if any(len(group) > 1 for group in groups):
            lane.groups = groups
            lane.queues = [name for group in groups for name in group]
            lane.turns = {i: random.randrange(len(g)) for i, g in enumerate(groups) if len(g) > 1}
    return expanded
