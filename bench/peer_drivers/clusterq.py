"""clusterq, from the interpreter that runs the bench (where clusterq is importable).

The worker is the ``clusterq worker`` command line with its defaults (a pool of long-lived child
processes, one per CPU) and ``--import peer_tasks.plain`` (the job module), run in this driver process:
imported before READY, ``main([...])`` after GO.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from clusterq import AsyncQueue, Queue

from .common import concurrent_enqueue, paced, split

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


async def _enqueue_async(params: dict[str, Any]) -> dict[str, Any]:
    queues = [AsyncQueue(name, connection=params["url"]) for name in params["queues"]]
    turn = iter(range(1 << 62))

    async def send() -> None:
        await queues[next(turn) % len(queues)].enqueue(NOOP)

    result = await concurrent_enqueue(int(params["n"]), int(params["tasks"]), send)
    for queue in queues:
        await queue.aclose()
    return result


def enqueue_async(params: dict[str, Any]) -> dict[str, Any]:
    return asyncio.run(_enqueue_async(params))


def latency(params: dict[str, Any]) -> dict[str, Any]:
    queues = _queues(params)
    turn = iter(range(1 << 62))
    paced(int(params["samples"]), float(params["pause_s"]),
          lambda now: queues[next(turn) % len(queues)].enqueue(LATENCY, now))
    return {}


def worker(params: dict[str, Any], gate: Callable[[], None]) -> dict[str, Any]:
    from clusterq.cli.main import main as cli

    # --import: the job module is imported once at start, before the pool forks, as Huey, Celery, Dramatiq
    # and arq import their app module; without it a child imports it on its first job.
    argv = ["worker", "--url", params["url"], "--quiet", "--import", NOOP.rpartition(".")[0]]
    if params.get("pool"):
        argv += ["--pool", str(params["pool"])]
    if params.get("burst"):
        argv.append("--burst")
    if params.get("max_jobs"):
        argv += ["--max-jobs", str(params["max_jobs"])]
    argv += list(params["queues"])
    gate()
    code = cli(argv)
    if code:
        raise SystemExit(f"clusterq worker exited with code {code}")
    return {"done_at": time.time()}
