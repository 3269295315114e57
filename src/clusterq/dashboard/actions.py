"""What the dashboard's buttons do, and the audit log that records each of them.

Every action goes through the public API (Job.requeue/cancel/delete/stop, Queue.suspend/resume/empty,
Registry.clear). Bulk requeues run in batches of :data:`BATCH`, each batch one short request per job,
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
from clusterq.state import keys as K

AUDIT_KEEP = 1000
"""Audit records kept (the list is trimmed to this length on every write)."""
BATCH = 100
BULK_LIMIT = SCAN_BUDGET

ACTION_ROLES = {
    "requeue": "operator", "cancel": "operator", "stop": "operator", "suspend": "operator",
    "resume": "operator", "requeue-failed": "operator", "delete": "admin", "empty": "admin",
}
"""The least role allowed each action."""


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
