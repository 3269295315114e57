"""Dramatiq on its Redis broker: one process with ``concurrency`` worker threads (8 by default, as the CLI)."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from typing import Any

from .common import paced, timed


def enqueue(params: dict[str, Any]) -> dict[str, Any]:
    from peer_tasks.dramatiq_actors import broker, noop

    broker.client.ping()
    n = int(params["n"])
    return {"seconds": timed(n, noop.send), "n": n}


def latency(params: dict[str, Any]) -> dict[str, Any]:
    from peer_tasks.dramatiq_actors import latency as probe

    paced(int(params["samples"]), float(params["pause_s"]), lambda now: probe.send(now))
    return {}


def worker(params: dict[str, Any], gate: Callable[[], None]) -> dict[str, Any]:
    import dramatiq
    from peer_tasks.dramatiq_actors import broker

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    w = dramatiq.Worker(broker, worker_threads=int(params.get("concurrency") or 8))
    gate()
    w.start()
    stop.wait()
    w.stop(timeout=2000)
    return {}
