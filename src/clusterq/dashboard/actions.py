"""What the dashboard's buttons do, and the audit log that records each of them.

Every action goes through the public API (Job.requeue/cancel/delete/stop, Queue.suspend/resume/empty,
Registry.clear, run_periodic_now). Bulk requeues run in batches of :data:`BATCH`, each batch one short request per job,
so Redis is never blocked; a request handles at most :data:`BULK_LIMIT` jobs and says how many remain.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from clusterq.api.control import resume as resume_all
from clusterq.api.control import suspend as suspend_all
from clusterq.api.job import Job, parse_handle
from clusterq.api.queue import Queue
from clusterq.connection.sync import Client
from clusterq.dashboard.data import SCAN_BUDGET, find_jobs
from clusterq.exceptions import ClusterQError
from clusterq.scheduling.periodic import run_periodic_now
from clusterq.state import keys as K

AUDIT_KEEP = 1000
"""Audit records kept (the list is trimmed to this length on every write)."""
BATCH = 100
BULK_LIMIT = SCAN_BUDGET

ACTION_ROLES = {
    "requeue": "operator", "cancel": "operator", "stop": "operator", "suspend": "operator",
    "resume": "operator", "requeue-failed": "operator", "run-now": "operator", "delete": "admin", "empty": "admin",
    "limits": "admin",
}
"""The least role allowed each action."""


def target_queue(queue: str | None, job: str | None) -> str | None:
    """The queue an action acts on: ``queue``, or the queue of the job handle ``job`` (None: every queue,
    or a handle that names none: then only an unscoped principal may act, and the API refuses it)."""
    if queue:
        return queue
    if job:
        try:
            return parse_handle(job)[0]
        except (ValueError, ClusterQError):
            return None
    return None


@dataclass(frozen=True)
class Outcome:
    message: str
    count: int
    ok: bool = True


def record(client: Client, who: str, action: str, target: str, count: int, ok: bool, detail: str = "") -> None:
    entry = {"t": time.time(), "who": who, "action": action, "target": target, "count": count, "ok": ok,
             "detail": detail[:500]}
    pipe = client.pipeline(transaction=False)
    pipe.lpush(K.AUDIT, json.dumps(entry))
    pipe.ltrim(K.AUDIT, 0, AUDIT_KEEP - 1)
    pipe.execute()


def audit_log(client: Client, limit: int = 200) -> list[dict[str, Any]]:
    entries = []
    for raw in client.lrange(K.AUDIT, 0, min(limit, AUDIT_KEEP) - 1):
        try:
            entries.append(json.loads(raw))
        except ValueError:
            continue
    return entries


def job_action(client: Client, action: str, handle: str) -> Outcome:
    queue, job_id = parse_handle(handle)
    job = Job(queue, job_id, client)
    if action == "requeue":
        job.requeue()
        return Outcome(f"requeued {handle}", 1)
    if action == "cancel":
        job.cancel()
        return Outcome(f"canceled {handle}", 1)
    if action == "stop":
        job.stop("stopped from the dashboard")
        return Outcome(f"asked the worker to stop {handle}", 1)
    if action == "delete":
        job.delete()
        return Outcome(f"deleted {handle}", 1)
    raise ValueError(f"unknown job action {action!r}")


def queue_action(client: Client, action: str, queue_name: str | None) -> Outcome:
    if action in ("suspend", "resume") and not queue_name:
        (suspend_all if action == "suspend" else resume_all)(client)
        return Outcome(f"{action}ed every queue" if action == "resume" else "suspended every queue", 0)
    if not queue_name:
        raise ValueError("name the queue")
    queue = Queue(queue_name, client)
    if action == "suspend":
        queue.suspend()
        return Outcome(f"suspended {queue_name!r}", 0)
    if action == "resume":
        queue.resume()
        return Outcome(f"resumed {queue_name!r}", 0)
    raise ValueError(f"unknown queue action {action!r}")


def run_now(client: Client, name: str, queue_name: str) -> Outcome:
    """Ask the schedulers for one extra run of periodic job ``name`` (of ``queue_name``, whose role was
    checked). Only a scheduler has the job's arguments and signing key, so this records a request that
    the first scheduler to look takes; without one running it waits."""
    if not name:
        raise ValueError("name the periodic job")
    if run_periodic_now(client, name, queue=queue_name or None):
        return Outcome(f"asked for a run of {name!r} now: a running scheduler (clusterq cron or worker "
                       "--with-cron) enqueues it within a second or so; if none runs, the request waits for one", 1)
    return Outcome(f"a run of {name!r} is already requested and waiting for a scheduler: not asked twice", 0)


def _number(text: str, kind: type, what: str) -> Any:
    try:
        return kind(text)
    except ValueError:
        raise ValueError(f"{what} must be a number, got {text!r}") from None


def set_limits(client: Client, queue_name: str, form: dict[str, str]) -> Outcome:
    """Set or remove the queue's rate limit (fields ``rate_jobs``, ``rate_per_s``; both empty: remove) and,
    when ``concurrency_key`` or ``concurrency`` is given, one concurrency limit (empty key: the default;
    empty limit: remove it), through Queue.set_rate_limit / remove_rate_limit / set_concurrency_limit."""
    if not queue_name:
        raise ValueError("name the queue")
    queue = Queue(queue_name, client)
    jobs, per_s = form.get("rate_jobs", "").strip(), form.get("rate_per_s", "").strip()
    done = []
    current = queue.rate_limit
    if jobs or per_s:
        wanted = (_number(jobs, int, "rate: jobs"), _number(per_s or "1", float, "per seconds"))
        if current is None or (current[0], current[1]) != wanted:  # unchanged: its window is not restarted
            queue.set_rate_limit(*wanted)
        done.append(f"rate limit {jobs} per {per_s or '1'} s")
    else:
        if current is not None:
            queue.remove_rate_limit()
        done.append("no rate limit")
    key, limit = form.get("concurrency_key", "").strip(), form.get("concurrency", "").strip()
    if key or limit:
        queue.set_concurrency_limit(key or None, _number(limit, int, "limit") if limit else None)
        done.append(f"concurrency {key or 'default'}={limit or 'none'}")
    return Outcome(f"{queue_name!r}: " + ", ".join(done), 0)


def empty(client: Client, queue_name: str, state: str) -> Outcome:
    queue = Queue(queue_name, client)
    if state == "waiting":
        n = queue.empty()  # bounded batches inside
    elif state in ("failed", "finished", "canceled"):
        n = queue.registry(state).clear()
    else:
        raise ValueError(f"only the waiting list and the failed, finished and canceled registries can be "
                         f"emptied here, not {state!r}")
    return Outcome(f"removed {n} job(s) from {queue_name!r} ({state})", n)


def matching_failed(client: Client, queue_name: str, func: str) -> tuple[list[str], bool]:
    """Ids of failed jobs of ``queue_name`` whose function is ``func`` (empty: any); True if the scan
    budget ran out before the end of the registry."""
    ids: list[str] = []
    offset = 0
    while len(ids) < BULK_LIMIT:
        found = find_jobs(client, queue_name, "failed", func, offset, SCAN_BUDGET, limit=BULK_LIMIT - len(ids))
        ids += [s.id for s in found.jobs]
        if found.next_offset is None:
            return ids, False
        offset = found.next_offset
        if found.checked >= SCAN_BUDGET:
            return ids, True
    return ids, True


def requeue_failed(client: Client, queue_name: str, ids: list[str]) -> int:
    """Requeue these failed jobs in batches of :data:`BATCH`; jobs no longer failed are skipped."""
    registry = Queue(queue_name, client).failed_job_registry
    done = 0
    for start in range(0, len(ids), BATCH):
        done += registry.requeue(*ids[start:start + BATCH])
    return done
