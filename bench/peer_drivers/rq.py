"""RQ: the forking ``Worker`` (variant "fork") or ``SimpleWorker`` (variant "simple")."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from redis import Redis
from rq import Queue, SimpleWorker
from rq import Worker as ForkWorker

from .common import paced, timed

NOOP = "peer_tasks.plain.noop"
LATENCY = "peer_tasks.plain.latency"


def _queue(params: dict[str, Any]) -> Queue:
    connection = Redis.from_url(params["url"])
    connection.ping()
    return Queue(params["queues"][0], connection=connection)


def enqueue(params: dict[str, Any]) -> dict[str, Any]:
    queue = _queue(params)
    n = int(params["n"])
    if params.get("bulk"):
        started = time.perf_counter()
        queue.enqueue_many([Queue.prepare_data(NOOP) for _ in range(n)])
        seconds = time.perf_counter() - started
    else:
        seconds = timed(n, lambda: queue.enqueue(NOOP))
    return {"seconds": seconds, "n": n}


def latency(params: dict[str, Any]) -> dict[str, Any]:
    queue = _queue(params)
    paced(int(params["samples"]), float(params["pause_s"]), lambda now: queue.enqueue(LATENCY, now))
    return {}


def worker(params: dict[str, Any], gate: Callable[[], None]) -> dict[str, Any]:
    queue = _queue(params)
    cls = SimpleWorker if params.get("variant") == "simple" else ForkWorker
    w = cls([queue], connection=queue.connection)
    gate()
    w.work(burst=bool(params.get("burst")), logging_level="WARNING")
    return {"done_at": time.time(), "processed": w.successful_job_count}
