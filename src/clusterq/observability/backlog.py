"""A queue's backlog read from O(1) counters: jobs by state, the oldest waiting job's age, the due
scheduled jobs; and the autoscaling answer built on it. No optional library needed (the Prometheus
collectors over it are in :mod:`clusterq.observability.queues`; the dashboard's ``/api/autoscale`` serves
:func:`autoscale`).

Every queue's counters are read in one pipeline: one round trip per node, whatever the number of jobs;
the oldest waiting age takes a second one (the head job's enqueue time, one HGET per queue).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from clusterq.state import keys as K

STATES = ("waiting", "running", "scheduled", "deferred", "failed", "finished", "canceled")
"""The ``state`` label values of ``clusterq_queue_jobs``."""


@dataclass
class QueueGauge:
    """One queue's counts by state (:data:`STATES`) and its oldest waiting job's age (None: none waits)."""

    queue: str
    jobs: dict[str, int] = field(default_factory=dict)
    oldest_waiting_s: float | None = None
    due_scheduled: int = 0  # scheduled jobs already due (promoted at the next maintenance): work to do now


def _int(value: Any) -> int:
    return int(value) if value is not None else 0


def read_queue_gauges(connection: Any, queues: Sequence[str]) -> list[QueueGauge]:
    """The gauges of ``queues``: one pipelined round trip per node for the counts, one for the ages."""
    if not queues:
        return []
    pipe = connection.pipeline(transaction=False)
    keys = [K.QueueKeys(K.validate_queue_name(q)) for q in queues]
    now_ms = int(time.time() * 1000)
    for qk in keys:
        pipe.llen(qk.pending)
        pipe.zcard(qk.prio)
        pipe.hmget(qk.stats, ("tomb", "lwait"))
        for key in (qk.active, qk.scheduled, qk.deferred, qk.failed, qk.finished, qk.canceled):
            pipe.zcard(key)
        pipe.lindex(qk.pending, 0)
        pipe.zrange(qk.prio, 0, 0)
        pipe.zcount(qk.scheduled, "-inf", now_ms)  # O(log n): due but not yet promoted
    replies = pipe.execute()
    gauges, heads = [], []
    per = 12
    for i, qk in enumerate(keys):
        length, prio, (tomb, aside), active, scheduled, deferred, failed, finished, canceled, head, top, due = \
            replies[i * per:(i + 1) * per]
        waiting = max(0, _int(length) + _int(prio) + _int(aside) - _int(tomb))
        gauges.append(QueueGauge(qk.name, dict(zip(STATES, (waiting, active, scheduled, deferred, failed,
                                                            finished, canceled))), due_scheduled=_int(due)))
        first = head if head is not None else (top[0] if top else None)
        heads.append(None if first is None or not waiting else
                     first.decode() if isinstance(first, bytes) else str(first))
    if any(heads):
        pipe = connection.pipeline(transaction=False)
        asked = [(g, qk, h) for g, qk, h in zip(gauges, keys, heads) if h]
        for _, qk, head_id in asked:
            pipe.hget(qk.job(head_id), "c")  # enqueued at (ms, server clock)
        now_ms = int(time.time() * 1000)
        for (gauge, _, _), created in zip(asked, pipe.execute()):
            if created is not None:  # a canceled head (a tombstone) has no record: no age this scrape
                gauge.oldest_waiting_s = max(0.0, (now_ms - float(created)) / 1000)
    return gauges


def autoscale(connection: Any, queues: Sequence[str]) -> dict[str, Any]:
    """What an autoscaler needs for a set of queues (the ones a worker deployment serves), in the JSON
    shape KEDA's ``metrics-api`` scaler reads (``valueLocation: value``): ``value`` is waiting + running +
    due-scheduled jobs (running ones count, so scaling in never treats a busy pod as idle), with each part
    and the oldest waiting age beside it. Same cost as a scrape: one round trip per node (two with ages)."""
    gauges = read_queue_gauges(connection, queues)
    waiting = sum(g.jobs["waiting"] for g in gauges)
    running = sum(g.jobs["running"] for g in gauges)
    due = sum(g.due_scheduled for g in gauges)
    ages = [g.oldest_waiting_s for g in gauges if g.oldest_waiting_s is not None]
    return {"queues": [g.queue for g in gauges], "value": waiting + running + due, "waiting": waiting,
            "running": running, "due_scheduled": due, "oldest_waiting_s": round(max(ages), 3) if ages else 0.0}


__all__ = ["STATES", "QueueGauge", "autoscale", "read_queue_gauges"]
