"""What the pages show, read through the public query API. Every read is bounded: pages of at most
:data:`PAGE_SIZE` entries, at most :data:`MAX_QUEUES` queues on the overview, and searches that check at
most :data:`SCAN_BUDGET` entries per request and say when they stopped early."""

from __future__ import annotations

import json
import pprint
import reprlib
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from redis.cluster import RedisCluster

from clusterq.api.control import is_suspended as globally_suspended
from clusterq.api.history import Bucket, queue_history
from clusterq.api.job import Job, parse_handle
from clusterq.api.queue import Queue
from clusterq.api.summaries import JobSummary, summarize
from clusterq.connection.server_checks import memory_of_primaries, server_warnings
from clusterq.connection.sync import REDIS_ERRORS, Client, describe, topology_of
from clusterq.exceptions import ClusterQError, NoSuchJobError
from clusterq.scheduling.periodic import PeriodicInfo, list_periodic
from clusterq.state import keys as K
from clusterq.worker.registration import WorkerInfo, list_workers

PAGE_SIZE = 50
MAX_QUEUES = 500
SCAN_BUDGET = 2000
MAX_SHOWN_CHARS = 20_000
"""Arguments, results, meta and tracebacks longer than this are cut on the page (a 10 MB argument)."""

DEPENDENTS_SHOWN = 100
PRETTY_BELOW = 4000
_BOUNDED = reprlib.Repr()
"""A repr that stops early: a 10 MB argument costs the page a few milliseconds, not a full repr."""
_BOUNDED.maxstring = _BOUNDED.maxother = MAX_SHOWN_CHARS + 100
_BOUNDED.maxlist = _BOUNDED.maxtuple = _BOUNDED.maxdict = _BOUNDED.maxset = 500
_BOUNDED.maxlevel = 8
_BOUNDED.maxlong = 400

STATES = ("waiting", "scheduled", "active", "deferred", "failed", "finished", "canceled")
"""The dashboard's names for a queue's lists; ``active`` is the started registry, ``waiting`` the queue."""
REGISTRY_OF = {"scheduled": "scheduled", "active": "started", "deferred": "deferred", "failed": "failed",
               "finished": "finished", "canceled": "canceled"}


HISTORY_WINDOWS = {"hour": (3600, 60), "day": (86_400, 900), "week": (7 * 86_400, 3600)}
"""Chart windows: (window, bucket width) in seconds."""
MAX_HISTORY_READS = 20 * 7 * 48
"""At most this many half-hour history hashes read for one chart (twenty queues' week, 120 fields at most
each): more queues are left out, and the page says so."""


@dataclass
class History:
    window: str
    bucket_s: int
    buckets: list[Bucket]
    queues: int  # how many queues the chart sums
    left_out: int  # queues left out to stay within MAX_HISTORY_READS

    @property
    def totals(self) -> dict[str, int]:
        return {kind: sum(getattr(b, kind) for b in self.buckets)
                for kind in ("enqueued", "finished", "failed", "retried")}


