"""A queue's backlog read from O(1) counters: jobs by state, the oldest waiting job's age, the due
scheduled jobs; and the autoscaling answer built on it. No optional library needed (the Prometheus
collectors over it are in :mod:`clusterq.observability.queues`; the dashboard's ``/api/autoscale`` serves
:func:`autoscale`).

Every queue's counters and its oldest waiting job's enqueue time are read by one read-only script call
(``gauges.lua``) per queue, all in one pipeline: one round trip per node, whatever the number of jobs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from clusterq.state import keys as K
from clusterq.state import store as T
from clusterq.state import transitions as TR

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
    """The gauges of ``queues``: one ``gauges.lua`` call per queue, all in one pipelined round trip per
    node (the oldest waiting age included: the script reads the head job's enqueue time)."""
    if not queues:
        return []
    keys = [K.QueueKeys(K.validate_queue_name(q)) for q in queues]
    store = T.Store(connection)
    replies = store.run_many([TR.GAUGES.call(qk) for qk in keys])
    gauges = []
    for qk, reply in zip(keys, replies):
        (length, prio, tomb, aside, active, scheduled, deferred, failed, finished, canceled, due, created,
         now_ms) = (_int(v) for v in reply)
        waiting = max(0, length + prio + aside - tomb)
        gauge = QueueGauge(qk.name, dict(zip(STATES, (waiting, active, scheduled, deferred, failed, finished,
                                                      canceled))), due_scheduled=due)
        if waiting and created >= 0:  # a canceled head (a tombstone) has no record: no age this scrape
            gauge.oldest_waiting_s = max(0.0, (now_ms - created) / 1000)
        gauges.append(gauge)
    return gauges


def autoscale(connection: Any, queues: Sequence[str]) -> dict[str, Any]:
    """What an autoscaler needs for a set of queues (the ones a worker deployment serves), in the JSON
    shape KEDA's ``metrics-api`` scaler reads (``valueLocation: value``): ``value`` is waiting + running +
    due-scheduled jobs (running ones count, so scaling in never treats a busy pod as idle), with each part
    and the oldest waiting age beside it. Same cost as a scrape: one round trip per node."""
    gauges = read_queue_gauges(connection, queues)
    waiting = sum(g.jobs["waiting"] for g in gauges)
    running = sum(g.jobs["running"] for g in gauges)
    due = sum(g.due_scheduled for g in gauges)
    ages = [g.oldest_waiting_s for g in gauges if g.oldest_waiting_s is not None]
    return {"queues": [g.queue for g in gauges], "value": waiting + running + due, "waiting": waiting,
            "running": running, "due_scheduled": due, "oldest_waiting_s": round(max(ages), 3) if ages else 0.0}


__all__ = ["STATES", "QueueGauge", "autoscale", "read_queue_gauges"]
