"""Huey's consumer with its defaults: one worker thread, blocking reads, the periodic scheduler on."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .common import paced, timed


def enqueue(params: dict[str, Any]) -> dict[str, Any]:
    from peer_tasks.huey_app import huey, noop

    huey.storage.conn.ping()
    n = int(params["n"])
    return {"seconds": timed(n, noop), "n": n}


def latency(params: dict[str, Any]) -> dict[str, Any]:
    from peer_tasks.huey_app import latency as probe

    paced(int(params["samples"]), float(params["pause_s"]), probe)
    return {}


def worker(params: dict[str, Any], gate: Callable[[], None]) -> dict[str, Any]:
    from peer_tasks.huey_app import huey

    consumer = huey.create_consumer(workers=int(params.get("concurrency") or 1), worker_type="thread")
    gate()
    consumer.run()
    return {}