def history(client: Client, names: list[str], window: str) -> History:
    """The summed per-minute counts of ``names`` over ``window`` (hour, day or week), bounded reads."""
    if window not in HISTORY_WINDOWS:
        raise ValueError(f"unknown window {window!r}; expected one of {', '.join(HISTORY_WINDOWS)}")
    window_s, bucket_s = HISTORY_WINDOWS[window]
    keep = max(1, MAX_HISTORY_READS // (window_s // K.HISTORY_KEY_S + 3))
    shown = names[:keep]
    return History(window, bucket_s, queue_history(client, shown, window_s, bucket_s), len(shown),
                   len(names) - len(shown))


def oldest_waiting_age_s(queue: Queue) -> float | None:
    """Seconds since the job at the head of the queue was created (None: nothing waits). Reads one id and
    one record: the head is the oldest job in run order (a job put at the front may be younger)."""
    ids = queue.get_job_ids(0, 1)
    if not ids:
        return None
    summaries = summarize(queue, ids)
    created = summaries[0].created_at if summaries else None
    return None if created is None else max(0.0, time.time() - created.timestamp())


def queue_counts(queue: Queue) -> dict[str, int]:
    """Each state's count: O(1) or O(log N) each, no write."""
    counts = {"waiting": queue.count}
    for state, registry in REGISTRY_OF.items():
        counts[state] = queue.registry(registry).count
    return counts


def primary_of(client: Client, slot: int, single: str | None) -> str:
    """The address of the primary holding ``slot`` (read from the client's slot map, no command)."""
    if isinstance(client, RedisCluster):
        try:
            return str(client.nodes_manager.get_node_from_slot(slot).name)
        except Exception:  # slot map being refreshed: say so rather than fail the page
            return "?"
    return single or "?"


@dataclass
class QueueRow:
    name: str
    counts: dict[str, int]
    slot: int
    primary: str
    suspended: bool


@dataclass
class Overview:
    server: str
    topology: str
    nodes: list[str]
    warnings: list[str]
    queues: list[QueueRow]
    more_queues: bool
    workers: list[WorkerInfo]
    suspended_all: bool
    periodic: int
    history: History | None = None


def live_counts(client: Client) -> dict[str, Any]:
    """What the live ticker sends: counts per queue, the number of workers, the global suspend flag."""
    queues = Queue.all(client)[:MAX_QUEUES]
    return {
        "queues": {q.name: queue_counts(q) for q in queues},
        "workers": len(list_workers(client)),
        "suspended_all": globally_suspended(client),
        "at": time.time(),
    }


def overview(client: Client, window: str = "hour") -> Overview:
    try:
        memory = memory_of_primaries(client)
    except REDIS_ERRORS:
        memory = []  # INFO refused: server_warnings says so
    single = memory[0].node if len(memory) == 1 else None
    queues = Queue.all(client)
    rows = [QueueRow(q.name, queue_counts(q), q.slot, primary_of(client, q.slot, single), q.is_suspended)
            for q in queues[:MAX_QUEUES]]
    return Overview(describe(client), topology_of(client), [m.describe() for m in memory], server_warnings(client),
                    rows, len(queues) > MAX_QUEUES, list_workers(client), globally_suspended(client),
                    len(list_periodic(client, runs=0)), history(client, [q.name for q in queues[:MAX_QUEUES]], window))


@dataclass
class QueuePage:
    name: str
    state: str
    page: int
    counts: dict[str, int]
    jobs: list[JobSummary]
    scores: dict[str, float | None]
    suspended: bool
    rate_limit: tuple[int, float] | None
    concurrency_limits: dict[str | None, int]
    slot: int
    has_next: bool
    primary: str = "?"
    history: History | None = None
    oldest_age_s: float | None = None


def queue_page(client: Client, name: str, state: str, page: int, window: str = "hour") -> QueuePage:
    queue = Queue(name, client)
    if state not in STATES:
        raise ValueError(f"unknown state {state!r}; expected one of {', '.join(STATES)}")
    offset = (page - 1) * PAGE_SIZE
    if state == "waiting":
        ids = queue.get_job_ids(offset, PAGE_SIZE + 1)
        registry = None
    else:
        registry = queue.registry(REGISTRY_OF[state])
        ids = registry.get_job_ids(offset, PAGE_SIZE + 1)
    has_next = len(ids) > PAGE_SIZE
    ids = ids[:PAGE_SIZE]
    scores: dict[str, float | None] = {}
    if registry is not None:
        pipe = client.pipeline(transaction=False)
        for job_id in ids:
            pipe.zscore(registry.key, job_id)
        for job_id, score in zip(ids, pipe.execute() if ids else []):
            scores[job_id] = None if score is None or score == float("inf") else float(score) / 1000
    single = None if isinstance(client, RedisCluster) else _single_primary(client)
    return QueuePage(name, state, page, queue_counts(queue), summarize(queue, ids), scores, queue.is_suspended,
                     queue.rate_limit, queue.concurrency_limits, queue.slot, has_next,
                     primary_of(client, queue.slot, single), history(client, [name], window),
                     oldest_waiting_age_s(queue))


def _single_primary(client: Client) -> str | None:
    try:
        memory = memory_of_primaries(client)
    except REDIS_ERRORS:
        return None
    return memory[0].node if memory else None


def shown(value: Any, redact: bool = False) -> str:
    """A value as the page shows it: pretty, cut at :data:`MAX_SHOWN_CHARS`, or redacted."""
    if redact:
        return "(redacted)"
    try:
        text = value if isinstance(value, str) else _BOUNDED.repr(value)
        if not isinstance(value, str) and len(text) < PRETTY_BELOW and "..." not in text:  # small and whole
            text = pprint.pformat(value, width=100, compact=True)
    except Exception as exc:  # a repr that raises
        text = f"(cannot show: {type(exc).__name__})"
    if len(text) > MAX_SHOWN_CHARS:
        text = text[:MAX_SHOWN_CHARS] + "\n... (cut here: the rest is not shown)"
    return text


def _safely(read: Any) -> Any:
    try:
        return read()
    except Exception as exc:  # a record edited into garbage: one field unreadable, the page still shows
        return f"(unreadable: {type(exc).__name__}: {exc})"


def _listed(value: Any) -> list[str]:
    return [str(v) for v in value] if isinstance(value, (list, tuple)) else []


@dataclass
class JobView:
    handle: str
    queue: str
    id: str
    status: str | None
    func_name: str
    args: str
    kwargs: str
    fields: list[tuple[str, Any]]
    exc_info: str | None
    results: list[dict[str, Any]]
    progress: str | None
    meta: str
    dependencies: list[str]
    options: str
    can_stop: bool
    can_requeue: bool
    can_cancel: bool
    extra: dict[str, Any] = field(default_factory=dict)
    dependents: list[str] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)


