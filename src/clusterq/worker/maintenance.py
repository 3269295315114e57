"""Maintenance: the periodic work a worker does besides running jobs, in bounded batches.

- recovery: jobs whose lease expired (their worker died) are requeued, or failed as abandoned past
  ``max_attempts``;
- promotion: scheduled jobs that are due move to their queue;
- outbox replay: intents to tell dependents, left behind by a process that died between writing and
  applying them, are forwarded;
- trimming of the finished, failed and canceled registries (every ``trim_interval_s``);
- Sentinel follow: after a failover, connections to the demoted primary are dropped.

All of a round's calls go in one round trip; each queue's reply is judged on its own, so one broken queue
or one unreachable node does not stop the maintenance of the others.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from redis.cluster import RedisCluster
from redis.exceptions import NoPermissionError
from redis.sentinel import SentinelConnectionPool

from clusterq.connection.sync import REDIS_ERRORS
from clusterq.state import keys as K
from clusterq.state import store as T
from clusterq.state import transitions as TR
from clusterq.state.outbox import Forwarder
from clusterq.worker.leases import run_each

log = logging.getLogger(__name__)

PROMOTE_BATCH = 100
RECOVER_BATCH = 100
TRIM_BATCH = 1000
RECOVERY_MARGIN_S = 0.05
"""Recovery falls due this long after the earliest lease's deadline (the server's clock decides it expired)."""
SCHEDULED_POLL_S = 1.0
"""While any job is scheduled, maintenance (which promotes due jobs) runs at least this often, so a job
scheduled meanwhile for an earlier time starts within about this long of its time."""


@dataclass
class Round:
    """What a maintenance round found."""

    ready: set[str] = field(default_factory=set)
    """Queues that received jobs (requeued or promoted): worth a lease now."""
    primary_moved: bool = False
    """The Sentinel primary moved: subscriptions on the old one must be made again."""
    failed: dict[str, BaseException] = field(default_factory=dict)
    """Queues whose recovery failed while other calls went through (a dead node, a broken key): the worker
    sets them aside."""


class Maintenance:
    def __init__(self, connection: Any, store: T.Store, forwarder: Forwarder, queue_keys: dict[str, K.QueueKeys],
                 *, max_attempts: int, failure_keep_ms: int, interval_s: float, trim_interval_s: float,
                 on_abandoned: Callable[[str, list[str]], None] = lambda queue, ids: None) -> None:
        self.connection = connection
        self.store = store
        self.forwarder = forwarder
        self.queue_keys = queue_keys
        self.queue_names = list(queue_keys)
        self.max_attempts = max_attempts
        self.failure_keep_ms = failure_keep_ms
        self.interval_s = interval_s
        self.trim_interval_s = trim_interval_s
        self.on_abandoned = on_abandoned  # the on_abandoned hooks: (queue, ids)
        self.next_due = 0.0  # monotonic; 0 means now
        self.next_trim = time.monotonic() + trim_interval_s
        self._sentinel_primary: Any = None
        self.sweep: Any = None  # a PartitionSweep when the worker serves partitioned queues

    def due(self, now: float) -> bool:
        return now >= self.next_due

    def soon(self, at: float) -> None:
        """Run no later than ``at`` (monotonic)."""
        self.next_due = min(self.next_due, at)

    def run(self, now: float, skip: set[str] | frozenset[str] = frozenset()) -> Round:
        """One round for every queue but those in ``skip`` (set aside: a call to an unreachable Cluster node
        costs seconds of redis-py's retries, and their back-off says when to try them again)."""
        done = Round(primary_moved=self.follow_sentinel_primary())
        self.next_due = now + self.interval_s
        names = [name for name in self.queue_names if name not in skip]
        if self.sweep:
            names = self.sweep.select(names, now)
            left_out = self.sweep.earliest()  # a partition left out that falls due later: come back for it
            if left_out is not None:
                self.soon(left_out)
        if not names:
            return done
        keys = [self.queue_keys[name] for name in names]
        recover = [T.requeue_expired_call(k, RECOVER_BATCH, self.max_attempts, self.failure_keep_ms) for k in keys]
        promote = [T.promote_call(k, PROMOTE_BATCH) for k in keys]  # due delayed jobs -> pending
        due = self.forwarder.due_calls(names)  # outbox intents left behind
        trims: list[T.Call] = []
        if now >= self.next_trim:
            self.next_trim = now + self.trim_interval_s
            for k in keys:
                trims.extend(T.trim_call(key, TRIM_BATCH) for key in (k.finished, k.failed, k.canceled))
        results = run_each(self.store, [*recover, *promote, *due, *trims])
        refused = next((r for r in results if isinstance(r, NoPermissionError)), None)
        if refused is not None:
            raise refused  # the Redis user may not do this: no back-off fixes it (the worker exits)
        if all(isinstance(result, BaseException) for result in results):
            log.warning("maintenance skipped: %s", next(iter(results), None))
            return done
        recovered, promoted, due_replies, _ = T.split_results(results, recover, promote, due, trims)
        abandoned = self._recovered(names, recovered, done, now)
        self._promoted(names, promoted, done, now)
        self._replay_outbox(names, abandoned, due_replies)
        return done

    def _recovered(self, names: list[str], results: list[Any], done: Round, now: float) -> list[str]:
        abandoned: list[str] = []  # their dependents are told now, not after the replay grace
        for name, result in zip(names, results):
            if isinstance(result, BaseException):
                done.failed[name] = result
                continue
            recovery = TR.parse_recover(result)
            if recovery.due_in_s is not None:
                # The next recovery is due when the earliest lease held ends, not a whole interval later:
                # a dead worker's jobs come back within about a lease (leases are extended well before).
                self.soon(now + recovery.due_in_s + RECOVERY_MARGIN_S)
                if self.sweep:
                    self.sweep.note(name, now + recovery.due_in_s + RECOVERY_MARGIN_S)
            requeued, failed = recovery.requeued, recovery.abandoned
            if recovery.abandoned_ids:
                self.on_abandoned(name, recovery.abandoned_ids)
            if requeued:
                done.ready.add(name)
                log.warning("queue %r: %d job(s) whose lease expired were requeued", name, requeued)
            if failed:
                log.warning("queue %r: %d job(s) failed as abandoned (attempt limit reached)", name, failed)
                abandoned.append(name)
        return abandoned

    def _promoted(self, names: list[str], results: list[Any], done: Round, now: float) -> None:
        for name, result in zip(names, results):
            if isinstance(result, BaseException):
                log.warning("promoting scheduled jobs of queue %r failed: %s", name, result)
                self.soon(now + SCHEDULED_POLL_S)
                continue
            promoted, due_in_s = T.parse_promote(result)
            if promoted:
                done.ready.add(name)
            if due_in_s is not None:  # the waits end at next_due: wake for the next due job
                self.soon(now + min(SCHEDULED_POLL_S, due_in_s))
                if self.sweep:
                    self.sweep.note(name, now + due_in_s)

    def _replay_outbox(self, names: list[str], abandoned: list[str], due: list[Any]) -> None:
        """Forward outbox intents left behind by a process that died (or lost Redis) between writing and
        applying them: bounded batches, and only intents older than the grace, which are not being
        forwarded right now by whoever wrote them."""
        try:
            if abandoned:
                self.forwarder.replay(abandoned, min_age_s=0.0)
            _, next_s = self.forwarder.forward_due(names, due)
        except REDIS_ERRORS as exc:
            log.warning("replaying outbox intents failed: %s", exc)
            return
        if next_s is not None:
            self.soon(time.monotonic() + next_s)

    def follow_sentinel_primary(self) -> bool:
        """Ask the sentinels where the primary is; after a failover, drop connections to the old one. True
        if it moved.

        redis-py asks only when it reconnects, so without this a worker keeps writing to a demoted primary
        that still accepts writes (which Redis then throws away) until it refuses or drops the connection.
        """
        pool = None if isinstance(self.connection, RedisCluster) else self.connection.connection_pool
        if not isinstance(pool, SentinelConnectionPool):  # only a Sentinel client follows its primary
            return False
        try:
            address = pool.get_master_address()  # also disconnects idle connections when it moved
        except REDIS_ERRORS as exc:
            log.warning("cannot ask the sentinels for the primary: %s", exc)
            return False
        moved = self._sentinel_primary is not None and address != self._sentinel_primary
        if moved:
            log.warning("the Sentinel primary moved from %s to %s; reconnecting", self._sentinel_primary, address)
        self._sentinel_primary = address
        return moved


__all__ = ["Maintenance", "PROMOTE_BATCH", "RECOVERY_MARGIN_S", "Round", "SCHEDULED_POLL_S"]
