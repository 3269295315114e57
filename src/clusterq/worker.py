"""The worker: leases jobs from its queues in priority order, runs them, and records their outcomes.

One loop, four named steps: ``_fetch`` (lease a batch, piggybacking the outcomes of the previous batch in
the same round trip), ``_run_batch`` (execute), ``_idle_wait`` (sleep until a queue is signalled) and
``_maintain`` (recover expired leases, trim registries; bounded batches). A heartbeat thread extends the
leases of the jobs the worker holds and keeps its registration alive.

Batch size adapts to job duration: it aims for about ``batch_target_s`` of work per lease call, so no-op
jobs are leased a hundred at a time while slow jobs are leased one by one and never wait in one worker's
buffer while another worker is idle.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from . import keys as K
from . import store as T
from .connection import REDIS_ERRORS, ConnectionLike, connect, describe
from .exceptions import StopRequested
from .execution import DEFAULT_JOB_TIMEOUT_S, Executor, FunctionResolver
from .job import DEFAULT_FAILURE_TTL_S
from .queue import Queue
from .serializers import Serializer, resolve_serializer
from .wakeup import Waker

log = logging.getLogger(__name__)

DEFAULT_LEASE_S = 15.0
DEFAULT_MAX_ATTEMPTS = 3
REGISTRATION_TTL_S = 60.0


@dataclass
class WorkerStats:
    processed: int = 0
    finished: int = 0
    failed: int = 0
    lost: int = 0  # outcomes refused because the lease was lost


class Worker:
    """Serves ``queues`` (tried in the given order) from one Redis deployment.

    Parameters carry their units: ``lease_s`` is how long a leased job stays reserved without a
    heartbeat (a dead worker's jobs come back after at most about ``lease_s + maintenance_interval_s``);
    ``max_attempts`` bounds how often a job whose worker died is retried before it fails as abandoned.
    """

    def __init__(
        self,
        queues: Sequence[str | Queue] | str | Queue,
        connection: ConnectionLike = None,
        *,
        name: str | None = None,
        serializer: Serializer | str | None = None,
        allow: Sequence[str] | None = None,
        lease_s: float = DEFAULT_LEASE_S,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        default_timeout_s: float = DEFAULT_JOB_TIMEOUT_S,
        max_batch: int = 100,
        batch_target_s: float = 0.05,
        idle_poll_s: float = 30.0,
        maintenance_interval_s: float = 10.0,
        trim_interval_s: float = 300.0,
        install_signal_handlers: bool = True,
    ) -> None:
        if isinstance(queues, (str, Queue)):
            queues = [queues]
        names = [q.name if isinstance(q, Queue) else K.validate_queue_name(q) for q in queues]
        if not names:
            raise ValueError("a worker needs at least one queue")
        if len(set(names)) != len(names):
            raise ValueError(f"queue listed twice in {names}")
        first = queues[0]
        self.connection = first.connection if isinstance(first, Queue) and connection is None else connect(connection)
        self.store = T.Store(self.connection)
        self.queue_names = names
        self.queue_keys = {n: K.QueueKeys(n) for n in names}
        self.name = name or f"{socket.gethostname()}.{os.getpid()}.{uuid.uuid4().hex[:6]}"
        self.serializer = resolve_serializer(serializer)
        self.executor = Executor(FunctionResolver(allow), self.serializer, default_timeout_s)
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

        self._stop = threading.Event()  # finish the current job, then leave
        self._stop_now = False  # a second signal: leave at once, hand the job back
        self._running: T.LeasedJob | None = None
        self._held: dict[tuple[str, str], int] = {}  # (queue, id) -> token, for heartbeats and release
        self._held_lock = threading.Lock()
        self._outcomes: dict[str, list[T.Outcome]] = {}
        self._outcomes_since = 0.0
        self._maybe_ready: set[str] = set(names)
        self._avg_job_s = batch_target_s  # start with batches of one
        self._waker: Waker | None = None
        self._heartbeat: threading.Thread | None = None
        self._next_maintenance = 0.0
        self._next_trim = time.monotonic() + trim_interval_s
        self._next_poll = 0.0
        self._pending_flush: dict[str, list[T.Outcome]] = {}
        self._backoff_s = 0.0

    def __repr__(self) -> str:
        return f"Worker({self.name!r}, queues={self.queue_names})"

    # --- public -------------------------------------------------------------------------------

    def work(self, burst: bool = False, max_jobs: int | None = None) -> int:
        """Process jobs until stopped (SIGTERM/SIGINT), or with ``burst`` until every queue is empty.

        Returns the number of jobs processed. A first SIGTERM or SIGINT finishes the running job and
        exits; a second one interrupts the job and hands it back to its queue.
        """
        self._setup()
        log.info("worker %s serving %s on %s", self.name, ", ".join(self.queue_names), describe(self.connection))
        try:
            rechecked = False
            while not self._stop.is_set():
                if max_jobs is not None and self.stats.processed >= max_jobs:
                    break
                self._maybe_maintain()
                room = self._batch_size() if max_jobs is None else min(self._batch_size(),
                                                                       max_jobs - self.stats.processed)
                jobs = self._fetch(room)
                if jobs is None:  # Redis unreachable: already backed off
                    continue
                if jobs:
                    rechecked = False
                    self._run_batch(jobs)
                elif burst:
                    if rechecked:
                        break
                    # Queues found empty earlier are skipped until signalled: look at each once more
                    # before leaving, so a job enqueued during the burst is not left behind.
                    rechecked = True
                    self._maybe_ready.update(self.queue_names)
                else:
                    self._idle_wait()
        finally:
            self._teardown()
        log.info("worker %s stopped: %d processed (%d finished, %d failed)", self.name,
                 self.stats.processed, self.stats.finished, self.stats.failed)
        return self.stats.processed

    def request_stop(self) -> None:
        """Finish the running job, hand back any prefetched ones, and leave (like a first SIGTERM)."""
        self._stop.set()
        if self._waker is not None:
            self._waker.interrupt()

    # --- setup and teardown -------------------------------------------------------------------

    def _setup(self) -> None:
        self._register()
        self._start_waker()
        self._heartbeat = threading.Thread(target=self._heartbeat_loop, name="clusterq-heartbeat", daemon=True)
        self._heartbeat.start()
        if self.install_signal_handlers and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._on_signal)
            signal.signal(signal.SIGINT, self._on_signal)
        if threading.current_thread() is not threading.main_thread():
            log.warning("worker %s runs outside the main thread: job time limits (SIGALRM) are not enforced",
                        self.name)

    def _teardown(self) -> None:
        self._stop.set()
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
            self._unregister()
        except REDIS_ERRORS:
            pass
        if self.install_signal_handlers and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.default_int_handler)

    def _on_signal(self, signum: int, frame: Any) -> None:
        if not self._stop.is_set():
            log.info("%s received: finishing the current job, then stopping (send again to stop now)",
                     signal.Signals(signum).name)
            self.request_stop()
            return
        self._stop_now = True
        if self._running is not None:
            raise StopRequested(f"stopped by {signal.Signals(signum).name}")

    def _start_waker(self) -> None:
        if self._waker is not None:
            self._waker.close()
        self._waker = Waker(self.connection, self.queue_names)
        try:
            self._waker.start()
        except REDIS_ERRORS as exc:
            log.warning("cannot subscribe to wake-up channels (%s); polling every second instead", exc)
            self._waker.broken = True
        self._maybe_ready.update(self.queue_names)  # anything may have arrived while unsubscribed

    # --- the loop's steps ---------------------------------------------------------------------

    def _batch_size(self) -> int:
        return max(1, min(self.max_batch, int(self.batch_target_s / max(self._avg_job_s, 1e-6))))

    def _fetch(self, room: int) -> list[T.LeasedJob] | None:
        """Lease up to ``room`` jobs, trying queues in order; flush buffered outcomes in the same trip.

        Returns None if Redis could not be reached (after backing off).
        """
        jobs: list[T.LeasedJob] = []
        if self._waker is not None:  # queues signalled while busy: a higher one must be tried again now
            self._maybe_ready.update(self._waker.take())
        flush = self._take_outcome_calls()
        try:
            for name in self.queue_names:
                if name not in self._maybe_ready or len(jobs) >= room:
                    continue
                wanted = room - len(jobs)
                call = T.lease_call(self.queue_keys[name], wanted, self.lease_ms, self.name, self.failure_keep_ms)
                results = self.store.run_many([*flush, call])
                if flush:
                    self._check_outcome_results(flush, results[:-1])
                    flush = []
                remaining, leased = T.parse_lease(name, results[-1])
                if len(leased) < wanted and remaining == 0:
                    self._maybe_ready.discard(name)
                self._hold(leased)
                jobs.extend(leased)
            if flush:
                self._check_outcome_results(flush, self.store.run_many(flush))
        except REDIS_ERRORS as exc:
            self._restore_outcome_calls(flush)
            self._back_off(exc)
            return jobs or None
        self._backoff_s = 0.0
        return jobs

    def _run_batch(self, jobs: list[T.LeasedJob]) -> None:
        for index, leased in enumerate(jobs):
            if self._stop.is_set():
                self._release(jobs[index:])
                return
            if self._outcomes and time.monotonic() - self._outcomes_since > self.batch_target_s:
                self._flush_outcomes_safely()
            self._running = leased
            started = time.perf_counter()
            try:
                outcome = self.executor.execute(leased)
            except StopRequested:
                self._running = None
                log.warning("job %s interrupted by stop request; handing it back to %r", leased.id, leased.queue)
                self._release(jobs[index:])
                return
            finally:
                self._running = None
            elapsed = time.perf_counter() - started
            self._avg_job_s = 0.8 * self._avg_job_s + 0.2 * elapsed
            self._record(leased, outcome)

    def _idle_wait(self) -> None:
        """Every queue is empty: flush, then sleep until one is signalled or the fallback poll is due."""
        self._flush_outcomes_safely()
        waker = self._waker
        if waker is None or waker.broken:
            self._start_waker()
            waker = self._waker
            assert waker is not None
            if waker.broken:
                time.sleep(1.0)
                self._maybe_ready.update(self.queue_names)
                return
        wake_at = min(self._next_poll, self._next_maintenance)
        self._maybe_ready.update(waker.wait(max(0.0, wake_at - time.monotonic())))
        if time.monotonic() >= self._next_poll:
            # Fallback poll: a wake-up can be lost across a reconnect or failover; this bounds the delay.
            self._next_poll = time.monotonic() + self.idle_poll_s
            self._maybe_ready.update(self.queue_names)

    def _maybe_maintain(self) -> None:
        now = time.monotonic()
        if now < self._next_maintenance:
            return
        self._next_maintenance = now + self.maintenance_interval_s
        calls = [T.requeue_expired_call(k, 100, self.max_attempts, self.failure_keep_ms)
                 for k in self.queue_keys.values()]
        trim = now >= self._next_trim
        if trim:
            self._next_trim = now + self.trim_interval_s
            for k in self.queue_keys.values():
                calls.extend(T.trim_call(key, 1000) for key in (k.finished, k.failed, k.canceled))
        try:
            results = self.store.run_many(calls, raise_on_error=False)
        except REDIS_ERRORS as exc:
            log.warning("maintenance skipped: %s", exc)
            return
        for name, result in zip(self.queue_names, results):
            if isinstance(result, Exception):
                log.warning("maintenance of queue %r failed: %s", name, result)
                continue
            requeued, failed = int(result[0]), int(result[1])
            if requeued:
                self._maybe_ready.add(name)
                log.warning("queue %r: %d job(s) whose lease expired were requeued", name, requeued)
            if failed:
                log.warning("queue %r: %d job(s) failed as abandoned (attempt limit reached)", name, failed)

    # --- leases and outcomes ------------------------------------------------------------------

    def _hold(self, leased: list[T.LeasedJob]) -> None:
        with self._held_lock:
            for job in leased:
                self._held[(job.queue, job.id)] = job.token

    def _record(self, leased: T.LeasedJob, outcome: T.Outcome) -> None:
        self.stats.processed += 1
        if outcome.status == "finished":
            self.stats.finished += 1
            log.debug("%s: job %s (%s) finished", leased.queue, leased.id, leased.func)
        else:
            self.stats.failed += 1
            log.warning("%s: job %s (%s) failed: %s", leased.queue, leased.id, leased.func,
                        outcome.data.decode("utf-8", "replace").splitlines()[0] if outcome.data else "")
        if not self._outcomes:
            self._outcomes_since = time.monotonic()
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

    def _check_outcome_results(self, calls: list[T.Call], results: list[Any]) -> None:
        for (queue, outs), codes in zip(self._pending_flush.items(), results):
            with self._held_lock:
                for outcome, code in zip(outs, codes):
                    self._held.pop((queue, outcome.id), None)
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
            self._check_outcome_results(calls, results)

    def _flush_outcomes_safely(self) -> None:
        try:
            self._flush_outcomes()
        except REDIS_ERRORS as exc:
            self._back_off(exc)

    def _release(self, jobs: list[T.LeasedJob]) -> None:
        by_queue: dict[str, list[tuple[str, int]]] = {}
        for job in jobs:
            by_queue.setdefault(job.queue, []).append((job.id, job.token))
        calls = [T.release_call(self.queue_keys[q], leases) for q, leases in by_queue.items()]
        try:
            self.store.run_many(calls)
        except REDIS_ERRORS as exc:
            log.warning("could not hand back %d job(s) (%s); they return when their lease expires", len(jobs), exc)
            return
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
        log.warning("Redis call failed (%s: %s); retrying in %.1f s", type(exc).__name__, exc, self._backoff_s)
        self._stop.wait(self._backoff_s)
        self._maybe_ready.update(self.queue_names)

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
        with self._held_lock:
            for (queue, leases), codes in zip(by_queue.items(), results):
                for (job_id, token), code in zip(leases, codes):
                    # A job completed while the heartbeat was in flight is no longer held: not a loss.
                    if not int(code) and self._held.get((queue, job_id)) == token:
                        log.warning("%s: lease of job %s was lost (canceled, deleted or taken over)",
                                    queue, job_id)

    def _register(self) -> None:
        expires = int((time.time() + REGISTRATION_TTL_S) * 1000)
        info = {
            "name": self.name,
            "host": socket.gethostname(),
            "pid": str(os.getpid()),
            "queues": json.dumps(self.queue_names),
            "processed": str(self.stats.processed),
            "failed": str(self.stats.failed),
            "current": self._running.queue + "/" + self._running.id if self._running else "",
            "heartbeat": str(int(time.time() * 1000)),
        }
        key = K.worker(self.name)
        # Two single-key commands on global keys: never combined with a queue's keys.
        pipe = self.connection.pipeline(transaction=False)
        pipe.hset(key, mapping=info)
        pipe.pexpire(key, int(REGISTRATION_TTL_S * 1000))
        pipe.zadd(K.WORKERS, {self.name: expires})
        # Workers that died without unregistering would otherwise stay in the set forever.
        pipe.zremrangebyscore(K.WORKERS, "-inf", f"({int(time.time() * 1000)}")
        pipe.execute()

    def _unregister(self) -> None:
        pipe = self.connection.pipeline(transaction=False)
        pipe.zrem(K.WORKERS, self.name)
        pipe.delete(K.worker(self.name))
        pipe.execute()


@dataclass(frozen=True)
class WorkerInfo:
    """What a worker published about itself (see :func:`list_workers`)."""

    name: str
    host: str
    pid: int
    queues: list[str]
    processed: int
    failed: int
    current_job: str | None
    last_heartbeat_ms: int


def list_workers(connection: ConnectionLike = None, limit: int = 1000) -> list[WorkerInfo]:
    """Workers whose registration is alive, read in bounded pages."""
    client = connect(connection)
    now = int(time.time() * 1000)
    names = client.zrangebyscore(K.WORKERS, now, "+inf", start=0, num=limit)
    out = []
    for raw in names:
        name = raw.decode() if isinstance(raw, bytes) else raw
        values = client.hmget(K.worker(name), ["host", "pid", "queues", "processed", "failed", "current",
                                               "heartbeat"])
        if values[0] is None:
            continue
        host, pid, queues, processed, failed, current, heartbeat = (
            v.decode() if isinstance(v, bytes) else v for v in values)
        out.append(WorkerInfo(name, host, int(pid or 0), json.loads(queues or "[]"), int(processed or 0),
                              int(failed or 0), current or None, int(heartbeat or 0)))
    return out