def job_view(client: Client, handle: str, redact_args: bool) -> JobView | None:
    try:
        queue_name, job_id = parse_handle(handle)
        K.validate_queue_name(queue_name)
    except ClusterQError:
        return None
    job = Job(queue_name, job_id, client)
    try:
        job.refresh()
    except NoSuchJobError:
        return None
    status = _safely(lambda: job.get_status(refresh=False))
    status_text = getattr(status, "value", None) if status is not None else None
    results = []
    found = _safely(job.results)
    for result in found if isinstance(found, list) else []:
        results.append({"type": getattr(result.type, "name", str(result.type)).lower(),
                        "created_at": result.created_at,
                        "value": shown(result.return_value, redact_args) if result.return_value is not None else "",
                        "exc": shown(result.exc_string) if result.exc_string else ""})
    progress = _safely(lambda: job.progress)
    progress_text = None
    if progress is not None and not isinstance(progress, str):
        progress_text = shown(progress.value) + (f" ({progress.message})" if progress.message else "")
    fields = [("status", status_text or "unknown"), ("attempts", _safely(lambda: job.attempts)),
              ("retries", _safely(lambda: job.retries)), ("retries left", _safely(lambda: job.retries_left)),
              ("worker", _safely(lambda: job.worker_name)), ("created", _safely(lambda: job.created_at)),
              ("started", _safely(lambda: job.started_at)), ("ended", _safely(lambda: job.ended_at)),
              ("timeout", _safely(lambda: job.timeout))]
    exc = _safely(lambda: job.exc_info)
    dependents = _safely(lambda: job.dependents(DEPENDENTS_SHOWN))
    return JobView(
        handle=job.handle, queue=queue_name, id=job_id, status=status_text,
        func_name=_safely(lambda: job.func_name),
        args=shown(_safely(lambda: job.args), redact_args), kwargs=shown(_safely(lambda: job.kwargs), redact_args),
        fields=fields, exc_info=shown(exc) if exc else None, results=results, progress=progress_text,
        meta=shown(_safely(lambda: job.meta), redact_args),
        dependencies=_listed(_safely(lambda: job.dependency_handles)),
        options=shown(_safely(job._options)),
        can_stop=status_text == "started",
        can_requeue=status_text in ("failed", "canceled", "finished", "stopped"),
        can_cancel=status_text in ("queued", "scheduled", "deferred", "started"),
        dependents=dependents[0] if isinstance(dependents, tuple) else [],
        groups=dependents[1] if isinstance(dependents, tuple) else [],
    )


@dataclass
class SearchResult:
    jobs: list[JobSummary]
    checked: int
    next_offset: int | None
    """Where to go on when the budget ran out before the end (None: the whole list was searched)."""


def find_jobs(client: Client, queue_name: str, state: str, func: str, offset: int = 0,
              budget: int = SCAN_BUDGET, limit: int = PAGE_SIZE) -> SearchResult:
    """Jobs of one queue and state whose function is ``func`` (exact; empty: any), checking at most
    ``budget`` entries from ``offset``."""
    queue = Queue(queue_name, client)
    if state not in STATES:
        raise ValueError(f"unknown state {state!r}; expected one of {', '.join(STATES)}")
    found: list[JobSummary] = []
    checked = 0
    position = offset
    while checked < budget and len(found) < limit:
        size = min(500, budget - checked)
        if state == "waiting":
            ids = queue.get_job_ids(position, size)
        else:
            ids = queue.registry(REGISTRY_OF[state]).get_job_ids(position, size)
        if not ids:
            return SearchResult(found, checked, None)
        for summary in summarize(queue, ids):
            position += 1
            checked += 1
            if not func or summary.func_name == func:
                found.append(summary)
                if len(found) >= limit:
                    break
        if len(ids) < size:
            return SearchResult(found, checked, None)
    return SearchResult(found, checked, position)


def lookup(client: Client, text: str) -> str | None:
    """The handle of the job named by ``text`` (a handle, or an id looked up through the known queues)."""
    text = text.strip()
    if not text:
        return None
    try:
        job = Job.fetch(text, client)
    except (ClusterQError, ValueError):
        return None
    return job.handle


def workers(client: Client) -> list[WorkerInfo]:
    return list_workers(client)


def periodic(client: Client) -> list[PeriodicInfo]:
    return list_periodic(client, runs=10)


def heartbeat_age_s(worker: WorkerInfo) -> float:
    return max(0.0, time.time() - worker.last_heartbeat_ms / 1000)


def fmt_time(value: Any) -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, (int, float)):
        value = datetime.fromtimestamp(value, tz=timezone.utc)
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    return str(value)


def fmt_age(seconds: float | None) -> str:
    """An age as the page shows it: "", "42 s", "7 min", "3.5 h", "2.1 d"."""
    if seconds is None:
        return ""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172_800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86_400:.1f} d"


def fmt_value(value: Any) -> str:
    """A field of the job page: times as UTC, nothing for None, anything else as text."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return fmt_time(value)
    return str(value)


def as_json(value: Any) -> str:
    return json.dumps(value, default=str)
