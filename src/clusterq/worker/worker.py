"""The worker (supervisor): leases jobs from its queues in priority order, hands them to an execution
pool, and records their outcomes.

One loop, named steps: ``_maintain`` (recover expired leases, promote due scheduled jobs, trim
registries; bounded batches), ``_absorb`` (take what the pools finished), ``_fetch`` (lease a batch for
each free pool slot, piggybacking the outcomes buffered so far in the same round trip), and ``_wait`` (sleep until a job
finishes, a queue is signalled, a time limit falls due or maintenance is due). A heartbeat thread
extends the leases of the jobs the worker holds and keeps its registration alive.

Batch size adapts to job duration: a lease call asks for about ``batch_target_s`` of work per free
slot, so no-op jobs are leased a hundred at a time while slow jobs are leased one by one and never
wait in one worker's buffer while another worker is idle.

Lanes: a worker can serve some queues with a dedicated pool (``lanes=[(["hot"], ProcessPool(8))]``),
so a flood of one job type cannot starve the others. Queue priority applies within a lane.
"""

from __future__ import annotations

import logging
import os
import select
import signal
import socket
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from redis.cluster import RedisCluster
from redis.exceptions import OutOfMemoryError
from redis.sentinel import SentinelConnectionPool

from clusterq.api.context import JobConnection
from clusterq.api.execution import DEFAULT_JOB_TIMEOUT_S, Executor, FunctionResolver
from clusterq.api.job import DEFAULT_FAILURE_TTL_S
from clusterq.api.queue import Queue
from clusterq.connection.server_checks import server_warnings
from clusterq.connection.sync import REDIS_ERRORS, ConnectionLike, connect, describe
from clusterq.exceptions import ConnectionFailed, StopRequested
from clusterq.scheduling.periodic import CronScheduler, Periodic
from clusterq.serializers import Serializer, resolve_serializer
from clusterq.signing import Signer, SigningKey, make_signer
from clusterq.state import keys as K
from clusterq.state import store as T
from clusterq.state.outbox import Forwarder, ended_entry
from clusterq.worker import registration
from clusterq.worker.pools.factory import Finished, Notifier, Pool, SoloPool, make_pool
from clusterq.worker.registration import REGISTRATION_TTL_S, WorkerInfo, list_workers
from clusterq.worker.wakeup import Waker

log = logging.getLogger(__name__)

DEFAULT_LEASE_S = 15.0
DEFAULT_MAX_ATTEMPTS = 3
PROMOTE_BATCH = 100
SCHEDULED_POLL_S = 1.0
"""While any job is scheduled, maintenance (which promotes due jobs) runs at least this often, so a job
scheduled meanwhile for an earlier time starts within about this long of its time."""


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


def _queue_names(queues: Sequence[str | Queue] | str | Queue) -> list[str]:
    if isinstance(queues, (str, Queue)):
        queues = [queues]
    return [q.name if isinstance(q, Queue) else K.validate_queue_name(q) for q in queues]


