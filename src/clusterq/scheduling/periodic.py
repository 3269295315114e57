"""Periodic jobs: declarations, the scheduler that enqueues their ticks, and the listing.

Declare them in code (``Periodic(...)`` objects, or the ``@periodic(...)`` decorator) and run a
scheduler: ``clusterq cron myapp.periodic``, ``clusterq worker --with-cron myapp.periodic``, or
``CronScheduler(url, jobs).run()``. Any number of schedulers may run at once: each tick is offered by
all of them to one script in the job's queue slot (``cron_tick.lua``), which takes it only if it is
newer than the last tick taken, so each tick is enqueued exactly once.

A scheduler sleeps until the next tick is due; it talks to Redis once per due tick (and once at start),
and between ticks only to look for run-now requests (below).
An operator can ask for one extra run now (``run_periodic_now``, ``clusterq cron --run-now NAME``, the
dashboard): only a scheduler has the job's arguments, options and signing key, so the request is a
string in the job's queue slot (the request's ms, set only if absent: one pending request at a time)
that every scheduler reads with one pipelined GET per periodic job each RUN_NOW_POLL_S at most, and
offers to ``cron_tick.lua`` in mode "manual", which takes it exactly once (job id
``cron:<name>:manual:<request ms>``). A request made while no scheduler runs waits for one.

Ticks that passed while no scheduler ran are coalesced: a restarted scheduler runs the latest missed
tick once (``catch_up=False`` skips it), and a periodic job seen for the first time starts with the
first tick after its scheduler started.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo
from typing import Any, TypeVar

from redis.typing import EncodableT, FieldT

from clusterq.api.queue import EnqueueData, Queue
from clusterq.connection.sync import REDIS_ERRORS, ConnectionLike, connect
from clusterq.exceptions import ClusterQError
from clusterq.scheduling.cron import CronError, CronExpr, Interval, Schedule, to_datetime
from clusterq.serializers import Serializer
from clusterq.signing import Signer, SigningKey, make_signer
from clusterq.state import keys as K
from clusterq.state import store as T
from clusterq.state import transitions as TR
from clusterq.utils import function_path

log = logging.getLogger(__name__)

DEFAULT_KEEP_RUNS = 20
"""Recent runs remembered per periodic job (a capped list in its queue's slot)."""
MAX_SLEEP_S = 60.0
"""A scheduler re-reads its clock at least this often, so a clock step (NTP) delays a tick by no more."""
RETRY_S = 0.25
"""After a failed Redis call the tick stays due and is offered again this much later (doubling to 30 s):
soon at first, so a short failover or reconnect loses no tick of a job that runs every second."""
LATE_GRACE_MS = 5000
RUN_NOW_POLL_S = 1.0
"""A running scheduler looks for run-now requests at least this often (one GET per periodic job)."""
MAX_NAME_BYTES = 200  # the job id is "cron:<name>:<tick>", and ids are limited to 256 bytes

F = TypeVar("F", bound=Callable[..., Any])


class PeriodicError(ClusterQError, ValueError):
    """A periodic job declaration that cannot be used (bad schedule, duplicate name, bad module)."""


# --- declarations ---------------------------------------------------------------------------------

class Periodic:
    """A job enqueued on a schedule: ``cron="*/5 * * * *"`` (with optional ``tz``) or ``every=60``.

    ``name`` (default: the function's dotted path) identifies the periodic job across schedulers and
    restarts; it must be unique. ``args``/``kwargs`` are passed to every run; the other keywords are the
    job options of :meth:`Queue.enqueue` (``job_timeout``, ``result_ttl``, ``ttl``, ``failure_ttl``,
    ``description``, ``meta``, ``max_attempts``, ``retry``, ...), checked when declared and applied to
    every run. A ``ttl`` shorter than the period drops a run that no worker started in time.
    ``catch_up=False``: a restarted scheduler does not run the latest tick missed while no scheduler ran.
    ``overlap=False``: a tick whose previous run has not ended (still queued, running, or waiting for a
    retry) is skipped, so a slow job never runs twice at once.
    """

    def __init__(
        self,
        func: Callable[..., Any] | str,
        *,
        cron: str | None = None,
        every: float | int | timedelta | None = None,
        tz: str | tzinfo | None = None,
        queue: str = "default",
        args: Sequence[Any] = (),
        kwargs: dict[str, Any] | None = None,
        name: str | None = None,
        catch_up: bool = True,
        overlap: bool = True,
        serializer: Serializer | str | None = None,
        **job_options: Any,
    ) -> None:
        if (cron is None) == (every is None):
            raise PeriodicError("give a periodic job exactly one of cron=... and every=...")
        try:
            if cron is not None:
                self.schedule: Schedule = CronExpr(cron, tz)
            else:
                if tz is not None:
                    raise CronError("tz applies to cron expressions; intervals count from the epoch")
                self.schedule = Interval.of(every)  # type: ignore[arg-type]
        except CronError as exc:
            raise PeriodicError(f"periodic job {name or func!r}: {exc}") from None
        self.func = function_path(func)
        self.queue = K.validate_queue_name(queue)
        self.name = self.func if name is None else name
        if not isinstance(self.name, str) or not self.name:
            raise PeriodicError(f"a periodic job's name must be a non-empty str, got {name!r}")
        if len(self.name.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
            raise PeriodicError(f"periodic job name {self.name[:40]!r}... is longer than {MAX_NAME_BYTES} bytes")
        self.args = tuple(args)
        self.kwargs = dict(kwargs or {})
        self.catch_up = bool(catch_up)
        self.overlap = bool(overlap)
        self.serializer = serializer
        if "timeout" in job_options:
            job_options.setdefault("job_timeout", job_options.pop("timeout"))
        for option in job_options:
            if option in _NOT_PERIODIC:
                raise PeriodicError(f"periodic job {self.name!r}: {option}= does not apply to periodic jobs "
                                    f"({_NOT_PERIODIC[option]})")
        unknown = sorted(set(job_options) - _JOB_OPTIONS)
        if unknown:
            raise PeriodicError(f"periodic job {self.name!r}: unknown option(s) {unknown}; the job options are "
                                f"{sorted(_JOB_OPTIONS)}")
        self.options: dict[str, Any] = {k: v for k, v in job_options.items() if v is not None}

    def __repr__(self) -> str:
        return f"Periodic({self.name!r}, {self.schedule.describe()!r}, queue={self.queue!r})"

    def job_id(self, tick_ms: int) -> str:
        """The id of the run for ``tick_ms``: the same in every scheduler (``cron:<name>:<UTC time>``)."""
        moment = to_datetime(tick_ms)
        stamp = moment.strftime("%Y-%m-%dT%H:%M:%S") + (f".{tick_ms % 1000:03d}" if tick_ms % 1000 else "")
        return f"cron:{self.name}:{stamp}Z"

    def manual_job_id(self, request_ms: int) -> str:
        """The id of the run an operator asked for at ``request_ms`` (``cron:<name>:manual:<ms>``)."""
        return f"cron:{self.name}:manual:{request_ms}"

    def declaration(self) -> dict[str, Any]:
        """What listings show (stored in the global ``cq:periodic`` hash)."""
        spec: dict[str, Any] = {"queue": self.queue, "func": self.func}
        if isinstance(self.schedule, CronExpr):
            spec["cron"] = self.schedule.expression
            if self.schedule.tz is not None:
                spec["tz"] = str(self.schedule.tz)
        else:
            spec["every_ms"] = self.schedule.every_ms  # type: ignore[attr-defined]
        return spec


# The job options cron_tick.lua applies (it creates the job itself, as enqueue.lua would). A new enqueue
# option is refused here until cron_tick.lua handles it, rather than silently dropped.
_JOB_OPTIONS = frozenset({
    "job_timeout", "result_ttl", "ttl", "failure_ttl", "description", "meta", "max_attempts", "retry",
    "result_history", "on_success", "on_failure", "on_stopped", "repeat", "priority", "concurrency_key",
})
_NOT_PERIODIC = {
    "job_id": "each run's id is cron:<name>:<tick>",
    "unique": "each tick runs once already; see overlap=False",
    "debounce": "a periodic job runs on its schedule",
    "depends_on": "a periodic job cannot wait for another job",
}

_REGISTERED: list[Periodic] = []


def periodic(*, cron: str | None = None, every: float | int | timedelta | None = None,
             **options: Any) -> Callable[[F], F]:
    """Decorator: declare the decorated function a periodic job (options of :class:`Periodic`).

    The declaration is registered when the module is imported; a scheduler given that module (or a
    module importing it) runs it. The function itself is returned unchanged."""

    def decorate(func: F) -> F:
        _REGISTERED.append(Periodic(func, cron=cron, every=every, **options))
        return func

    return decorate


def registered() -> list[Periodic]:
    """Periodic jobs declared with ``@periodic`` in the modules imported so far."""
    return list(_REGISTERED)


def load_periodic(module: str) -> list[Periodic]:
    """The periodic jobs of a config module: its ``PERIODIC`` list, plus every ``@periodic`` function
    registered while it (and what it imports) was imported."""
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        mod = importlib.import_module(module)
    except Exception as exc:
        raise PeriodicError(f"cannot import periodic jobs module {module!r}: {type(exc).__name__}: {exc}") from None
    declared = getattr(mod, "PERIODIC", [])
    if not isinstance(declared, (list, tuple)):
        raise PeriodicError(f"{module}.PERIODIC must be a list of clusterq.Periodic, got {type(declared).__name__}")
    return unique([*declared, *registered()])


def unique(jobs: Iterable[Any]) -> list[Periodic]:
    """``jobs`` without repeats; a name declared twice differently is an error."""
    by_name: dict[str, Periodic] = {}
    for job in jobs:
        if not isinstance(job, Periodic):
            raise PeriodicError(f"expected clusterq.Periodic, got {job!r}")
        other = by_name.get(job.name)
        if other is not None and other is not job and other.declaration() != job.declaration():
            raise PeriodicError(f"two different periodic jobs are named {job.name!r}; give one a name=")
        by_name.setdefault(job.name, job)
    return list(by_name.values())


# --- the scheduler --------------------------------------------------------------------------------

@dataclass
class _Entry:
    job: Periodic
    queue: Queue
    mode: str  # "resume"/"skip" until the first tick is settled, then "fire"
    next_ms: int = 0  # due at once: the first offer settles the latest past tick
    failures: int = 0


class CronScheduler:
    """Enqueues the ticks of ``jobs`` until stopped. Safe to run in several processes at once.

    ``run()`` loops (SIGTERM/SIGINT stop it when run in the main thread); ``run_once()`` offers the due
    ticks and returns the seconds until the next one; ``stop()`` ends ``run()`` from another thread.
    """

    def __init__(self, connection: ConnectionLike, jobs: Iterable[Periodic], *,
                 keep_runs: int = DEFAULT_KEEP_RUNS, install_signal_handlers: bool = True,
                 signing_key: SigningKey | Signer | None = None) -> None:
        self.connection = connect(connection)
        self.store = T.Store(self.connection)
        self.jobs = unique(jobs)
        if keep_runs < 1:
            raise ValueError(f"keep_runs must be at least 1, got {keep_runs!r}")
        self.keep_runs = keep_runs
        self.install_signal_handlers = install_signal_handlers
        queues: dict[tuple[str, str], Queue] = {}
        signer = make_signer(signing_key)  # its jobs are signed like a Queue's (see signing.py)
        self._entries = []
        for job in self.jobs:
            key = (job.queue, str(job.serializer))
            if key not in queues:
                queues[key] = Queue(job.queue, self.connection, serializer=job.serializer, signing_key=signer)
            entry = _Entry(job, queues[key], "resume" if job.catch_up else "skip")
            try:  # arguments the serializer refuses, bad option values: here, not at the first tick
                self._new_job(entry, 0)
            except (ClusterQError, ValueError, TypeError) as exc:
                raise PeriodicError(f"periodic job {job.name!r}: {exc}") from exc
            self._entries.append(entry)
        self._offset_ms: dict[str, int] = {}  # queue -> server clock minus ours, from the last reply
        self._stop = threading.Event()
        self._declared = False
        self.enqueued = 0

    def __repr__(self) -> str:
        return f"CronScheduler({[job.name for job in self.jobs]})"

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        """Offer each tick when it is due, until :meth:`stop` (or SIGTERM/SIGINT in the main thread)."""
        previous: dict[int, Any] = {}
        if self.install_signal_handlers and threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGTERM, signal.SIGINT):
                previous[signum] = signal.signal(signum, lambda *_: self.stop())
        log.info("cron scheduler: %d periodic job(s): %s", len(self.jobs),
                 "; ".join(f"{job.name} ({job.schedule.describe()}) -> {job.queue}" for job in self.jobs))
        try:
            while not self._stop.is_set():
                self._stop.wait(min(MAX_SLEEP_S, RUN_NOW_POLL_S, self.run_once()))
        finally:
            for restored, handler in previous.items():
                signal.signal(restored, handler)
        log.info("cron scheduler stopped: %d run(s) enqueued", self.enqueued)

    def run_once(self, now: datetime | None = None) -> float:
        """Offer every due tick once; return the seconds until the next tick is due.

        ``now`` (for tests and tools) replaces the clock; the server still refuses ticks after its own
        time."""
        fixed_ms = None if now is None else int(now.timestamp() * 1000)
        if not self._declared:
            self._declare()
        due: list[tuple[_Entry, int]] = []
        for entry in self._entries:
            now_ms = fixed_ms if fixed_ms is not None else self._server_now_ms(entry.job.queue)
            if entry.next_ms <= now_ms:
                due.append((entry, entry.job.schedule.last_at_or_before(now_ms)))
        if due:
            self._offer(due, fixed_ms is None)
        self._take_run_now_requests()
        waits = []
        for entry in self._entries:
            now_ms = fixed_ms if fixed_ms is not None else self._server_now_ms(entry.job.queue)
            waits.append(max(0, entry.next_ms - now_ms) / 1000)
        return min(waits, default=MAX_SLEEP_S)

    # --- steps --------------------------------------------------------------------------------

    def _declare(self) -> None:
        """Name the periodic jobs in the global hash for listings; written only when it changed."""
        try:
            for queue in {entry.queue.name: entry.queue for entry in self._entries}.values():
                queue._register()
            names = [job.name for job in self.jobs]
            if names:
                current = self.connection.hmget(K.PERIODIC, names)
                changed: dict[FieldT, EncodableT] = {}
                for job, stored in zip(self.jobs, current):
                    text = json.dumps(job.declaration(), sort_keys=True, separators=(",", ":"))
                    if stored is None or (stored.decode() if isinstance(stored, bytes) else stored) != text:
                        changed[job.name] = text
                if changed:
                    self.connection.hset(K.PERIODIC, mapping=changed)
        except REDIS_ERRORS as exc:
            log.warning("cron scheduler: cannot record the periodic jobs for listings yet: %s", exc)
            return
        self._declared = True

    def _new_job(self, entry: _Entry, tick_ms: int, manual: bool = False) -> T.NewJob:
        job = entry.job
        job_id = job.manual_job_id(tick_ms) if manual else job.job_id(tick_ms)
        data = EnqueueData(job.func, job.args, job.kwargs, job_id=job_id, **job.options)
        return entry.queue._new_job(data)

    def _take_run_now_requests(self) -> None:
        """Offer each pending run-now request to cron_tick.lua ("manual"), which enqueues it exactly once
        whatever the number of schedulers. One pipelined GET per periodic job; a call only when one is set."""
        if not self._entries:
            return
        try:
            pipe = self.connection.pipeline(transaction=False)
            for entry in self._entries:
                pipe.get(entry.queue.keys.cron_run_now(entry.job.name))
            requested = pipe.execute(raise_on_error=False)
        except REDIS_ERRORS as exc:
            log.warning("cron scheduler: cannot read run-now requests: %s", exc)
            return
        offers: list[tuple[_Entry, int]] = []
        for entry, raw in zip(self._entries, requested):
            if raw is None:
                continue
            if isinstance(raw, BaseException):  # e.g. the key edited into a hash: the others still run
                log.warning("periodic job %s: cannot read its run-now request: %s", entry.job.name, raw)
                continue
            try:
                offers.append((entry, int(_text(raw))))
            except ValueError:
                log.warning("periodic job %s: run-now request %r is not a time in ms; ignored", entry.job.name, raw)
        if not offers:
            return
        calls = [T.cron_tick_call(entry.queue.keys, entry.job.name, request_ms, "manual", self.keep_runs,
                                  self._new_job(entry, request_ms, manual=True), True)
                 for entry, request_ms in offers]
        try:
            results = self.store.run_many(calls, raise_on_error=False)
        except REDIS_ERRORS as exc:
            results = [exc] * len(calls)
        for (entry, request_ms), result in zip(offers, results):
            if isinstance(result, BaseException):  # the request stays: offered again at the next look
                log.warning("periodic job %s: cannot take its run-now request (%s: %s)", entry.job.name,
                            type(result).__name__, result)
            elif TR.parse_cron_tick(result).code is TR.CronTickCode.ENQUEUED:
                self.enqueued += 1
                log.info("periodic job %s: run now (requested %s) enqueued as %s in %s", entry.job.name,
                         to_datetime(request_ms).isoformat(), entry.job.manual_job_id(request_ms), entry.job.queue)

    def _offer(self, due: list[tuple[_Entry, int]], measure: bool) -> None:
        calls = [T.cron_tick_call(entry.queue.keys, entry.job.name, tick, entry.mode, self.keep_runs,
                                  self._new_job(entry, tick), entry.job.overlap) for entry, tick in due]
        sent = time.time()
        try:
            results = self.store.run_many(calls, raise_on_error=False)
        except REDIS_ERRORS as exc:  # the pipeline itself failed: every offer is retried
            results = [exc] * len(calls)
        received = time.time()
        for (entry, tick), result in zip(due, results):
            if isinstance(result, BaseException):
                entry.failures += 1
                delay_s = min(30.0, RETRY_S * 2 ** (entry.failures - 1))
                log.warning("periodic job %s: cannot offer tick %s (%s: %s); trying again in %.2g s",
                            entry.job.name, to_datetime(tick).isoformat(), type(result).__name__, result, delay_s)
                entry.next_ms = int((received + delay_s) * 1000) + self._offset_ms.get(entry.job.queue, 0)
                continue
            entry.failures = 0
            reply = TR.parse_cron_tick(result)
            code, server_ms, last = reply.code, reply.now_ms, reply.last_ms
            if measure:
                self._offset_ms[entry.job.queue] = server_ms - int((sent + received) * 500)
            if code is TR.CronTickCode.EARLY:  # our clock ran ahead of the server's: offer it again when it gets there
                entry.next_ms = tick
                continue
            self._settle(entry, tick, code, last)

    def _settle(self, entry: _Entry, tick: int, code: TR.CronTickCode, last: int) -> None:
        job = entry.job
        expected = entry.next_ms
        entry.mode = "fire"
        # Another scheduler may already have taken later ticks (our clock is behind): skip past them.
        entry.next_ms = job.schedule.next_after(max(tick, last))
        when = to_datetime(tick).isoformat()
        if code is TR.CronTickCode.ENQUEUED:
            self.enqueued += 1
            if last >= 0 and job.schedule.next_after(last) < tick:
                log.warning("periodic job %s: ticks after %s were not taken (no scheduler reached Redis); "
                            "ran the latest, %s, once", job.name, to_datetime(last).isoformat(), when)
            elif expected and tick > expected:
                log.warning("periodic job %s: this scheduler fell behind; ran the latest tick %s once",
                            job.name, when)
            log.info("periodic job %s: tick %s enqueued as %s in %s", job.name, when, job.job_id(tick), job.queue)
        elif code is TR.CronTickCode.OVERLAP:
            log.info("periodic job %s: tick %s skipped: its previous run has not ended (overlap=False)",
                     job.name, when)
        elif code is TR.CronTickCode.RECORDED:
            log.info("periodic job %s: starting from tick %s (%s)", job.name, when,
                     "first seen" if last < 0 else "missed ticks not caught up")
        else:
            log.debug("periodic job %s: tick %s was already taken", job.name, when)

    def _server_now_ms(self, queue: str) -> int:
        return int(time.time() * 1000) + self._offset_ms.get(queue, 0)


# --- listing --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PeriodicRun:
    """One run of a periodic job: its tick, its job id, and the job's status now (None: record gone)."""

    tick: datetime
    job_id: str
    status: str | None


@dataclass(frozen=True)
class PeriodicInfo:
    """A periodic job as listings show it. ``late``: its latest tick was not taken (no scheduler ran)."""

    name: str
    queue: str
    func: str
    schedule: str
    last_tick: datetime | None
    next_run: datetime | None
    late: bool
    runs: list[PeriodicRun] = field(default_factory=list)
    #: when an operator asked for a run now that no scheduler has taken yet (None: no request pending)
    run_requested: datetime | None = None


def _text(value: Any) -> str:
    return value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else str(value)


def _schedule_of(spec: dict[str, Any]) -> Schedule | None:
    try:
        if "cron" in spec:
            return CronExpr(spec["cron"], spec.get("tz"))
        return Interval(int(spec["every_ms"]))
    except (CronError, KeyError, TypeError, ValueError):
        return None


def list_periodic(connection: ConnectionLike = None, *, runs: int = 10) -> list[PeriodicInfo]:
    """Every periodic job a scheduler has declared, by name: schedule, next run, recent runs and their
    jobs' statuses. Reads only; the cost is bounded by the number of periodic jobs times ``runs``."""
    client = connect(connection)
    declared = {_text(name): _text(value) for name, value in client.hscan_iter(K.PERIODIC, count=500)}
    now_ms = int(time.time() * 1000)
    infos = []
    for name in sorted(declared):
        try:
            spec = json.loads(declared[name])
            queue = K.validate_queue_name(spec["queue"])
        except (ValueError, KeyError, TypeError):
            continue  # not ours to interpret: skipped rather than failing the whole listing
        qk = K.QueueKeys(queue)
        pipe = client.pipeline(transaction=False)
        pipe.hget(qk.cron, name)
        pipe.lrange(qk.cron_runs(name), 0, max(0, runs - 1))
        pipe.get(qk.cron_run_now(name))
        last_raw, run_entries, requested_raw = pipe.execute()
        recent = []
        for item in run_entries if runs > 0 else []:
            tick_text, _, job_id = _text(item).partition(" ")
            recent.append((int(tick_text), job_id))
        statuses: list[Any] = []
        if recent:
            pipe = client.pipeline(transaction=False)
            for _, job_id in recent:
                pipe.hget(qk.job(job_id), "s")
            statuses = pipe.execute()
        schedule = _schedule_of(spec)
        last = int(last_raw) if last_raw is not None else None
        late = bool(schedule and last is not None
                    and schedule.last_at_or_before(now_ms - LATE_GRACE_MS) > last)
        infos.append(PeriodicInfo(
            name=name, queue=queue, func=str(spec.get("func", "")),
            schedule=schedule.describe() if schedule else "?",
            last_tick=to_datetime(last) if last is not None else None,
            next_run=to_datetime(schedule.next_after(now_ms)) if schedule else None,
            late=late,
            runs=[PeriodicRun(to_datetime(tick), job_id, _text(status) if status is not None else None)
                  for (tick, job_id), status in zip(recent, statuses)],
            run_requested=_request_time(requested_raw),
        ))
    return infos


def _request_time(raw: Any) -> datetime | None:
    try:
        return to_datetime(int(_text(raw))) if raw is not None else None
    except ValueError:
        return None


def run_periodic_now(connection: ConnectionLike, name: str, *, queue: str | None = None) -> bool:
    """Ask the running schedulers to enqueue one extra run of periodic job ``name`` now, with its declared
    arguments and options (signed if the scheduler signs). Returns True when the request was recorded,
    False when one is already pending (a second request does not make a second run). The request waits
    in Redis until a scheduler (``clusterq cron`` or ``worker --with-cron``) declaring ``name`` takes it,
    within about RUN_NOW_POLL_S; exactly one scheduler enqueues it. Raises PeriodicError when no
    scheduler has declared ``name``, or when ``queue`` is given and ``name`` is not in that queue (the
    dashboard checks a per-queue role this way)."""
    client = connect(connection)
    raw = client.hget(K.PERIODIC, name)
    if raw is None:
        raise PeriodicError(f"no periodic job is named {name!r} (a scheduler declares it when it starts)")
    try:
        declared = K.validate_queue_name(json.loads(_text(raw))["queue"])
    except (ValueError, KeyError, TypeError) as exc:
        raise PeriodicError(f"periodic job {name!r} has an unreadable declaration: {exc}") from None
    if queue is not None and queue != declared:
        raise PeriodicError(f"periodic job {name!r} runs in queue {declared!r}, not {queue!r}")
    request_ms = int(time.time() * 1000)
    return bool(client.set(K.QueueKeys(declared).cron_run_now(name), request_ms, nx=True))


def remove_periodic(connection: ConnectionLike, name: str) -> bool:
    """Forget a periodic job no longer declared anywhere: its listing entry, last tick and recent runs
    (the jobs themselves stay). A scheduler that still declares it writes it back when it starts."""
    client = connect(connection)
    raw = client.hget(K.PERIODIC, name)
    if raw is None:
        return False
    try:
        queue = json.loads(_text(raw))["queue"]
        qk = K.QueueKeys(K.validate_queue_name(queue))
        client.hdel(qk.cron, name)
        client.delete(qk.cron_runs(name), qk.cron_run_now(name))
    except (ValueError, KeyError, TypeError):
        pass
    client.hdel(K.PERIODIC, name)
    return True


__all__ = [
    "CronScheduler",
    "Periodic",
    "PeriodicError",
    "PeriodicInfo",
    "PeriodicRun",
    "list_periodic",
    "load_periodic",
    "periodic",
    "registered",
    "remove_periodic",
    "run_periodic_now",
]
