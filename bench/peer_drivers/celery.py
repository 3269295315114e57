"""Celery on the Redis broker: pool "solo" or "prefork" (``concurrency`` children).

Mingle, gossip and worker heartbeats are turned off: they only matter with several workers talking to
each other, and mingle alone adds a second of start-up to every run.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from .common import paced, timed


def enqueue(params: dict[str, Any]) -> dict[str, Any]:
    from celery import group
    from peer_tasks.celery_app import app, noop

    n = int(params["n"])
    with app.connection_for_write() as conn:
        conn.ensure_connection()
    noop.delay()  # connect the producer pool; this job is counted in n
    if params.get("bulk"):
        started = time.perf_counter()
        group(noop.s() for _ in range(n - 1)).apply_async()
        seconds = time.perf_counter() - started
    else:
        seconds = timed(n - 1, noop.delay)
    return {"seconds": seconds, "n": n - 1}


def latency(params: dict[str, Any]) -> dict[str, Any]:
    from peer_tasks.celery_app import latency as probe

    paced(int(params["samples"]), float(params["pause_s"]), lambda now: probe.delay(now))
    return {}


def worker(params: dict[str, Any], gate: Callable[[], None]) -> dict[str, Any]:
    from peer_tasks.celery_app import app

    w = app.Worker(
        pool=params.get("variant") or "solo",
        concurrency=int(params.get("concurrency") or 1),
        loglevel="WARNING",
        without_mingle=True,
        without_gossip=True,
        without_heartbeat=True,
        quiet=True,
    )
    gate()
    w.start()
    return {}
