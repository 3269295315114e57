"""A worker's life around its loop: start-up and shutdown, process signals, wake-ups and waiting, job stop
requests, and the heartbeat thread (lease extension and registration).

:class:`Lifecycle` is a base of :class:`clusterq.worker.worker.Worker`; it uses the attributes the
worker's constructor sets (declared below for the type checker).
"""

from __future__ import annotations

import logging
import select
import signal
import threading
import time
from typing import TYPE_CHECKING, Any

from clusterq.api.hooks import HookSet, set_report_sink
from clusterq.connection.server_checks import server_warnings
from clusterq.connection.sync import REDIS_ERRORS, describe, is_proxy
from clusterq.exceptions import ConnectionFailed, StopRequested, WorkerNameInUse
from clusterq.state import keys as K
from clusterq.worker import registration
from clusterq.worker.fetch import OUTCOME_DELAY_S
from clusterq.worker.pools.factory import Finished, Notifier, Pool, SoloPool
from clusterq.worker.pools.process import STOP_SIGNALS
from clusterq.worker.registration import REGISTRATION_TTL_S
from clusterq.worker.settings import HEARTBEATS_PER_LEASE
from clusterq.worker.wakeup import Waker

if TYPE_CHECKING:
    from clusterq.worker.fetch import Fetched, Fetcher, SetAside
    from clusterq.worker.lanes import Lane, WorkerStats
    from clusterq.worker.leases import Leases
    from clusterq.worker.maintenance import Maintenance
    from clusterq.worker.outcomes import Outcomes

log = logging.getLogger(__name__)

PROXY_POLL_S = 1.0
"""Without wake-ups (through a proxy, or while a subscription is being rebuilt) an idle worker looks at its
queues, and reads the suspend flag, this often: one pipelined lease call per queue a second."""


