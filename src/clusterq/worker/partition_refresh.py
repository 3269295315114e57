"""A running worker follows changes of its queues' partition counts (``PartitionedQueue.resize``).

Every :data:`REFRESH_S` (checked from the supervisor loop; one pipelined ``HMGET`` per queue name the worker
was given) the worker re-reads each name's stored count and, during a resize, the old count. It serves the
union: the new partitions (leased first, woken as any queue) and the old ones that are not among them, so
jobs written to an old partition before its producers switched (jobs waiting, scheduled, deferred,
retried, running) still run, and none is stranded. Once the resize is :data:`RETIRE_GRACE_S` old (every
producer re-reads the count within ``clusterq.api.partitions.REFRESH_S``) and every retired partition is
empty (nothing waiting, running, scheduled or deferred), a worker ends the resize (removes the old count)
and, at their next refresh, every worker forgets the retired partitions.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from clusterq.api.partitions import (
    OLD_COUNT_FIELD,
    PARTITION_COUNT_FIELD,
    RESIZED_AT_FIELD,
    partition_count_commands,
    retire_commands,
    retired_empty,
    served,
)
from clusterq.connection.sync import REDIS_ERRORS
from clusterq.state import keys as K
from clusterq.worker.partition_sweep import PartitionSweep

log = logging.getLogger(__name__)

REFRESH_S = 5.0
RETIRE_GRACE_S = 30.0


class PartitionRefresh:
    def __init__(self, worker: Any, names: list[str]) -> None:
        """``worker``: the :class:`~clusterq.worker.Worker` (not imported: it imports this module)."""
        self.worker = worker
        self.names = names  # the names the worker was given (logical queues or plain ones)
        self.served: dict[str, tuple[str, ...]] = {}
        self.next_at = time.monotonic() + REFRESH_S

    def remember(self, served: dict[str, tuple[str, ...]]) -> None:
        self.served = dict(served)

    def maybe_refresh(self, now: float) -> None:
        if now < self.next_at:
            return
        self.next_at = now + REFRESH_S
        try:
            self.refresh()
        except REDIS_ERRORS as exc:
            log.warning("could not re-read the partition counts (%s: %s); trying again in %g s",
                        type(exc).__name__, exc, REFRESH_S)

    def refresh(self) -> None:
        store = self.worker.store
        replies = store.read_many(partition_count_commands(self.names))
        changed = False
        for name, (count_raw, old_raw) in zip(self.names, replies):
            count, old = (int(count_raw) if count_raw else None), (int(old_raw) if old_raw else None)
            if count and old:
                old = self._maybe_finish(name, count, old)
            now_served = served(name, count, old)
            if now_served != self.served.get(name, (name,)):
                self._apply(name, now_served)
                changed = True
        if changed:
            self._rebuild()

    def _maybe_finish(self, name: str, count: int, old: int) -> int | None:
        """End the resize of ``name`` if it is old enough and its retired partitions are empty."""
        qk = K.QueueKeys(name)
        at = self.worker.connection.hget(qk.partitions, RESIZED_AT_FIELD)
        if at is not None and time.time() * 1000 - int(at) < RETIRE_GRACE_S * 1000:
            return old
        if not retired_empty(self.worker.store.read_many(retire_commands(name, count, old))):
            return old
        stored = self.worker.connection.hmget(qk.partitions, [PARTITION_COUNT_FIELD, OLD_COUNT_FIELD])
        if stored[0] is None or int(stored[0]) != count or stored[1] is None:
            return old  # changed meanwhile: the next refresh looks again
        self.worker.connection.hdel(qk.partitions, OLD_COUNT_FIELD, RESIZED_AT_FIELD)
        log.warning("queue %r: resize from %d to %d partitions finished (the old partitions are empty)",
                    name, old, count)
        return None

    def _apply(self, name: str, partitions: tuple[str, ...]) -> None:
        worker = self.worker
        before = self.served.get(name, (name,))
        for lane in worker.lanes:
            groups = lane.lease_groups()
            for index, group in enumerate(groups):
                if group and group[0] == name:
                    groups[index] = list(partitions)
                    lane.groups = groups
                    lane.queues = [q for g in groups for q in g]
                    lane.ready.update(partitions)
                    lane.turns[index] = 0
        for part in partitions:
            worker.queue_keys.setdefault(part, K.QueueKeys(part))
        self.served[name] = partitions
        log.warning("queue %r: now serving %d partitions (was %d)", name, len(partitions), len(before))

    def _rebuild(self) -> None:
        worker = self.worker
        worker.queue_names = [q for lane in worker.lanes for q in lane.queues]
        worker.maintenance.queue_names = list(worker.queue_names)
        worker.maintenance.sweep = PartitionSweep(worker.lanes)
        if worker._waker is not None:
            worker._start_waker()  # subscribe the new partitions' wake channels
