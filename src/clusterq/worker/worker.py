"""The worker (supervisor): leases jobs from its queues in priority order, hands them to an execution
pool, and records their outcomes.

One loop, named steps: :meth:`Worker._maintain` (recovery, promotion, outbox replay, Sentinel follow:
:mod:`clusterq.worker.maintenance`), :meth:`Worker._absorb` (take what the pools finished into the
outcome buffer, :mod:`clusterq.worker.outcomes`), :meth:`Worker._fetch` (lease a batch for each free pool
slot, the buffered outcomes riding in the same round trip: :mod:`clusterq.worker.fetch`), and
:meth:`Worker._wait` (sleep until a job finishes, a queue is signalled, a time limit falls due or
maintenance is due: :mod:`clusterq.worker.wakeup`). A heartbeat thread extends the leases of the jobs the
worker holds (:mod:`clusterq.worker.leases`) and keeps its registration alive.

Batch size adapts to job duration: a lease call asks for about ``batch_target_s`` of work per free
slot, so no-op jobs are leased a hundred at a time while slow jobs are leased one by one and never
wait in one worker's buffer while another worker is idle.

Lanes: a worker can serve some queues with a dedicated pool (``lanes=[(["hot"], ProcessPool(8))]``),
so a flood of one job type cannot starve the others. Queue priority applies within a lane.

A queue whose calls fail while others' succeed (its Cluster node is down, one of its keys holds the wrong
type) is set aside with a loud error and retried on its own back-off; the other queues go on.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Sequence
from typing import Any

from redis.exceptions import (
    BusyLoadingError,
    NoPermissionError,
    OutOfMemoryError,
    ReadOnlyError,
    ResponseError,
)

from clusterq.api.buffer import Buffer
from clusterq.api.context import JobConnection
from clusterq.api.execution import DEFAULT_JOB_TIMEOUT_S, ExceptionHandler, Executor, FunctionResolver
from clusterq.api.hooks import HookSet
from clusterq.api.job import DEFAULT_FAILURE_TTL_S
from clusterq.api.partitioned_queue import PartitionedQueue
from clusterq.api.partitions import PartitionedCore
from clusterq.api.queue import Queue
from clusterq.connection.sync import REDIS_ERRORS, ConnectionLike, connect, describe
from clusterq.exceptions import ConnectionFailed, StopRequested
from clusterq.scheduling.buffers import BufferFlusher
from clusterq.scheduling.periodic import CronScheduler, Periodic
from clusterq.serializers import Serializer, resolve_serializer
from clusterq.signing import Signer, SigningKey, make_signer
from clusterq.state import keys as K
from clusterq.state import store as T
from clusterq.state.outbox import Forwarder
from clusterq.worker import lifecycle
from clusterq.worker.fetch import Fetched, Fetcher, SetAside
from clusterq.worker.lanes import Lane, WorkerStats, expand_partitions
from clusterq.worker.leases import Leases
from clusterq.worker.maintenance import PROMOTE_BATCH, SCHEDULED_POLL_S, Maintenance
from clusterq.worker.outcomes import Outcomes
from clusterq.worker.partition_refresh import PartitionRefresh
from clusterq.worker.partition_sweep import PartitionSweep
from clusterq.worker.pools.factory import Finished, Notifier, Pool, make_pool
from clusterq.worker.registration import WorkerInfo, list_workers
from clusterq.worker.settings import DEFAULT_LEASE_S, DEFAULT_MAX_ATTEMPTS, ROUND_JOBS, WorkerSettings
from clusterq.worker.wakeup import Waker

log = logging.getLogger(__name__)


def _handlers(handlers: ExceptionHandler | Sequence[ExceptionHandler] | None) -> list[ExceptionHandler]:
    if handlers is None:
        return []
    listed: list[ExceptionHandler] = list(handlers) if isinstance(handlers, (list, tuple)) else [handlers]  # type: ignore[list-item]
    refused = [h for h in listed if not callable(h)]
    if refused:
        raise TypeError(f"exception_handlers must be callables handler(job, exc_type, exc_value, traceback), "
                        f"got {refused[0]!r}")
    return listed


def _queue_names(queues: Sequence[str | Queue | PartitionedCore[Any, Any]] | str | Queue | PartitionedCore[Any, Any]
                 ) -> list[str]:
    if isinstance(queues, (str, Queue, PartitionedCore)):
        queues = [queues]
    return [q.name if isinstance(q, (Queue, PartitionedCore)) else K.validate_queue_name(q) for q in queues]


def _queue_specific(exc: BaseException) -> bool:
    """An error about one queue's keys (WRONGTYPE, a script error), not about the server as a whole (out of
    reach, out of memory, read-only, loading): that queue is set aside, the others need no back-off."""
    return isinstance(exc, ResponseError) and not isinstance(exc, (OutOfMemoryError, ReadOnlyError,
                                                                    BusyLoadingError, NoPermissionError))


class Worker(lifecycle.Lifecycle):
    """Serves ``queues`` (tried in the given order) from one Redis deployment.

    ``pool`` is ``"process"`` (default: ``concurrency`` long-lived child processes), ``"fork"`` (a
    child per job), ``"thread"``, ``"asyncio"``, ``"solo"`` (jobs in this thread) or a :class:`Pool`.
    ``lanes`` adds dedicated pools for some queues: ``[(["hot"], "process", 8), (["io"], ThreadPool(32))]``.

    ``max_memory_mb`` recycles a pool child that has grown past it (between batches); ``memory_limit_mb``
    is a hard cap on a child's growth: an allocation past it fails in the job with ``MemoryError``.

    ``lease_s`` is how long a leased job stays reserved without a heartbeat: a dead worker's jobs come
    back about ``lease_s`` after it died (recovery falls due when the earliest lease ends);
    ``max_attempts`` bounds how often a job whose worker died is retried before it fails as abandoned.
    These timings and limits can also be given together as ``settings=WorkerSettings(...)``.

    ``signing_key`` (bytes or str, or several: any of them verifies) makes the worker run only jobs
    signed with it (:mod:`clusterq.signing`); others fail with a ``SignatureError`` reason without
    their function being imported or their arguments decoded.

    ``hooks`` (:mod:`clusterq.api.hooks`) run around every job this worker runs, in the process that runs
    it, and at worker start and stop, pool child start and exit, and abandonment; after the process-wide
    ones (``clusterq.hooks.register``, the ``clusterq.hooks`` entry points).
    """

    def __init__(
        self,
        queues: Sequence[str | Queue | PartitionedCore[Any, Any]] | str | Queue | PartitionedCore[Any, Any],
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
        round_jobs: int = ROUND_JOBS,
        idle_poll_s: float = 30.0,
        maintenance_interval_s: float = 8.0,
        trim_interval_s: float = 300.0,
        install_signal_handlers: bool = True,
        periodic: Sequence[Periodic] = (),
        buffers: Sequence[Buffer] = (),
        settings: WorkerSettings | None = None,
        exception_handlers: ExceptionHandler | Sequence[ExceptionHandler] | None = None,
        disable_default_exception_handler: bool = False,
        hooks: Sequence[Any] = (),
    ) -> None:
        self.settings = s = WorkerSettings.merge(settings, {
            "lease_s": lease_s, "max_attempts": max_attempts, "default_timeout_s": default_timeout_s,
            "max_batch": max_batch, "batch_target_s": batch_target_s, "round_jobs": round_jobs,
            "idle_poll_s": idle_poll_s,
            "maintenance_interval_s": maintenance_interval_s, "trim_interval_s": trim_interval_s,
            "install_signal_handlers": install_signal_handlers})
        first = queues[0] if isinstance(queues, (list, tuple)) and queues else queues
        self.connection = (first.connection if isinstance(first, (Queue, PartitionedQueue)) and connection is None
                           else connect(connection))
        self.store = T.Store(self.connection, fail_fast=True)  # a dead node's queue is set aside, not waited for
        pool_options = {"max_jobs_per_child": max_jobs_per_child, "max_memory_mb": max_memory_mb,
                        "memory_limit_mb": memory_limit_mb}
        self.lanes = [Lane(_queue_names(queues), self._pool(pool, concurrency, pool_options), s.batch_target_s)]
        for spec in lanes:
            lane_queues, lane_pool, *rest = spec
            self.lanes.append(Lane(_queue_names(lane_queues),
                                   self._pool(lane_pool, rest[0] if rest else None, pool_options), s.batch_target_s))
        for given in (queues if isinstance(queues, (list, tuple)) else [queues]):
            if isinstance(given, PartitionedQueue):
                given.declare()  # given the object, the worker knows the count: store it (or check it)
        given_names = [n for lane in self.lanes for n in lane.queues]
        served = expand_partitions(self.connection, self.lanes)  # a partitioned queue's name: all its partitions
        names = [n for lane in self.lanes for n in lane.queues]
        if not names:
            raise ValueError("a worker needs at least one queue")
        if len(set(names)) != len(names):
            raise ValueError(f"queue listed twice in {names}")
        self.queue_names = names
        self.queue_keys = {n: K.QueueKeys(n) for n in names}
        self.ticked_at = time.monotonic()  # when the supervisor loop last went round
        self.name = name or f"{socket.gethostname()}.{os.getpid()}.{uuid.uuid4().hex[:6]}"
        self._instance = uuid.uuid4().hex  # holds the name while this worker runs (a second one is refused)
        self.serializer = resolve_serializer(serializer)
        # Jobs reach Redis (get_current_job) through the worker's client, or a client of their own in a
        # forked child: from the URL when the worker was given one.
        given_queue = isinstance(first, (Queue, PartitionedQueue))
        job_connection = JobConnection(connection if connection is not None or not given_queue
                                       else self.connection, self.connection)
        self.executor = Executor(FunctionResolver(allow), self.serializer, s.default_timeout_s, self.connection,
                                 job_connection=job_connection,
                                 signer=make_signer(signing_key), hooks=HookSet(hooks),
                                 exception_handlers=_handlers(exception_handlers))
        self.hooks = self.executor.hooks
        # RQ's default exception handler reports the failure; here it is the worker's log line for it (the
        # job is kept in the failed registry either way: clusterq never drops a failed job).
        self.outcomes_logged = not disable_default_exception_handler
        self.lease_ms = s.lease_ms
        self.max_attempts = s.max_attempts
        self.max_batch = s.max_batch
        self.batch_target_s = s.batch_target_s
        self.idle_poll_s = s.idle_poll_s
        self.maintenance_interval_s = s.maintenance_interval_s
        self.trim_interval_s = s.trim_interval_s
        self.install_signal_handlers = s.install_signal_handlers
        self.failure_keep_ms = DEFAULT_FAILURE_TTL_S * 1000
        self.stats = WorkerStats()
        self.forwarder = Forwarder(self.store, self.failure_keep_ms)

        # The named parts.
        self.leases = Leases(self.store, self.queue_keys, self.lease_ms)
        self.outcomes = Outcomes(self.queue_keys)
        self.set_aside = SetAside()
        self.outcomes.logged = self.outcomes_logged
        self.fetcher = Fetcher(self.store, self.queue_keys, self.leases, self.outcomes, self.set_aside,
                               self.lanes, worker_name=self.name, failure_keep_ms=self.failure_keep_ms,
                               round_jobs=s.round_jobs, while_waiting=self._collect_children)
        self.maintenance = Maintenance(self.connection, self.store, self.forwarder, self.queue_keys,
                                       max_attempts=s.max_attempts, failure_keep_ms=self.failure_keep_ms,
                                       interval_s=s.maintenance_interval_s, trim_interval_s=s.trim_interval_s,
                                       on_abandoned=self.hooks.abandoned)
        self.maintenance.sweep = PartitionSweep(self.lanes)  # partitions: maintained when they may need it
        self.partition_refresh = PartitionRefresh(self, given_names)  # follows PartitionedQueue.resize
        self.partition_refresh.remember(served)

        self._stop = threading.Event()  # finish the running jobs, then leave
        self._stop_now = False  # a second signal: leave at once, hand the running jobs back
        self._notifier = Notifier()
        self._stop_requests: dict[tuple[str, str], str] = {}  # (queue, id) -> reason, from any thread
        for lane in self.lanes:
            lane.ready = set(lane.queues)
        self._waker: Waker | None = None
        self._heartbeat: threading.Thread | None = None
        self._next_poll = 0.0
        self._backoff_s = 0.0
        self._previous_handlers: dict[int, Any] = {}
        self._suspended = False  # the global flag (clusterq.suspend), read on a signal and at each poll
        # Periodic jobs (``--with-cron``): a scheduler thread beside the loop, started after the pools fork.
        # With a signing key the worker signs the periodic jobs it enqueues, so that it (and its peers) run them.
        self._cron = CronScheduler(self.connection, periodic, install_signal_handlers=False,
                                   signing_key=self.executor.signer) if periodic else None
        # Counter buffers (``--with-buffers``): a flusher thread beside the loop, signing with the worker's key.
        self._flusher = BufferFlusher(self.connection, buffers, self.executor.signer) if buffers else None

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

    def work(self, burst: bool = False, max_jobs: int | None = None, *, with_scheduler: bool = True,
             logging_level: str | int | None = None) -> int:
        """Process jobs until stopped (SIGTERM, SIGINT, SIGHUP), or with ``burst`` until every queue is empty.

        Returns the number of jobs processed. A first SIGTERM, SIGINT or SIGHUP lets running jobs finish
        and exits; a second one stops them and hands them back to their queues. SIGUSR1 replaces the
        process pools' children (each once its batch is done): jobs then run freshly deployed code.

        ``with_scheduler`` and ``logging_level`` are RQ's: every clusterq worker promotes scheduled jobs
        (so ``with_scheduler`` changes nothing, ``False`` included), and logging is the application's.
        """
        del with_scheduler, logging_level  # accepted for RQ code; see the docstring
        self._setup()
        cron_thread = None
        if self._cron is not None:
            cron_thread = threading.Thread(target=self._cron.run, name="clusterq-cron", daemon=True)
            cron_thread.start()
        flusher_thread = None
        if self._flusher is not None:
            flusher_thread = threading.Thread(target=self._flusher.run, name="clusterq-buffers", daemon=True)
            flusher_thread.start()
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
            if flusher_thread is not None:
                self._flusher.stop()  # type: ignore[union-attr]
                flusher_thread.join(timeout=10)
            self._teardown()
        log.info("worker %s stopped: %d processed (%d finished, %d failed)", self.name,
                 self.stats.processed, self.stats.finished, self.stats.failed)
        return self.stats.processed

    def request_stop(self) -> None:
        """Let running jobs finish, then leave (like a first SIGTERM)."""
        self._stop.set()
        if self._cron is not None:
            self._cron.stop()
        if self._flusher is not None:
            self._flusher.stop()
        for lane in self.lanes:
            lane.pool.draining = True
        self._notifier.notify()

    # --- the loop -----------------------------------------------------------------------------

    @property
    def stopping(self) -> bool:
        """True once a stop was asked for (SIGTERM, :meth:`request_stop`): the worker leases nothing more
        and drains (a readiness probe turns not-ready on it)."""
        return self._stop.is_set()

    def _loop(self, burst: bool, max_jobs: int | None) -> None:
        rechecked = False
        while not self._stop.is_set() and not self._stop_now:
            self.ticked_at = time.monotonic()  # liveness: the loop goes round (clusterq.observability.health)
            self._maintain()
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

    def _maintain(self) -> None:
        now = time.monotonic()
        self.partition_refresh.maybe_refresh(now)
        if not self.maintenance.due(now):
            return
        try:
            done = self.maintenance.run(now, skip=self.set_aside.waiting())
        except NoPermissionError as exc:
            raise self._refused(exc) from None
        if done.primary_moved:
            self._start_waker()  # its subscription is on the old primary
        for name in done.ready:
            self._lane_of(name).ready.add(name)
        for name, error in done.failed.items():
            self.set_aside.fail(name, "maintenance (recovering expired leases)", error)
            self._lane_of(name).ready.discard(name)

    _maybe_maintain = _maintain  # the name tests and older callers use

    def _fetch(self, budget: int | None) -> int | None:
        """Lease for every lane with a free slot, trying its queues in order; submit to its pool.

        Buffered outcomes ride along with the first lease call. Returns how many jobs were leased, or
        None if Redis could not be reached at all (after backing off).
        """
        self._take_signals()  # queues signalled while busy: a higher one must be tried again now
        for lane in self.lanes:
            # Short jobs: a slot holds two batches, the next one ready while this one runs (the round trip
            # to Redis overlaps the work). Long ones (a batch of one) are not held back in this worker.
            lane.pool.depth = 2 if lane.pool.batches and self._batch_size(lane) > 1 else 1
        due = not any(lane.pool.busy() for lane in self.lanes)  # nothing runs: outcomes go now
        done = self.fetcher.fetch([] if self._suspended else self.lanes, budget, self._batch_size, self._run,
                                  due=due)
        return self._after(done, done.leased)

    def _run(self, lane: Lane, jobs: list[T.LeasedJob]) -> None:
        lane.pool.submit(jobs)  # the solo pool runs them right here
        self._absorb(lane.pool.collect())

    def _after(self, done: Fetched, leased: int) -> int | None:
        """Count, forward and back off after a round of calls."""
        self.stats.lost += done.lost
        refused = next((e for e in done.errors if isinstance(e, NoPermissionError)), None)
        if refused is not None:
            raise self._refused(refused)
        self._forward()
        if done.errors and not done.succeeded and not all(map(_queue_specific, done.errors)):
            self._back_off(done.errors[0])  # nothing went through: Redis is out of reach (or full)
            return leased or None
        self._backoff_s = 0.0
        return leased

    def _collect_children(self) -> None:
        """While a lease round trip is in flight: take the outcomes the process pools' children sent (they
        ride with the next round trip), so this work overlaps the server's instead of following it."""
        for lane in self.lanes:
            if lane.pool.kind == "process":
                self._absorb(lane.pool.collect())

    def _batch_size(self, lane: Lane) -> int:
        return max(1, min(self.max_batch, int(self.batch_target_s / max(lane.avg_job_s, 1e-6))))

    def _absorb(self, finished: list[Finished]) -> None:
        """Take what pools report: record outcomes, hand back unstarted jobs, expire crashed leases."""
        if not finished:
            return
        handback: list[T.LeasedJob] = []
        crashed: list[T.LeasedJob] = []
        ran: list[tuple[str, str]] = []
        debug = log.isEnabledFor(logging.DEBUG)
        for item in finished:
            if item.outcome is not None:
                ran.append((item.job.queue, item.job.id))
                self._record(item.job, item.outcome, debug)
            elif item.crashed and (item.handback or self._stop.is_set()):
                # Its process was stopped from outside, or died while the worker stops (a signal to the
                # whole process group): nobody else would hand it back before its lease expires.
                handback.append(item.job)
                log.warning("%s: job %s (%s): %s; handed back to its queue now (attempt not counted)",
                            item.job.queue, item.job.id, item.job.func, item.crashed)
            elif item.handback:
                handback.append(item.job)
            else:
                crashed.append(item.job)
                self.stats.crashed += 1
                log.error("%s: job %s (%s): %s; it goes back to its queue by the lease rules (attempt counted)",
                          item.job.queue, item.job.id, item.job.func, item.crashed)
        if ran:  # one hold of the leases' lock for all of them (a draining worker records ~100 per turn)
            self.leases.ran_many(ran)
        if handback:
            self.leases.release(handback)
        if crashed:
            self.leases.expire_now(crashed)
            self.maintenance.next_due = 0.0

    def _record(self, leased: T.LeasedJob, outcome: T.Outcome, debug: bool = True) -> None:
        """Count and buffer one outcome (:meth:`_absorb` marks its lease as ran)."""
        self.stats.processed += 1
        lane = self._lane_of(leased.queue)
        lane.avg_job_s = 0.8 * lane.avg_job_s + 0.2 * outcome.elapsed_s
        if outcome.status == "finished":
            self.stats.finished += 1
            if debug:
                log.debug("%s: job %s (%s) finished", leased.queue, leased.id, leased.func)
        elif outcome.status == "stopped":
            # Recorded by complete.lua as status "stopped" in the failed registry, never retried; the
            # on_stopped callback (if any) hangs off this outcome.
            self.stats.stopped += 1
            log.info("%s: job %s (%s) stopped: %s", leased.queue, leased.id, leased.func,
                     outcome.data.decode("utf-8", "replace"))
        else:
            self.stats.failed += 1
            if self.outcomes_logged and not outcome.plan:  # with a plan, said once its recording tells
                log.warning("%s: job %s (%s) failed: %s", leased.queue, leased.id, leased.func,
                            outcome.data.decode("utf-8", "replace").splitlines()[0] if outcome.data else "")
        self.outcomes.add(leased.queue, outcome)

    def _flush_outcomes(self, everything: bool = False) -> Fetched:
        """Send the buffered outcomes now, in a round trip of their own (``everything``: those of set-aside
        queues too)."""
        done = self.fetcher.flush(everything)
        self.stats.lost += done.lost
        self._forward()
        return done

    def _flush_outcomes_safely(self) -> None:
        done = self._flush_outcomes()
        if done.errors and not done.succeeded and not all(map(_queue_specific, done.errors)):
            self._back_off(done.errors[0])

    def _forward(self) -> None:
        """Tell the dependents of jobs that just ended (children and groups, in any queue). Whatever is
        not forwarded now stays in the outbox, and maintenance replays it."""
        if self.fetcher.to_forward:
            entries, self.fetcher.to_forward = self.fetcher.to_forward, []
            try:
                self.forwarder.forward(entries)
            except REDIS_ERRORS as exc:
                log.warning("could not tell the dependents of %d job(s) now (%s); maintenance will", len(entries), exc)

    def _refused(self, exc: BaseException) -> ConnectionFailed:
        """The Redis user lacks a permission (an ACL without @scripting, or without clusterq's keys): waiting
        fixes nothing, so the worker stops (the CLI exits 3) with a message naming what is missing."""
        return ConnectionFailed(
            f"worker {self.name} cannot work on {describe(self.connection)}: the Redis user lacks a permission "
            f"clusterq needs ({exc}); a worker's user needs the scripting commands (EVALSHA, EVAL: @scripting), "
            "keys cq:* and channels cq:* (ACL rules: ~cq:* &cq:* +@all -@dangerous +info)")

    def _back_off(self, exc: BaseException) -> None:
        self._backoff_s = min(10.0, max(0.5, self._backoff_s * 2))
        if isinstance(exc, OutOfMemoryError):  # say what it means: nothing is lost, nothing new starts
            log.warning("Redis is at maxmemory (noeviction): no new job is leased and outcomes wait in this "
                        "worker until memory is freed; retrying in %.1f s (%s)", self._backoff_s, exc)
        else:
            log.warning("Redis call failed (%s: %s); retrying in %.1f s", type(exc).__name__, exc, self._backoff_s)
        self._stop.wait(self._backoff_s)
        self._mark_all_ready()

    def _lane_of(self, queue: str) -> Lane:
        lanes = self.lanes
        if len(lanes) == 1 and queue in lanes[0].queues:  # asked once per job: no generator for one lane
            return lanes[0]
        return next(lane for lane in self.lanes if queue in lane.queues)

    def _pools_text(self) -> str:
        return "; ".join(f"{lane.pool.kind}:{lane.pool.concurrency} for {','.join(lane.queues)}"
                         for lane in self.lanes)


__all__ = ["PROMOTE_BATCH", "SCHEDULED_POLL_S", "Lane", "Worker", "WorkerInfo", "WorkerSettings", "WorkerStats",
           "list_workers"]