class Lifecycle:
    serving = False  # set once setup is complete (signal handlers installed): what /readyz waits for
    _proxy_flag_due = 0.0  # through a proxy: when the suspend flag is next read (monotonic)
    # Set by Worker.__init__.
    connection: Any
    name: str
    queue_names: list[str]
    lanes: list[Lane]
    stats: WorkerStats
    executor: Any
    hooks: HookSet
    _report_sink: Any
    leases: Leases
    outcomes: Outcomes
    maintenance: Maintenance
    install_signal_handlers: bool
    _stop: threading.Event
    _stop_now: bool
    _notifier: Notifier
    _stop_requests: dict[tuple[str, str], str]
    _waker: Waker | None
    _heartbeat: threading.Thread | None
    _previous_handlers: dict[int, Any]
    _suspended: bool
    _reload_requested: bool = False
    _instance: str  # this run's own id: the name's holder in the registration
    _next_poll: float
    batch_target_s: float
    idle_poll_s: float
    fetcher: Fetcher
    set_aside: SetAside

    # Provided by Worker.
    @property
    def pool(self) -> Pool:
        raise NotImplementedError

    def _absorb(self, finished: list[Finished]) -> None:
        raise NotImplementedError

    def _flush_outcomes(self, everything: bool = False) -> Fetched:
        raise NotImplementedError

    def _flush_outcomes_safely(self) -> None:
        raise NotImplementedError

    def _lane_of(self, queue: str) -> Lane:
        raise NotImplementedError

    def _pools_text(self) -> str:
        raise NotImplementedError

    def request_stop(self) -> None:
        raise NotImplementedError

    # --- setup and teardown -------------------------------------------------------------------

    def _setup(self) -> None:
        try:
            taken = registration.claim(self.connection, self.name, self._instance)
        except REDIS_ERRORS as exc:
            raise ConnectionFailed(f"worker {self.name} cannot register on {describe(self.connection)}: "
                                   f"{type(exc).__name__}: {exc}") from None
        if taken:
            raise WorkerNameInUse(taken)
        self.hooks.call("on_worker_start", self)  # before the pools fork: what it opens, children inherit
        self._report_sink = set_report_sink(lambda data: self.hooks.call("on_report", data))
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
            # SIGHUP (a closed terminal, a supervisor's hang-up) stops like SIGTERM: running jobs finish and
            # nothing waits for its lease to expire. SIGUSR1 reloads: children with fresh code.
            for signum in STOP_SIGNALS:
                self._previous_handlers[signum] = signal.signal(signum, self._on_signal)
            self._previous_handlers[signal.SIGUSR1] = signal.signal(signal.SIGUSR1, self._on_reload)
        if not in_main and any(isinstance(lane.pool, SoloPool) for lane in self.lanes):
            log.warning("worker %s runs its solo pool outside the main thread: job time limits (SIGALRM) are "
                        "not enforced there; use the process pool for hard limits", self.name)
        self.serving = True

    def _teardown(self) -> None:
        self._stop.set()
        for lane in self.lanes:
            try:
                self._absorb(lane.pool.close(now=self._stop_now))
            except REDIS_ERRORS as exc:
                log.warning("could not record the last outcomes (%s); their leases will expire", exc)
        try:
            self.leases.release_all(keep=self.outcomes.buffered_ids())
            self._flush_outcomes(everything=True)
        except REDIS_ERRORS as exc:
            log.warning("could not hand back jobs on exit (%s); their leases will expire and they will rerun", exc)
        if self.outcomes:
            log.warning("could not record %d outcome(s) on exit; their leases will expire and they will rerun",
                        len(self.outcomes))
        if self._waker is not None:
            self._waker.close()
        if self._heartbeat is not None:
            self._heartbeat.join(timeout=5)
        try:
            registration.unregister(self.connection, self.name, self._instance)
        except REDIS_ERRORS:
            pass
        for signum, handler in self._previous_handlers.items():
            signal.signal(signum, handler)
        self._previous_handlers.clear()
        self._notifier.close()
        self.hooks.call("on_worker_stop", self, reverse=True)
        set_report_sink(self._report_sink)

    def _on_reload(self, signum: int, frame: Any) -> None:
        """SIGUSR1: pools of child processes replace their children (each once its batch is done), so jobs
        run the code deployed since the worker started; the pools act on it in the loop's thread."""
        self._reload_requested = True
        self._notifier.notify()

    def _apply_reload(self) -> None:
        self._reload_requested = False
        log.info("reloading: pool children are replaced as they finish their jobs (fresh code from disk)")
        for lane in self.lanes:
            if lane.pool.kind in ("process", "fork"):
                lane.pool.reload()
            else:
                log.warning("the %s pool runs jobs in the worker's own process: it cannot reload them; restart "
                            "the worker to run new code", lane.pool.kind)

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

    # --- wake-ups -----------------------------------------------------------------------------

    def _start_waker(self) -> None:
        if is_proxy(self.connection):  # a proxy relays no pub/sub: idle queues are polled (see _idle_wait)
            return
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

    def _take_signals(self) -> None:
        """Mark signalled queues ready; an earlier scheduled job makes maintenance (promotion) due now;
        stop the jobs whose stop was requested."""
        if self._stop_requests:
            self._apply_stops()
        if self._reload_requested:
            self._apply_reload()
        if self._waker is None:
            if is_proxy(self.connection) and time.monotonic() >= self._proxy_flag_due:
                # No control channel through a proxy: read the suspend flag once a second, busy or idle.
                self._proxy_flag_due = time.monotonic() + PROXY_POLL_S
                self._read_suspended()
            return
        signalled = self._waker.take()
        if signalled and self.set_aside:
            signalled -= self.set_aside.waiting()  # a set-aside queue waits out its back-off
        for lane in self.lanes:
            lane.ready.update(signalled.intersection(lane.queues))
        if self._waker.control_changed:
            self._waker.control_changed = False
            self._read_suspended()
            self._mark_all_ready()
        if self._waker.schedule_changed:
            self._waker.schedule_changed = False
            self.maintenance.next_due = 0.0
        scheduled = self._waker.take_scheduled()
        if scheduled and self.maintenance.sweep:  # a partition not in every round: the next one takes it
            for name in scheduled:
                self.maintenance.sweep.note(name, 0.0)
            self.maintenance.next_due = 0.0

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

    # --- waiting -------------------------------------------------------------------------------

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

    def _pool_wait_s(self) -> float:
        now = time.monotonic()
        deadlines = [self.maintenance.next_due, *self._holds()]
        for lane in self.lanes:
            deadline = lane.pool.next_deadline()
            if deadline is not None:
                deadlines.append(deadline)
        if self.outcomes:
            # Results become visible soon even while busy; outcomes already due that are still here (their
            # queue is set aside) are retried at the slower pace, not in a spin.
            due = self.outcomes.since + OUTCOME_DELAY_S
            deadlines.append(due if due > now else now + self.batch_target_s)
        return max(0.0, min(deadlines) - now)

    def _holds(self) -> list[float]:
        """When rate-limited and set-aside queues are to be tried again."""
        return [*self.fetcher.held_back.values(), *self.set_aside.deadlines()]

    def _end_holds(self) -> None:
        """Rate-limited queues whose wait is over, and set-aside queues whose back-off is over, are tried
        again."""
        held_back = self.fetcher.held_back
        if held_back:
            now = time.monotonic()
            for name, until in list(held_back.items()):
                if until <= now:
                    del held_back[name]
                    self._lane_of(name).ready.add(name)
        for name in self.set_aside.take_due():
            self._lane_of(name).ready.add(name)

    def _idle_wait(self) -> None:
        """Every queue is empty and nothing runs: flush, then sleep until a queue is signalled or the
        fallback poll (or maintenance) is due."""
        self._flush_outcomes_safely()
        if self._waker is None or self._waker.broken:
            self._start_waker()
            if self._waker is None or self._waker.broken:
                self._stop.wait(PROXY_POLL_S)  # through a proxy (no pub/sub), or until the subscription is back
                self._take_signals()
                self._mark_all_ready()
                return
        self._wait(min(self._next_poll, self.maintenance.next_due, *self._holds()) - time.monotonic())
        if time.monotonic() >= self._next_poll:
            # Fallback poll: a wake-up can be lost across a reconnect or failover; this bounds the delay.
            self._next_poll = time.monotonic() + self.idle_poll_s
            self._read_suspended()
            self._mark_all_ready()

    def _mark_all_ready(self) -> None:
        """Every queue is worth a lease call, except those set aside whose back-off is not over."""
        waiting = self.set_aside.waiting()
        for lane in self.lanes:
            lane.ready.update(q for q in lane.queues if q not in waiting)

    # --- stopping jobs (job.stop()) -----------------------------------------------------------

    def _on_stop_request(self, queue: str, job_id: str, reason: str) -> None:
        """A stop request heard by the waker or the heartbeat (any thread). The solo pool runs the job in
        the supervisor's thread, which is busy with it: it is interrupted from here."""
        with self.leases.lock:
            if (queue, job_id) not in self.leases:
                return  # another worker's job
            self._stop_requests[(queue, job_id)] = reason
        for lane in self.lanes:
            if isinstance(lane.pool, SoloPool) and queue in lane.queues:
                lane.pool.stop(queue, job_id, reason)
        self._notifier.notify()

    def _apply_stops(self) -> None:
        with self.leases.lock:
            requests, self._stop_requests = self._stop_requests, {}
        for (queue, job_id), reason in requests.items():
            pool = self._lane_of(queue).pool
            if pool.stop(queue, job_id, reason):
                log.info("%s: stopping job %s: %s", queue, job_id, reason)
        for lane in self.lanes:
            self._absorb(lane.pool.collect())

    # --- heartbeat and registration -----------------------------------------------------------

    def _heartbeat_loop(self) -> None:
        interval_s = self.leases.lease_ms / 1000 / HEARTBEATS_PER_LEASE
        next_registration = time.monotonic() + REGISTRATION_TTL_S / 4
        while not self._stop.wait(interval_s):
            try:
                self.leases.extend(self._on_stop_request, lambda q, i: (q, i) in self._stop_requests)
                if time.monotonic() >= next_registration:
                    self._register()
                    next_registration = time.monotonic() + REGISTRATION_TTL_S / 4
            except REDIS_ERRORS as exc:
                log.warning("heartbeat failed: %s", exc)

    def _register(self) -> None:
        current = self.leases.first()
        registration.register(self.connection, self.name, self.queue_names, {
            "processed": self.stats.processed,
            "failed": self.stats.failed,
            "current": f"{current[0]}/{current[1]}" if current else "",
            "pool": self._pools_text(),
            "instance": self._instance,
        })


__all__ = ["Lifecycle"]
