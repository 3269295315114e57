"""The fetch step: lease a batch for every free pool slot, carrying the buffered outcomes in the same round
trip, and keep every reply that came back.

One round trip per queue tried (its lease call, with the buffered outcomes riding on the first one). Each
reply is judged on its own: a queue whose call failed (its Cluster node is down, one of its keys holds the
wrong type) is set aside with a loud error and a back-off of its own, while the other queues go on; the
outcomes recorded and the jobs leased in the same round trip are kept.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from redis.exceptions import ClusterDownError, ConnectionError, TimeoutError

from clusterq.state import keys as K
from clusterq.state import store as T
from clusterq.worker.leases import Leases, run_each
from clusterq.worker.outcomes import SCRIPT_JOBS, Batch, Outcomes, Settled, chunks, log_lost
from clusterq.worker.settings import ROUND_JOBS

if TYPE_CHECKING:
    from clusterq.worker.lanes import Lane

log = logging.getLogger(__name__)

# A node that does not answer (dead, failing over, partitioned): not something about the queue's keys.
UNREACHABLE = (ConnectionError, TimeoutError, ClusterDownError, OSError)
OUTCOME_DELAY_S = 0.005
"""How long a busy worker lets an outcome wait for the next lease's round trip (or for more outcomes)
before sending it on its own."""
OUTCOMES_ALONE = 50
"""How many buffered outcomes a busy worker sends on their own, without waiting for a lease to ride with."""
SET_ASIDE_MIN_S = 0.5
SET_ASIDE_MAX_S = 30.0
SET_ASIDE_UNREACHABLE_MAX_S = 1.0
"""The back-off's cap when the queue's node could not be reached (not a broken key): a failover or a
restart ends that within seconds, and with the store's fail_fast one more try costs a refused connection."""


class SetAside:
    """Queues whose calls failed, each retried on its own after a back-off (doubling up to
    :data:`SET_ASIDE_MAX_S`) while the worker's other queues run."""

    def __init__(self) -> None:
        self._until: dict[str, float] = {}  # queue -> when (monotonic) to try it again
        self._backoff_s: dict[str, float] = {}
        self._failed_now: set[str] = set()  # failed in the current round: a success in it does not clear that

    def begin_round(self) -> None:
        self._failed_now.clear()

    def __contains__(self, queue: str) -> bool:
        return queue in self._backoff_s

    def __bool__(self) -> bool:
        return bool(self._backoff_s)

    def fail(self, queue: str, what: str, exc: BaseException) -> None:
        cap = SET_ASIDE_UNREACHABLE_MAX_S if isinstance(exc, UNREACHABLE) else SET_ASIDE_MAX_S
        backoff_s = min(cap, max(SET_ASIDE_MIN_S, self._backoff_s.get(queue, 0.0) * 2))
        self._backoff_s[queue] = backoff_s
        self._failed_now.add(queue)
        self._until[queue] = time.monotonic() + backoff_s
        log.error("queue %r set aside: %s failed (%s: %s); its other work waits, the worker's other queues go "
                  "on; retrying it in %.1f s", queue, what, type(exc).__name__, exc, backoff_s)

    def ok(self, queue: str) -> None:
        if queue in self._failed_now:  # e.g. its lease went through but its outcomes could not be recorded
            return
        if self._backoff_s.pop(queue, None) is not None:
            self._until.pop(queue, None)
            log.warning("queue %r works again", queue)

    def waiting(self) -> set[str]:
        """The queues still inside their back-off."""
        now = time.monotonic()
        return {q for q, until in self._until.items() if until > now}

    def take_due(self) -> list[str]:
        """Queues whose back-off is over: to be tried again (they stay set aside until a call succeeds)."""
        now = time.monotonic()
        due = [q for q, until in self._until.items() if until <= now]
        for queue in due:
            del self._until[queue]
        return due

    def deadlines(self) -> list[float]:
        return list(self._until.values())


@dataclass
class Fetched:
    leased: int = 0
    lost: int = 0
    """Outcomes refused because the lease was lost."""
    succeeded: bool = False
    """At least one call went through: Redis is reachable."""
    errors: list[BaseException] = field(default_factory=list)


def split_room(room: int, ready: list[str]) -> list[tuple[str, int]]:
    """Share ``room`` jobs between ``ready`` queues (in order; at most ``room`` of them, each asked for 1+)."""
    if len(ready) == 1:
        return [(ready[0], room)]
    asked = ready[:room]
    base, extra = divmod(room, len(asked))
    return [(name, base + (1 if i < extra else 0)) for i, name in enumerate(asked)]


