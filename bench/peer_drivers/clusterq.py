"""clusterq, from the interpreter that runs the bench (where clusterq is importable)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from clusterq import Queue, Worker

from .common import paced, split

NOOP = "peer_tasks.plain.noop"
LATENCY = "peer_tasks.plain.latency"


def _queues(params: dict[str, Any]) -> list[Queue]:
    return [Queue(name, connection=params["url"]) for name in params["queues"]]


def enqueue(params: dict[str, Any]) -> dict[str, Any]:
    queues = _queues(params)
    n = int(params["n"])
    chunk = int(params.get("chunk") or n or 1)
    started = time.perf_counter()
    if params.get("bulk"):
        for queue, count in zip(queues, split(n, len(queues))):
            for first in range(0, count, chunk):
                size = min(chunk, count - first)
                queue.enqueue_many([queue.prepare_data(NOOP) for _ in range(size)])
    else:
        for i in range(n):
            queues[i % len(queues)].enqueue(NOOP)
    return {"seconds": time.perf_counter() - started, "n": n}


def latency(params: dict[str, Any]) -> dict[str, Any]:
    queues = _queues(params)
    turn = iter(range(1 << 62))
    paced(int(params["samples"]), float(params["pause_s"]),
          lambda now: queues[next(turn) % len(queues)].enqueue(LATENCY, now))
    return {}


def worker(params: dict[str, Any], gate: Callable[[], None]) -> dict[str, Any]:
    # One OS process per "worker process", like Celery solo and RQ SimpleWorker: the solo pool runs jobs in
    # the supervisor itself (the default process pool would fork children of its own).
    w = Worker(params["queues"], connection=params["url"], pool=params.get("pool", "solo"))
    gate()
    processed = w.work(burst=bool(params.get("burst")), max_jobs=params.get("max_jobs"))
    return {"done_at": time.time(), "processed": processed}
