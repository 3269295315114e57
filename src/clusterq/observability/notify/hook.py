"""The notifications hook (:class:`Notifications`): turns job failures and the periodic checks' findings
into coalesced digests, delivered through a clusterq queue of their own.

Where each part runs:

- a job's final failure is seen where the job ran (a pool child, a thread) and sent with
  :func:`clusterq.hooks.report` to the worker's supervisor (no Redis command in the job's path);
- the supervisor adds events up in memory per rule; a flusher thread writes them every
  ``flush_interval_s`` in one transaction (the ``{%n}`` slot): INCRBY of each rule's window counter, RPUSH
  + LTRIM of its bounded sample list. The flush that creates a counter (INCRBY answered exactly its own
  count) schedules the window's digest job ``window_s`` later on the notify queue;
- the digest job (:func:`clusterq.observability.notify.jobs.digest`) takes the window's counter and
  samples (RENAME, so later events open a new window) and enqueues one delivery job per notifier, retried
  with backoff (clusterq's :class:`~clusterq.Retry`) under the same message id;
- the periodic checks (backlog, oldest waiting, no worker, lost workers, eviction policy) run in the same
  flusher thread every ``check_interval_s``, by one worker of the deployment at a time (a ``SET NX PX``
  lock): bounded reads (one pipelined round trip per node for the queue gauges, the worker listing, one
  ``INFO memory`` per primary).

A slow, hanging or failing endpoint only ever delays the notify queue's own jobs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from clusterq.api.hooks import Hook, JobInfo, report
from clusterq.connection.server_checks import memory_of_primaries
from clusterq.connection.sync import REDIS_ERRORS, is_proxy
from clusterq.exceptions import ClusterQError
from clusterq.observability.backlog import read_queue_gauges
from clusterq.observability.notify import config as C
from clusterq.observability.notify.notifiers import discover, make_notifier
from clusterq.state import keys as K
from clusterq.worker.registration import REGISTRATION_TTL_S, list_workers

log = logging.getLogger(__name__)

TAG = "clusterq.notify"
DIGEST = "clusterq.observability.notify.jobs.digest"
DELIVER = "clusterq.observability.notify.jobs.deliver"
SAMPLE_TEXT_CHARS = 300
KEY_TTL_MARGIN_S = 600.0
"""A window's keys expire this long after their window should have closed: a digest lost with its
enqueue (Redis down at that moment) cannot leave a counter that swallows every later event."""

_active: Notifications | None = None
_active_lock = threading.Lock()


def active() -> Notifications | None:
    """The notifications configured in this process (the one of the running worker)."""
    return _active


def _short(value: Any, limit: int = SAMPLE_TEXT_CHARS) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class Notifications(Hook):
    """Alerts for a worker: ``Notifications({"notifiers": {...}, "rules": [...]})`` (a dict, a JSON file
    path or :class:`~clusterq.observability.notify.config.NotifySettings`).

    Register it on the worker (``Worker(..., hooks=[n], lanes=[n.lane()])``; the lane serves the notify
    queue with a small thread pool). ``outcomes`` counts deliveries by (notifier, outcome); with
    ``registry=`` (a prometheus-client registry, e.g. :attr:`JobMetrics.registry`) they are served as
    ``clusterq_notifications_total{notifier,outcome}``.
    """

    def __init__(self, settings: C.NotifySettings | Mapping[str, Any] | str, *, registry: Any = None) -> None:
        self.settings = settings if isinstance(settings, C.NotifySettings) else C.load(settings)
        s = self.settings
        self.queue = K.validate_queue_name(s.queue)
        self.notifiers: dict[str, Any] = {}
        self.invalid: dict[str, str] = {}
        for name, options in s.notifiers.items():
            try:
                self.notifiers[name] = make_notifier(name, options)
            except ValueError as exc:  # a broken plugin or option: that notifier only, logged once
                self.invalid[name] = str(exc)
                log.error("%s; its notifications are dropped (counted in clusterq_notifications_total"
                          "{outcome=\"invalid\"})", exc)
        _, broken = discover()
        self.broken_plugins = broken
        self.rules = {r.name: r for r in s.rules}
        self._job_rules = [r for r in s.rules if not r.periodic]
        self._periodic_rules = [r for r in s.rules if r.periodic]
        self.outcomes: dict[tuple[str, str], int] = {}
        for name in (*self.invalid, *broken):
            self.outcomes[(name, "invalid")] = 1
        self._logged: set[tuple[str, str]] = set()
        self._lock = threading.Lock()
        self._pending: dict[str, list[Any]] = {}  # rule -> [count, samples]
        self._digests: list[tuple[str, float]] = []  # digests whose enqueue failed: retried next flush
        self.connection: Any = None
        self._worker: Any = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._next_check = 0.0
        self.errors: dict[str, int] = {}
        if registry is not None:
            self.register_metrics(registry)
        self.activate()

    def __repr__(self) -> str:
        return f"Notifications(queue={self.queue!r}, notifiers={sorted(self.notifiers)})"

    def activate(self) -> None:
        """Make these the notifications the delivery jobs of this process use."""
        global _active
        with _active_lock:
            _active = self

    def lane(self, concurrency: int | None = None) -> tuple[list[str], str, int]:
        """A worker lane serving the notify queue with a thread pool (``Worker(lanes=[...])``)."""
        return ([self.queue], "thread", concurrency or max(1, self.settings.lane))

    def register_metrics(self, registry: Any) -> None:
        """Serve ``clusterq_notifications_total{notifier,outcome}`` from a prometheus-client registry."""
        from clusterq.observability.notify.metrics import NotificationCollector
        registry.register(NotificationCollector(self))

    # --- counting (the supervisor) -------------------------------------------------------------------

    def count(self, notifier: str, outcome: str, reason: str = "") -> None:
        with self._lock:
            self.outcomes[(notifier, outcome)] = self.outcomes.get((notifier, outcome), 0) + 1
        if outcome != "delivered" and (notifier, outcome) not in self._logged:
            self._logged.add((notifier, outcome))
            log.warning("notification to %r: %s: %s (logged once per notifier and outcome; counted in "
                        "clusterq_notifications_total)", notifier, outcome, reason)

    def _error(self, kind: str, message: str, *args: Any) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1
        if self.errors[kind] == 1:
            log.warning("notifications: " + message + " (logged once)", *args)
        else:
            log.debug("notifications: " + message, *args)

    # --- events where the job ran --------------------------------------------------------------------

    def _job_event(self, job: JobInfo, event: str, reason: str) -> None:
        if job.queue == self.queue:  # a failed delivery never alerts about itself
            return
        data: dict[str, Any] = {"event": event, "queue": job.queue, "function": job.func, "job_id": job.id,
                                "attempt": job.attempt, "reason": _short(reason)}
        if not self.settings.redact_args:
            data["args"] = _short(job.args)
            data["kwargs"] = _short(job.kwargs)
        report((TAG, "event", data))

    def on_failure(self, job: JobInfo, error: BaseException | None, reason: str) -> None:
        self._job_event(job, "job_failed", reason)
        if job.retries > 0:
            self._job_event(job, "retries_exhausted", reason)

    def on_abandoned(self, queue: str, job_id: str) -> None:
        if queue != self.queue:
            self.add({"event": "job_abandoned", "queue": queue, "job_id": job_id,
                      "reason": "its lease expired past its attempts (the worker died or hung)"})

    def on_report(self, data: Any) -> None:
        if not (isinstance(data, tuple) and len(data) >= 3 and data[0] == TAG):
            return
        if data[1] == "event" and isinstance(data[2], dict):
            self.add(data[2])
        elif data[1] == "outcome" and len(data) == 5:
            self.count(str(data[2]), str(data[3]), str(data[4]))

    def add(self, event: Mapping[str, Any], rules: Sequence[C.Rule] | None = None) -> None:
        """Count ``event`` into every matching rule (in memory; written by the next flush)."""
        chosen = rules if rules is not None else [r for r in self._job_rules if r.matches(event)]
        if not chosen:
            return
        keep = self.settings.samples
        with self._lock:
            for rule in chosen:
                entry = self._pending.get(rule.name)
                if entry is None:
                    entry = self._pending[rule.name] = [0, []]
                entry[0] += 1
                if len(entry[1]) < keep:
                    entry[1].append(dict(event))

    # --- the supervisor's flusher thread -------------------------------------------------------------

    def on_worker_start(self, worker: Any) -> None:
        if is_proxy(worker.connection):  # its counters and digests are taken with MULTI, which a proxy refuses
            raise ClusterQError("notifications need MULTI/EXEC, which a proxy (redis+proxy://) does not relay: "
                              "run the notifying workers against the servers themselves, or alert from "
                              "Prometheus (docs/proxy.md)")
        self.activate()
        self.connection = worker.connection
        self._worker = worker
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="clusterq-notify", daemon=True)
            self._thread.start()

    def on_child_start(self) -> None:
        self._lock = threading.Lock()  # a lock held by the supervisor's thread at fork time
        self._thread = None
        self._pending = {}

    def on_worker_stop(self, worker: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        self.flush()  # what the last jobs reported
        self._worker = None

    def _run(self) -> None:
        interval = self.settings.flush_interval_s
        while not self._stop.wait(interval):
            if getattr(self._worker, "stopping", False):
                # The worker's teardown closes its wake-up subscriptions while their reader threads may
                # still read the pooled connection: no command from here until on_worker_stop's flush.
                continue
            self.flush()
            if self._periodic_rules and time.monotonic() >= self._next_check:
                self._next_check = time.monotonic() + self.settings.check_interval_s
                try:
                    self.check()
                except REDIS_ERRORS as exc:
                    self._error("check", "the periodic check could not read Redis: %s: %s", type(exc).__name__, exc)
                except Exception as exc:  # never kill the thread
                    self._error("check-bug", "the periodic check failed: %s: %s", type(exc).__name__, exc)

    def flush(self) -> None:
        """Write the counted events (one transaction in the ``{%n}`` slot) and schedule the digests of
        windows this flush opened."""
        if self.connection is None:
            return
        with self._lock:
            pending, self._pending = self._pending, {}
        if pending:
            try:
                self._write(pending)
            except REDIS_ERRORS as exc:
                self._error("flush", "events could not be written to Redis (kept for the next flush): %s: %s",
                            type(exc).__name__, exc)
                with self._lock:  # merged back, still bounded
                    for name, (count, samples) in pending.items():
                        entry = self._pending.setdefault(name, [0, []])
                        entry[0] += count
                        entry[1] = (samples + entry[1])[: self.settings.samples]
        if self._digests:
            due, self._digests = self._digests, []
            for name, opened in due:
                self._schedule(name, opened)

    def _write(self, pending: dict[str, list[Any]]) -> None:
        pipe = self.connection.pipeline(transaction=True)
        order = []
        keep = self.settings.samples
        for name, (count, samples) in pending.items():
            rule = self.rules[name]
            ttl_ms = int((rule.window_s + KEY_TTL_MARGIN_S) * 1000)
            counter, sample_list = K.notify_count(name), K.notify_samples(name)
            pipe.incrby(counter, count)
            order.append((name, count))
            pipe.pexpire(counter, ttl_ms)
            if samples and keep:
                pipe.rpush(sample_list, *(json.dumps(s, default=str) for s in samples))
                pipe.ltrim(sample_list, 0, keep - 1)
                pipe.pexpire(sample_list, ttl_ms)
        replies = pipe.execute()
        incr = iter(_incr_replies(replies, pending, keep))
        now = time.time()
        for name, count in order:
            if next(incr) == count:  # this flush opened the window
                self._schedule(name, now)

    def _schedule(self, name: str, opened: float) -> None:
        rule = self.rules[name]
        digest_id = f"cq-digest-{hashlib.sha1(name.encode()).hexdigest()[:12]}-{uuid.uuid4().hex[:12]}"
        from clusterq.api.queue import Queue
        from clusterq.api.retry import Backoff, Retry
        try:
            Queue(self.queue, self.connection).enqueue_in(
                max(0.0, opened + rule.window_s - time.time()), DIGEST, name, opened, job_id=digest_id,
                retry=Retry(max=max(1, self.settings.retries), interval=Backoff(base=self.settings.retry_base_s)))
        except REDIS_ERRORS as exc:
            self._error("digest", "a digest could not be scheduled (retried at the next flush): %s: %s",
                        type(exc).__name__, exc)
            self._digests.append((name, opened))

    # --- the periodic check ---------------------------------------------------------------------------

    def check(self, *, force: bool = False) -> None:
        """Evaluate the periodic rules now (one worker of the deployment per ``check_interval_s``;
        ``force`` skips that lock)."""
        conn = self.connection
        if conn is None or not self._periodic_rules:
            return
        interval_ms = int(self.settings.check_interval_s * 1000)
        if not force and not conn.set(K.NOTIFY_CHECK_LOCK, "1", nx=True, px=max(1, int(interval_ms * 0.9))):
            return
        wanted = {e for r in self._periodic_rules for e in r.events}
        queues = self._queues_to_check()
        gauges = {g.queue: g for g in read_queue_gauges(conn, queues)} if queues else {}
        workers = list_workers(conn) if wanted & {"no_worker", "worker_lost"} else []
        served = {q for w in workers for q in w.queues}
        lost = self._lost_workers(workers) if "worker_lost" in wanted else []
        nodes = memory_of_primaries(conn) if "eviction_policy" in wanted else []
        for rule in self._periodic_rules:
            for queue in (rule.queues or tuple(gauges)):
                gauge = gauges.get(queue)
                if gauge is None:
                    continue
                waiting = gauge.jobs.get("waiting", 0)
                threshold = rule.threshold if rule.threshold is not None else 0
                if "backlog" in rule.events and waiting > threshold:
                    self.add({"event": "backlog", "queue": queue, "waiting": waiting, "threshold": threshold}, [rule])
                age = gauge.oldest_waiting_s
                if "oldest_waiting" in rule.events and age is not None and age > threshold:
                    self.add({"event": "oldest_waiting", "queue": queue, "oldest_waiting_s": round(age, 1),
                              "threshold": threshold}, [rule])
                if "no_worker" in rule.events and queue not in served and (waiting or rule.queues):
                    self.add({"event": "no_worker", "queue": queue, "waiting": waiting}, [rule])
            if "worker_lost" in rule.events:
                for name, heartbeat_ms in lost:
                    self.add({"event": "worker_lost", "worker": name,
                              "last_heartbeat_s_ago": round(time.time() - heartbeat_ms / 1000, 1)}, [rule])
            if "eviction_policy" in rule.events:
                for node in nodes:
                    if node.evicts:
                        self.add({"event": "eviction_policy", "node": node.node, "policy": node.policy}, [rule])

    def _queues_to_check(self) -> list[str]:
        named = {q for r in self._periodic_rules for q in r.queues}
        if all(r.queues for r in self._periodic_rules if not set(r.events) <= {"worker_lost", "eviction_policy"}):
            return sorted(named)
        found = set(named)
        for name in self.connection.sscan_iter(K.QUEUES, count=500):  # bounded: at most max_queues
            found.add(name.decode() if isinstance(name, bytes) else name)
            if len(found) >= self.settings.max_queues:
                self._error("max-queues", "more than max_queues=%d queues: the periodic check reads the first ones",
                            self.settings.max_queues)
                break
        found.discard(self.queue)
        return sorted(found)

    def _lost_workers(self, workers: list[Any]) -> list[tuple[str, int]]:
        """Workers seen live at the previous check and gone since with their registration expired: a
        worker that stops cleanly unregisters well before its registration would expire, one that died
        vanishes only once it expired (``REGISTRATION_TTL_S`` after its last heartbeat)."""
        conn = self.connection
        now_ms = int(time.time() * 1000)
        pipe = conn.pipeline(transaction=True)
        pipe.hgetall(K.NOTIFY_SEEN)  # bounded: the live workers of the previous check (at most 1000)
        pipe.get(K.NOTIFY_LAST_CHECK)
        pipe.delete(K.NOTIFY_SEEN)
        if workers:
            pipe.hset(K.NOTIFY_SEEN, mapping={w.name: w.last_heartbeat_ms for w in workers})
        pipe.set(K.NOTIFY_LAST_CHECK, now_ms)
        seen, last, *_ = pipe.execute()
        ttl_ms = REGISTRATION_TTL_S * 1000
        if last is None or now_ms - int(last) > ttl_ms / 2:  # a gap: a clean stop would look like a loss
            return []
        live = {w.name for w in workers}
        lost = []
        for raw_name, raw_beat in (seen or {}).items():
            name = raw_name.decode() if isinstance(raw_name, bytes) else raw_name
            beat = int(raw_beat)
            if name not in live and now_ms - beat >= ttl_ms:
                lost.append((name, beat))
        return lost


def _incr_replies(replies: list[Any], pending: dict[str, list[Any]], keep: int) -> list[int]:
    """The INCRBY answers of a flush transaction, in rule order (2 commands per rule, +3 with samples)."""
    out, i = [], 0
    for _, (_, samples) in pending.items():
        out.append(int(replies[i]))
        i += 2 + (3 if samples and keep else 0)
    return out


def on_outcome(notifier: str, outcome: str, reason: str = "") -> None:
    """Report a delivery outcome to the worker's :class:`Notifications` (where it is counted)."""
    report((TAG, "outcome", notifier, outcome, reason))

__all__ = ["DELIVER", "DIGEST", "Notifications", "active", "on_outcome"]