class Worker:
    """Serves ``queues`` (tried in the given order) from one Redis deployment.

    ``pool`` is ``"process"`` (default: ``concurrency`` long-lived child processes), ``"fork"`` (a
    child per job), ``"thread"``, ``"asyncio"``, ``"solo"`` (jobs in this thread) or a :class:`Pool`.
    ``lanes`` adds dedicated pools for some queues: ``[(["hot"], "process", 8), (["io"], ThreadPool(32))]``.

    ``max_memory_mb`` recycles a pool child that has grown past it (between batches); ``memory_limit_mb``
    is a hard cap on a child's growth: an allocation past it fails in the job with ``MemoryError``.

    ``lease_s`` is how long a leased job stays reserved without a heartbeat: a dead worker's jobs come
    back after at most about ``lease_s + maintenance_interval_s``; ``max_attempts`` bounds how often a
    job whose worker died is retried before it fails as abandoned.

    ``signing_key`` (bytes or str, or several: any of them verifies) makes the worker run only jobs
    signed with it (:mod:`clusterq.signing`); others fail with a ``SignatureError`` reason without
    their function being imported or their arguments decoded.
    """

    def __init__(
        self,
        queues: Sequence[str | Queue] | str | Queue,
        connection: ConnectionLike = None,
        *,
        pool: str | Pool = "process",
        concurrency: int | None = None,
        lanes: Sequence[tuple[Any, ...]] = (),
        max_jobs_per_child: int | None = None,
        max_memory_mb: float | None = None,
        memory_limit_mb: float | None = None,
        name: str | None = None,
        serializer: Serializer | str | None = None,
        allow: Sequence[str] | None = None,
        signing_key: SigningKey | Signer | None = None,
        lease_s: float = DEFAULT_LEASE_S,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        default_timeout_s: float = DEFAULT_JOB_TIMEOUT_S,
        max_batch: int = 100,
        batch_target_s: float = 0.05,
        idle_poll_s: float = 30.0,
        maintenance_interval_s: float = 10.0,
        trim_interval_s: float = 300.0,
        install_signal_handlers: bool = True,
        periodic: Sequence[Periodic] = (),
    ) -> None:
        first = queues[0] if isinstance(queues, (list, tuple)) and queues else queues
        self.connection = (first.connection if isinstance(first, Queue) and connection is None
                           else connect(connection))
        self.store = T.Store(self.connection)
        pool_options = {"max_jobs_per_child": max_jobs_per_child, "max_memory_mb": max_memory_mb,
                        "memory_limit_mb": memory_limit_mb}
        self.lanes = [Lane(_queue_names(queues), self._pool(pool, concurrency, pool_options), batch_target_s)]
        for spec in lanes:
            lane_queues, lane_pool, *rest = spec
            self.lanes.append(Lane(_queue_names(lane_queues),
                                   self._pool(lane_pool, rest[0] if rest else None, pool_options), batch_target_s))
        names = [n for lane in self.lanes for n in lane.queues]
        if not names:
            raise ValueError("a worker needs at least one queue")
        if len(set(names)) != len(names):
            raise ValueError(f"queue listed twice in {names}")
        self.queue_names = names
        self.queue_keys = {n: K.QueueKeys(n) for n in names}
        self.name = name or f"{socket.gethostname()}.{os.getpid()}.{uuid.uuid4().hex[:6]}"
        self.serializer = resolve_serializer(serializer)
        # Jobs reach Redis (get_current_job) through the worker's client, or a client of their own in a
        # forked child: from the URL when the worker was given one.
        job_connection = JobConnection(connection if connection is not None or not isinstance(first, Queue)
                                       else self.connection, self.connection)
        self.executor = Executor(FunctionResolver(allow), self.serializer, default_timeout_s, self.connection,
                                 job_connection=job_connection,
                                 signer=make_signer(signing_key))
        self.lease_ms = int(lease_s * 1000)
        self.max_attempts = max_attempts
        self.max_batch = max_batch
        self.batch_target_s = batch_target_s
        self.idle_poll_s = idle_poll_s
        self.maintenance_interval_s = maintenance_interval_s
        self.trim_interval_s = trim_interval_s
        self.install_signal_handlers = install_signal_handlers
        self.failure_keep_ms = DEFAULT_FAILURE_TTL_S * 1000
        self.stats = WorkerStats()
        self.forwarder = Forwarder(self.store, self.failure_keep_ms)
        self._to_forward: list[tuple[str, str]] = []  # outbox intents our completions wrote

        self._stop = threading.Event()  # finish the running jobs, then leave
        self._stop_now = False  # a second signal: leave at once, hand the running jobs back
        self._notifier = Notifier()
        self._held: dict[tuple[str, str], int] = {}  # (queue, id) -> token, for heartbeats and release
        self._held_lock = threading.Lock()
        self._stop_requests: dict[tuple[str, str], str] = {}  # (queue, id) -> reason, from any thread
        self._outcomes: dict[str, list[T.Outcome]] = {}
        self._pending_flush: dict[str, list[T.Outcome]] = {}
        for lane in self.lanes:
            lane.ready = set(lane.queues)
        self._waker: Waker | None = None
        self._heartbeat: threading.Thread | None = None
        self._next_maintenance = 0.0
        self._next_trim = time.monotonic() + trim_interval_s
        self._next_poll = 0.0
        self._backoff_s = 0.0
        self._previous_handlers: dict[int, Any] = {}
        self._sentinel_primary: Any = None
        self._held_back: dict[str, float] = {}  # rate-limited queue -> when (monotonic) to lease again
        self._suspended = False  # the global flag (clusterq.suspend), read on a signal and at each poll
        # Periodic jobs (``--with-cron``): a scheduler thread beside the loop, started after the pools fork.
        # With a signing key the worker signs the periodic jobs it enqueues, so that it (and its peers) run them.
        self._cron = CronScheduler(self.connection, periodic, install_signal_handlers=False,
                                   signing_key=self.executor.signer) if periodic else None

    @staticmethod
    def _pool(pool: str | Pool, concurrency: int | None, options: dict[str, Any]) -> Pool:
        if isinstance(pool, Pool):
            return pool
        return make_pool(pool, concurrency, **{k: v for k, v in options.items() if v is not None})

    def __repr__(self) -> str:
        return f"Worker({self.name!r}, queues={self.queue_names})"

    @property
    def pool(self) -> Pool:
        """The pool of the main lane."""
        return self.lanes[0].pool

    # --- public -------------------------------------------------------------------------------

    def work(self, burst: bool = False, max_jobs: int | None = None) -> int:
        """Process jobs until stopped (SIGTERM/SIGINT), or with ``burst`` until every queue is empty.

        Returns the number of jobs processed. A first SIGTERM or SIGINT lets running jobs finish and
        exits; a second one stops them and hands them back to their queues.
        """
        self._setup()
        cron_thread = None
        if self._cron is not None:
            cron_thread = threading.Thread(target=self._cron.run, name="clusterq-cron", daemon=True)
            cron_thread.start()
        log.info("worker %s serving %s on %s (%s)", self.name, ", ".join(self.queue_names),
                 describe(self.connection), self._pools_text())
        try:
            self._loop(burst, max_jobs)
        except StopRequested:
            self._absorb(self.pool.collect())
        finally:
            if cron_thread is not None:
                self._cron.stop()  # type: ignore[union-attr]
                cron_thread.join(timeout=10)
            self._teardown()
        log.info("worker %s stopped: %d processed (%d finished, %d failed)", self.name,
                 self.stats.processed, self.stats.finished, self.stats.failed)
        return self.stats.processed

    def request_stop(self) -> None:
        """Let running jobs finish, then leave (like a first SIGTERM)."""
        self._stop.set()
        if self._cron is not None:
            self._cron.stop()
        for lane in self.lanes:
            lane.pool.draining = True
        self._notifier.notify()

    # --- the loop -----------------------------------------------------------------------------

    def _loop(self, burst: bool, max_jobs: int | None) -> None:
        rechecked = False
        while not self._stop.is_set() and not self._stop_now:
            self._maybe_maintain()
            self._end_holds()
            for lane in self.lanes:
                self._absorb(lane.pool.collect() + lane.pool.enforce_limits())
            busy = sum(lane.pool.busy() for lane in self.lanes)
            if max_jobs is not None and self.stats.processed >= max_jobs:
                break
            budget = None if max_jobs is None else max_jobs - self.stats.processed - busy
            leased = self._fetch(budget)
            if leased is None:  # Redis unreachable: already backed off
                continue
            if leased:
                rechecked = False
                continue
            if busy:
                self._wait(self._pool_wait_s())
            elif not self._suspended and any(lane.ready for lane in self.lanes):
                continue  # a lease stopped early (tombstones): more may be waiting
            elif burst:
                if rechecked:
                    break
                # Queues found empty are skipped until signalled: look at each once more before
                # leaving, so a job enqueued during the burst is not left behind.
                rechecked = True
                self._mark_all_ready()
            else:
                self._idle_wait()

    def _fetch(self, budget: int | None) -> int | None:
        """Lease for every lane with a free slot, trying its queues in order; submit to its pool.

        Buffered outcomes ride along with the first lease call. Returns how many jobs were leased, or
        None if Redis could not be reached (after backing off).
        """
        self._take_signals()  # queues signalled while busy: a higher one must be tried again now
        flush = self._take_outcome_calls()
        total = 0
        try:
            for lane in (self.lanes if not self._suspended else ()):
                free = lane.pool.free()
                if not free:
                    continue
                per_slot = self._batch_size(lane) if lane.pool.batches else 1
                room = free * per_slot if budget is None else min(free * per_slot, budget - total)
                if room <= 0:
                    continue
                jobs: list[T.LeasedJob] = []
                for name in lane.queues:
                    if name not in lane.ready or len(jobs) >= room:
                        continue
                    wanted = room - len(jobs)
                    call = T.lease_call(self.queue_keys[name], wanted, self.lease_ms, self.name,
                                        self.failure_keep_ms)
                    results = self.store.run_many([*flush, call])
                    if flush:
                        self._check_outcome_results(results[:-1])
                        flush = []
                    reply = T.parse_lease_reply(name, results[-1])
                    leased = reply.jobs
                    if reply.suspended:
                        lane.ready.discard(name)  # resume() publishes on the wake channel
                    elif reply.wait_s > 0:
                        lane.ready.discard(name)  # this queue only: the others go on
                        self._held_back[name] = time.monotonic() + reply.wait_s
                    elif len(leased) < wanted and reply.remaining == 0:
                        lane.ready.discard(name)
                    self._hold(leased)
                    jobs.extend(leased)
                if jobs:
                    total += len(jobs)
                    lane.pool.submit(jobs)  # the solo pool runs them right here
                    self._absorb(lane.pool.collect())
            if flush:
                self._check_outcome_results(self.store.run_many(flush))
            self._forward()
        except REDIS_ERRORS as exc:
            self._restore_outcome_calls(flush)
            self._back_off(exc)
            return total or None
        self._backoff_s = 0.0
        return total

    def _batch_size(self, lane: Lane) -> int:
        return max(1, min(self.max_batch, int(self.batch_target_s / max(lane.avg_job_s, 1e-6))))

    def _absorb(self, finished: list[Finished]) -> None:
        """Take what pools report: record outcomes, hand back unstarted jobs, expire crashed leases."""
        handback: list[T.LeasedJob] = []
        crashed: list[T.LeasedJob] = []
        for item in finished:
            if item.outcome is not None:
                self._record(item.job, item.outcome)
            elif item.handback:
                handback.append(item.job)
            else:
                crashed.append(item.job)
                self.stats.crashed += 1
                log.error("%s: job %s (%s): %s; it goes back to its queue by the lease rules (attempt counted)",
                          item.job.queue, item.job.id, item.job.func, item.crashed)
        if handback:
            self._release(handback)
        if crashed:
            self._expire_now(crashed)

    def _wait(self, timeout_s: float) -> None:
        """Sleep until a pool reports, a queue is signalled, or ``timeout_s`` passes."""
        fds: list[Any] = [self._notifier]
        for lane in self.lanes:
            fds.extend(lane.pool.fds())
        try:
            select.select(fds, [], [], max(0.0, timeout_s))
        except (OSError, ValueError):
            time.sleep(min(0.05, max(0.0, timeout_s)))  # a pipe closed under us: the pool will notice
        self._notifier.drain()
        self._take_signals()

    def _take_signals(self) -> None:
        """Mark signalled queues ready; an earlier scheduled job makes maintenance (promotion) due now;
        stop the jobs whose stop was requested."""
        if self._stop_requests:
            self._apply_stops()
        if self._waker is None:
            return
        signalled = self._waker.take()
        for lane in self.lanes:
            lane.ready.update(signalled.intersection(lane.queues))
        if self._waker.control_changed:
            self._waker.control_changed = False
            self._read_suspended()
            self._mark_all_ready()
        if self._waker.schedule_changed:
            self._waker.schedule_changed = False
            self._next_maintenance = 0.0

    # --- stopping jobs (job.stop()) ----------------------------------------------------------------

    def _on_stop_request(self, queue: str, job_id: str, reason: str) -> None:
        """A stop request heard by the waker or the heartbeat (any thread). The solo pool runs the job in
        the supervisor's thread, which is busy with it: it is interrupted from here."""
        with self._held_lock:
            if (queue, job_id) not in self._held:
                return  # another worker's job
            self._stop_requests[(queue, job_id)] = reason
        for lane in self.lanes:
            if isinstance(lane.pool, SoloPool) and queue in lane.queues:
                lane.pool.stop(queue, job_id, reason)
        self._notifier.notify()

    def _apply_stops(self) -> None:
        with self._held_lock:
            requests, self._stop_requests = self._stop_requests, {}
        for (queue, job_id), reason in requests.items():
            pool = self._lane_of(queue).pool
            if pool.stop(queue, job_id, reason):
                log.info("%s: stopping job %s: %s", queue, job_id, reason)
        for lane in self.lanes:
            self._absorb(lane.pool.collect())

    def _pool_wait_s(self) -> float:
        now = time.monotonic()
        deadlines = [self._next_maintenance]
        for lane in self.lanes:
            deadline = lane.pool.next_deadline()
            if deadline is not None:
                deadlines.append(deadline)
        if self._outcomes:
            deadlines.append(now + self.batch_target_s)  # results become visible soon even while busy
        deadlines.extend(self._held_back.values())
        return max(0.0, min(deadlines) - now)

    def _end_holds(self) -> None:
        """Rate-limited queues whose wait is over are tried again."""
        if self._held_back:
            now = time.monotonic()
            for name, until in list(self._held_back.items()):
                if until <= now:
                    del self._held_back[name]
                    self._lane_of(name).ready.add(name)

    def _read_suspended(self) -> None:
        """Read the global suspend flag (a single key of its own)."""
        try:
            suspended = bool(self.connection.exists(K.SUSPENDED))
        except REDIS_ERRORS as exc:
            log.warning("cannot read the global suspend flag: %s", exc)
            return
        if suspended != self._suspended:
            log.info("all queues are %s", "suspended: leasing nothing until resumed" if suspended else "resumed")
        self._suspended = suspended

    def _idle_wait(self) -> None:
        """Every queue is empty and nothing runs: flush, then sleep until a queue is signalled or the
        fallback poll (or maintenance) is due."""
        self._flush_outcomes_safely()
        if self._waker is None or self._waker.broken:
            self._start_waker()
            if self._waker is None or self._waker.broken:
                self._stop.wait(1.0)
                self._mark_all_ready()
                return
        self._wait(min(self._next_poll, self._next_maintenance, *self._held_back.values()) - time.monotonic())
        if time.monotonic() >= self._next_poll:
            # Fallback poll: a wake-up can be lost across a reconnect or failover; this bounds the delay.
            self._next_poll = time.monotonic() + self.idle_poll_s
            self._read_suspended()
            self._mark_all_ready()

    def _mark_all_ready(self) -> None:
        for lane in self.lanes:
            lane.ready.update(lane.queues)

    def _follow_sentinel_primary(self) -> None:
        """Ask the sentinels where the primary is; after a failover, drop connections to the old one.

        redis-py asks only when it reconnects, so without this a worker keeps writing to a demoted primary
        that still accepts writes (which Redis then throws away) until it refuses or drops the connection.
        """
        pool = None if isinstance(self.connection, RedisCluster) else self.connection.connection_pool
        if not isinstance(pool, SentinelConnectionPool):  # only a Sentinel client follows its primary
            return
        try:
            address = pool.get_master_address()  # also disconnects idle connections when it moved
        except REDIS_ERRORS as exc:
            log.warning("cannot ask the sentinels for the primary: %s", exc)
            return
        if self._sentinel_primary is not None and address != self._sentinel_primary:
            log.warning("the Sentinel primary moved from %s to %s; reconnecting", self._sentinel_primary, address)
            self._start_waker()  # its subscription is on the old primary
        self._sentinel_primary = address

    def _maybe_maintain(self) -> None:
        now = time.monotonic()
        if now < self._next_maintenance:
            return
        self._follow_sentinel_primary()
        self._next_maintenance = now + self.maintenance_interval_s
        keys = list(self.queue_keys.values())
        calls = [T.requeue_expired_call(k, 100, self.max_attempts, self.failure_keep_ms) for k in keys]
        calls.extend(T.promote_call(k, PROMOTE_BATCH) for k in keys)  # due delayed jobs -> pending
        calls.extend(self.forwarder.due_calls(self.queue_names))  # outbox intents left behind
        if now >= self._next_trim:
            self._next_trim = now + self.trim_interval_s
            for k in keys:
                calls.extend(T.trim_call(key, 1000) for key in (k.finished, k.failed, k.canceled))
        try:
            results = self.store.run_many(calls, raise_on_error=False)
        except REDIS_ERRORS as exc:
            log.warning("maintenance skipped: %s", exc)
            return
        abandoned: list[str] = []  # their dependents are told now, not after the replay grace
        for name, result in zip(self.queue_names, results):
            if isinstance(result, Exception):
                log.warning("maintenance of queue %r failed: %s", name, result)
                continue
            requeued, failed = int(result[0]), int(result[1])
            if requeued:
                self._lane_of(name).ready.add(name)
                log.warning("queue %r: %d job(s) whose lease expired were requeued", name, requeued)
            if failed:
                log.warning("queue %r: %d job(s) failed as abandoned (attempt limit reached)", name, failed)
                abandoned.append(name)
        for name, result in zip(self.queue_names, results[len(keys):]):
            if isinstance(result, Exception):
                log.warning("promoting scheduled jobs of queue %r failed: %s", name, result)
                self._next_maintenance = min(self._next_maintenance, now + SCHEDULED_POLL_S)
                continue
            promoted, due_in_s = T.parse_promote(result)
            if promoted:
                self._lane_of(name).ready.add(name)
            if due_in_s is not None:  # the waits end at _next_maintenance: wake for the next due job
                self._next_maintenance = min(self._next_maintenance, now + min(SCHEDULED_POLL_S, due_in_s))
        self._replay_outbox(abandoned, results[2 * len(keys) : 3 * len(keys)])

    def _replay_outbox(self, abandoned: list[str], due: list[Any]) -> None:
        """Forward outbox intents left behind by a process that died (or lost Redis) between writing and
        applying them: bounded batches, and only intents older than the grace, which are not being
        forwarded right now by whoever wrote them."""
        try:
            if abandoned:
                self.forwarder.replay(abandoned, min_age_s=0.0)
            _, next_s = self.forwarder.forward_due(self.queue_names, due)
        except REDIS_ERRORS as exc:
            log.warning("replaying outbox intents failed: %s", exc)
            return
        if next_s is not None:
            self._next_maintenance = min(self._next_maintenance, time.monotonic() + next_s)

    def _lane_of(self, queue: str) -> Lane:
        return next(lane for lane in self.lanes if queue in lane.queues)

    # --- setup and teardown -------------------------------------------------------------------

    def _setup(self) -> None:
        for lane in self.lanes:  # fork the pools' children before this process starts threads
            lane.pool.start(self.executor, self._notifier)
        try:
            self._register()
        except REDIS_ERRORS as exc:
            for lane in self.lanes:
                lane.pool.close(now=True)
            raise ConnectionFailed(f"worker {self.name} cannot register on {describe(self.connection)}: "
                                   f"{type(exc).__name__}: {exc}") from None
        for warning in server_warnings(self.connection):
            log.warning("%s", warning)
        self._start_waker()
        self._heartbeat = threading.Thread(target=self._heartbeat_loop, name="clusterq-heartbeat", daemon=True)
        self._heartbeat.start()
        in_main = threading.current_thread() is threading.main_thread()
        if self.install_signal_handlers and in_main:
            for signum in (signal.SIGTERM, signal.SIGINT):
                self._previous_handlers[signum] = signal.signal(signum, self._on_signal)
        if not in_main and any(isinstance(lane.pool, SoloPool) for lane in self.lanes):
            log.warning("worker %s runs its solo pool outside the main thread: job time limits (SIGALRM) are "
                        "not enforced there; use the process pool for hard limits", self.name)

    def _teardown(self) -> None:
        self._stop.set()
        for lane in self.lanes:
            try:
                self._absorb(lane.pool.close(now=self._stop_now))
            except REDIS_ERRORS as exc:
                log.warning("could not record the last outcomes (%s); their leases will expire", exc)
        try:
            self._release_held()
            self._flush_outcomes()
        except REDIS_ERRORS as exc:
            log.warning("could not hand back jobs on exit (%s); their leases will expire and they will rerun", exc)
        if self._waker is not None:
            self._waker.close()
        if self._heartbeat is not None:
            self._heartbeat.join(timeout=5)
        try:
            registration.unregister(self.connection, self.name)
        except REDIS_ERRORS:
            pass
        for signum, handler in self._previous_handlers.items():
            signal.signal(signum, handler)
        self._previous_handlers.clear()
        self._notifier.close()

    def _on_signal(self, signum: int, frame: Any) -> None:
        if not self._stop.is_set():
            log.info("%s received: finishing the running jobs, then stopping (send again to stop now)",
                     signal.Signals(signum).name)
            self.request_stop()
            return
        self._stop_now = True
        for lane in self.lanes:
            lane.pool.abort = True  # a graceful close in progress stops waiting for its jobs
        self._notifier.notify()
        solo = self.pool if isinstance(self.pool, SoloPool) else None
        if solo is not None and solo.current is not None:
            raise StopRequested(f"stopped by {signal.Signals(signum).name}")

    def _start_waker(self) -> None:
        if self._waker is not None:
            self._waker.close()
        self._waker = Waker(self.connection, self.queue_names, notify=self._notifier.notify,
                            on_stop=self._on_stop_request, control=True)
        try:
            self._waker.start()
        except REDIS_ERRORS as exc:
            log.warning("cannot subscribe to wake-up channels (%s); polling every second instead", exc)
            self._waker.broken = True
        self._read_suspended()  # after subscribing, so a change from now on is heard
        self._mark_all_ready()  # anything may have arrived while unsubscribed

    def _pools_text(self) -> str:
        return "; ".join(f"{lane.pool.kind}:{lane.pool.concurrency} for {','.join(lane.queues)}"
                         for lane in self.lanes)

    # --- leases and outcomes ------------------------------------------------------------------

    def _hold(self, leased: list[T.LeasedJob]) -> None:
        with self._held_lock:
            for job in leased:
                self._held[(job.queue, job.id)] = job.token

    def _record(self, leased: T.LeasedJob, outcome: T.Outcome) -> None:
        self.stats.processed += 1
        lane = self._lane_of(leased.queue)
        lane.avg_job_s = 0.8 * lane.avg_job_s + 0.2 * outcome.elapsed_s
        if outcome.status == "finished":
            self.stats.finished += 1
            log.debug("%s: job %s (%s) finished", leased.queue, leased.id, leased.func)
        elif outcome.status == "stopped":
            # Recorded by complete.lua as status "stopped" in the failed registry, never retried; the
            # on_stopped callback (if any) hangs off this outcome.
            self.stats.stopped += 1
            log.info("%s: job %s (%s) stopped: %s", leased.queue, leased.id, leased.func,
                     outcome.data.decode("utf-8", "replace"))
        else:
            self.stats.failed += 1
            log.warning("%s: job %s (%s) failed: %s", leased.queue, leased.id, leased.func,
                        outcome.data.decode("utf-8", "replace").splitlines()[0] if outcome.data else "")
        self._outcomes.setdefault(leased.queue, []).append(outcome)

    def _take_outcome_calls(self) -> list[T.Call]:
        calls = [T.complete_call(self.queue_keys[q], outs) for q, outs in self._outcomes.items()]
        self._pending_flush = self._outcomes
        self._outcomes = {}
        return calls

    def _restore_outcome_calls(self, calls: list[T.Call]) -> None:
        if calls:  # not sent: keep them for the next try
            for queue, outs in self._pending_flush.items():
                self._outcomes.setdefault(queue, [])[:0] = outs
        self._pending_flush = {}

    def _check_outcome_results(self, results: list[Any]) -> None:
        for (queue, outs), codes in zip(self._pending_flush.items(), results):
            with self._held_lock:
                for outcome, code in zip(outs, codes):
                    self._held.pop((queue, outcome.id), None)
                    if int(code) == 2:  # it has dependents: its completion wrote an outbox intent
                        self._to_forward.append((queue, ended_entry(outcome.status, outcome.id)))
                    if not int(code):
                        self.stats.lost += 1
                        log.warning("%s: job %s: its lease was lost (expired, canceled or deleted) before "
                                    "its outcome was recorded; outcome dropped", queue, outcome.id)
        self._pending_flush = {}

    def _flush_outcomes(self) -> None:
        calls = self._take_outcome_calls()
        if calls:
            try:
                results = self.store.run_many(calls)
            except BaseException:
                self._restore_outcome_calls(calls)
                raise
            self._check_outcome_results(results)
        self._forward()

    def _forward(self) -> None:
        """Tell the dependents of jobs that just ended (children and groups, in any queue). Whatever is
        not forwarded now stays in the outbox, and maintenance replays it."""
        if self._to_forward:
            entries, self._to_forward = self._to_forward, []
            try:
                self.forwarder.forward(entries)
            except REDIS_ERRORS as exc:
                log.warning("could not tell the dependents of %d job(s) now (%s); maintenance will", len(entries), exc)

    def _flush_outcomes_safely(self) -> None:
        try:
            self._flush_outcomes()
        except REDIS_ERRORS as exc:
            self._back_off(exc)

    def _by_queue(self, jobs: list[T.LeasedJob]) -> dict[str, list[tuple[str, int]]]:
        by_queue: dict[str, list[tuple[str, int]]] = {}
        for job in jobs:
            by_queue.setdefault(job.queue, []).append((job.id, job.token))
        return by_queue

    def _release(self, jobs: list[T.LeasedJob]) -> None:
        """Give jobs that did not run (to the end) back to the head of their queues, uncounted."""
        calls = [T.release_call(self.queue_keys[q], leases) for q, leases in self._by_queue(jobs).items()]
        try:
            self.store.run_many(calls)
        except REDIS_ERRORS as exc:
            log.warning("could not hand back %d job(s) (%s); they return when their lease expires", len(jobs), exc)
            return
        self._forget(jobs)
        log.info("handed %d job(s) back to their queue(s)", len(jobs))

    def _expire_now(self, jobs: list[T.LeasedJob]) -> None:
        """End the leases of jobs whose process died: maintenance then requeues them (attempt counted)
        or fails them as abandoned past the limit, exactly as for a worker that died."""
        calls = [T.extend_call(self.queue_keys[q], leases, 0) for q, leases in self._by_queue(jobs).items()]
        self._forget(jobs)
        try:
            self.store.run_many(calls)
        except REDIS_ERRORS as exc:
            log.warning("could not expire %d lease(s) now (%s); they expire on their own", len(jobs), exc)
        self._next_maintenance = 0.0

    def _forget(self, jobs: list[T.LeasedJob]) -> None:
        with self._held_lock:
            for job in jobs:
                self._held.pop((job.queue, job.id), None)

    def _release_held(self) -> None:
        with self._held_lock:
            finished = {(q, o.id) for q, outs in self._outcomes.items() for o in outs}
            held = [(q, i, t) for (q, i), t in self._held.items() if (q, i) not in finished]
        if held:
            self._release([T.LeasedJob(q, i, t, "", b"", b"") for q, i, t in held])

    def _back_off(self, exc: BaseException) -> None:
        self._backoff_s = min(10.0, max(0.5, self._backoff_s * 2))
        if isinstance(exc, OutOfMemoryError):  # say what it means: nothing is lost, nothing new starts
            log.warning("Redis is at maxmemory (noeviction): no new job is leased and outcomes wait in this "
                        "worker until memory is freed; retrying in %.1f s (%s)", self._backoff_s, exc)
        else:
            log.warning("Redis call failed (%s: %s); retrying in %.1f s", type(exc).__name__, exc, self._backoff_s)
        self._stop.wait(self._backoff_s)
        self._mark_all_ready()

    # --- heartbeat and registration -----------------------------------------------------------

    def _heartbeat_loop(self) -> None:
        interval_s = self.lease_ms / 3000
        next_registration = time.monotonic() + REGISTRATION_TTL_S / 4
        while not self._stop.wait(interval_s):
            try:
                self._extend_leases()
                if time.monotonic() >= next_registration:
                    self._register()
                    next_registration = time.monotonic() + REGISTRATION_TTL_S / 4
            except REDIS_ERRORS as exc:
                log.warning("heartbeat failed: %s", exc)

    def _extend_leases(self) -> None:
        with self._held_lock:
            by_queue: dict[str, list[tuple[str, int]]] = {}
            for (queue, job_id), token in self._held.items():
                by_queue.setdefault(queue, []).append((job_id, token))
        if not by_queue:
            return
        calls = [T.extend_call(self.queue_keys[q], leases, self.lease_ms) for q, leases in by_queue.items()]
        results = self.store.run_many(calls)
        stops: list[tuple[str, str]] = []
        with self._held_lock:
            for (queue, leases), codes in zip(by_queue.items(), results):
                for (job_id, token), code in zip(leases, codes):
                    # A job completed while the heartbeat was in flight is no longer held: not a loss.
                    if not int(code) and self._held.get((queue, job_id)) == token:
                        log.warning("%s: lease of job %s was lost (canceled, deleted or taken over)",
                                    queue, job_id)
                    elif int(code) == 2 and (queue, job_id) not in self._stop_requests:
                        stops.append((queue, job_id))
        for queue, job_id in stops:  # a stop whose message this worker missed (a reconnect)
            fields = self.store.read_job(self.queue_keys[queue], job_id) or {}
            self._on_stop_request(queue, job_id, fields.get("sp", b"stop requested").decode("utf-8", "replace"))

    def _register(self) -> None:
        with self._held_lock:
            current = next(iter(self._held), None)
        registration.register(self.connection, self.name, self.queue_names, {
            "processed": self.stats.processed,
            "failed": self.stats.failed,
            "current": f"{current[0]}/{current[1]}" if current else "",
            "pool": self._pools_text(),
        })


__all__ = ["Lane", "Worker", "WorkerInfo", "WorkerStats", "list_workers"]