class Fetcher:
    """Leases for the lanes and sends the buffered outcomes; see the module's docstring."""

    def __init__(self, store: T.Store, queue_keys: dict[str, K.QueueKeys], leases: Leases, outcomes: Outcomes,
                 set_aside: SetAside, lanes: list[Lane], *, worker_name: str, failure_keep_ms: int,
                 round_jobs: int = ROUND_JOBS, while_waiting: Callable[[], None] | None = None) -> None:
        self.store = store
        self.lanes = lanes
        self.queue_keys = queue_keys
        self.leases = leases
        self.outcomes = outcomes
        self.set_aside = set_aside
        self.worker_name = worker_name
        self.failure_keep_ms = failure_keep_ms
        self.held_back: dict[str, float] = {}  # rate-limited queue -> when (monotonic) to lease again
        # Queues whose last lease filled all it asked for: only they are asked for more than one call's
        # worth. A queue just signalled from empty, or that came back short, is asked for SCRIPT_JOBS
        # first: its round trip is then one call, not a train of writes that find the queue empty
        # (an idle worker's wake-up pays one write; a queue that fills its ask gets the whole room
        # from the next round trip on, which follows at once).
        self.filled: set[str] = set()
        self.to_forward: list[tuple[str, str]] = []  # outbox intents our completions wrote
        # Called while a lease round trip is in flight (the worker takes its children's outcomes meanwhile):
        # the supervisor's share of the work overlaps the server's instead of following it.
        self.while_waiting = while_waiting
        self.round_jobs = round_jobs

    def fetch(self, lanes: list[Lane], budget: int | None, batch_size: Callable[[Lane], int],
              run: Callable[[Lane, list[T.LeasedJob]], None], *, due: bool = True) -> Fetched:
        """Lease for every lane with a free slot (``lanes`` is empty while suspended), trying its queues in
        order; ``run`` hands a lane's jobs to its pool. The buffered outcomes ride along with the first
        lease calls, or are sent on their own if no queue is leased from: then only when ``due`` (nothing
        more is running), when :data:`OUTCOMES_ALONE` are buffered, or when the oldest has waited
        :data:`OUTCOME_DELAY_S` (a busy worker does not pay a round trip for each job that ends)."""
        done = Fetched()
        self.set_aside.begin_round()
        since = self.outcomes.since
        # A round trip carries at most round_jobs jobs: the outcomes first, but no more than half of them
        # when jobs are to be leased too (the rest ride with the next round trip, very soon).
        cap = max(2, self.round_jobs)  # 1 still leases: half of it goes to outcomes
        wanted = any(lane.pool.free() for lane in lanes)
        batch = self.outcomes.take(exclude=self.set_aside.waiting(), limit=cap // 2 if wanted else cap)
        batch.since = since
        lease_cap = cap - sum(map(len, batch.parts))
        budget = lease_cap if budget is None else min(budget, lease_cap)
        try:
            self._lease_for(lanes, budget, batch_size, run, batch, done, due)
        finally:
            batch.unsent()  # not sent yet, or an error no reply stands for: the outcomes stay buffered
            if self.outcomes:
                self.outcomes.since = min(self.outcomes.since, since)
        return done

    def _lease_for(self, lanes: list[Lane], budget: int | None, batch_size: Callable[[Lane], int],
                   run: Callable[[Lane, list[T.LeasedJob]], None], batch: Batch, done: Fetched,
                   due: bool = True) -> None:
        open_lanes = [(lane, free) for lane, free in ((lane, lane.pool.free()) for lane in lanes) if free]
        for index, (lane, free) in enumerate(open_lanes):
            per_slot = batch_size(lane) if lane.pool.batches else 1
            room = free * per_slot
            if budget is not None:  # each lane with a free slot gets its share (what one before left goes on)
                left = budget - done.leased
                room = min(room, -(-left // (len(open_lanes) - index)))
            if room <= 0:
                continue
            jobs: list[T.LeasedJob] = []
            for index, group in enumerate(lane.lease_groups()):
                ready = lane.rotated(index, group)
                if not ready or len(jobs) >= room:
                    continue
                # One queue, or the ready partitions of a partitioned queue: their lease calls share the
                # room; each ask goes in calls of at most SCRIPT_JOBS jobs (a bounded hold of the server),
                # and all of them, with the riding outcomes, in one round trip (one pipeline per node, in
                # writes of at most WRITE_JOBS jobs: see run_each).
                asks = [(name, wanted if name in self.filled else min(wanted, SCRIPT_JOBS))
                        for name, wanted in split_room(room - len(jobs), ready)]
                lane.advance(index, group, [name for name, _ in asks])
                plan = [(name, [len(part) for part in chunks(list(range(wanted)))]) for name, wanted in asks]
                calls = [T.lease_call(self.queue_keys[name], size, self.lease_ms, self.worker_name,
                                      self.failure_keep_ms) for name, sizes in plan for size in sizes]
                riding = batch.calls if batch else []  # the outcomes go with the first lease calls only
                results = run_each(self.store, [*riding, *calls], packed=True, while_waiting=self.while_waiting)
                settled, replies = T.split_results(results, riding, calls)
                if riding:
                    self.settle(batch, settled, done)
                at = 0
                for name, sizes in plan:
                    got = self._leased_all(lane, name, sizes, replies[at : at + len(sizes)], done)
                    at += len(sizes)
                    if got and lane.groups:
                        lane.active[name] = time.monotonic()  # maintenance keeps it in every round a while
                    jobs.extend(got)
            if jobs:
                done.leased += len(jobs)
                run(lane, jobs)  # the solo pool runs them right here
        if batch and (due or len(self.outcomes) + sum(map(len, batch.parts)) >= OUTCOMES_ALONE
                      or time.monotonic() - batch.since >= OUTCOME_DELAY_S):
            self.settle(batch, run_each(self.store, batch.calls, packed=True), done)

    def _leased_all(self, lane: Lane, name: str, sizes: list[int], replies: list[Any],
                    done: Fetched) -> list[T.LeasedJob]:
        """The jobs of every reply (each call is judged on its own: all leased jobs are kept); a queue whose
        calls failed is set aside once."""
        jobs: list[T.LeasedJob] = []
        failed = False
        for size, reply in zip(sizes, replies):
            if isinstance(reply, BaseException):
                if not failed:
                    failed = True
                    jobs.extend(self._leased(lane, name, size, reply, done))
                continue
            jobs.extend(self._leased(lane, name, size, reply, done))
        if len(jobs) >= sum(sizes):
            self.filled.add(name)
        else:
            self.filled.discard(name)
        return jobs

    @property
    def lease_ms(self) -> int:
        return self.leases.lease_ms

    def _leased(self, lane: Lane, name: str, wanted: int, result: Any, done: Fetched) -> list[T.LeasedJob]:
        if isinstance(result, BaseException):
            lane.ready.discard(name)
            self.set_aside.fail(name, "leasing", result)
            done.errors.append(result)
            return []
        done.succeeded = True
        self.set_aside.ok(name)
        reply = T.parse_lease_reply(name, result)
        if reply.suspended:
            lane.ready.discard(name)  # resume() publishes on the wake channel
        elif reply.wait_s > 0:
            lane.ready.discard(name)  # this queue only: the others go on
            self.held_back[name] = time.monotonic() + reply.wait_s
        elif len(reply.jobs) < wanted and reply.remaining == 0:
            lane.ready.discard(name)
        self.leases.hold(reply.jobs)
        return reply.jobs

    def flush(self, everything: bool = False) -> Fetched:
        """Send the buffered outcomes now (nothing to lease); ``everything``: those of set-aside queues too."""
        done = Fetched()
        self.set_aside.begin_round()
        exclude: set[str] | frozenset[str] = frozenset() if everything else self.set_aside.waiting()
        while True:  # round trips of at most round_jobs outcomes each
            batch = self.outcomes.take(exclude=exclude, limit=max(1, self.round_jobs))
            if not batch:
                return done
            settled = self.settle(batch, run_each(self.store, batch.calls, packed=True), done)
            if settled.failed:  # put back: not sent again in this flush
                return done

    def settle(self, batch: Batch, results: list[Any], done: Fetched) -> Settled:
        settled = batch.settle(results)
        self.leases.drop(settled.recorded)
        log_lost(settled)
        done.lost += len(settled.lost)
        self.to_forward.extend(settled.forward)
        if settled.recorded:
            done.succeeded = True
        for queue in batch.queues:
            if queue in settled.failed:
                self.set_aside.fail(queue, "recording outcomes", settled.failed[queue])
                done.errors.append(settled.failed[queue])
                for lane in self.lanes:  # a queue whose outcomes cannot be recorded leases nothing more
                    lane.ready.discard(queue)
            else:
                self.set_aside.ok(queue)
        return settled


__all__ = ["Fetched", "Fetcher", "SetAside"]
