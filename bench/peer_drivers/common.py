"""Loops shared by the system drivers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any


def timed(n: int, send: Callable[[], Any]) -> float:
    """Seconds taken by ``n`` calls of ``send()``."""
    started = time.perf_counter()
    for _ in range(n):
        send()
    return time.perf_counter() - started


def paced(samples: int, pause_s: float, send: Callable[[float], Any]) -> None:
    """Call ``send(time.time())`` ``samples`` times, ``pause_s`` apart (the latency probe loop)."""
    for _ in range(samples):
        send(time.time())
        time.sleep(pause_s)


def split(n: int, parts: int) -> list[int]:
    """``n`` as ``parts`` near-equal counts."""
    return [n // parts + (1 if i < n % parts else 0) for i in range(parts)]


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, max(0, round(q / 100 * (len(sorted_values) - 1))))
    return sorted_values[index]


async def concurrent_enqueue(n: int, tasks: int, send: Callable[[], Awaitable[Any]]) -> dict[str, Any]:
    """``n`` awaited ``send()`` calls from ``tasks`` concurrent asyncio tasks; each task first sends one
    untimed job (opening its connection, loading scripts), then its share of ``n``, timing every call.

    Returns the seconds for the ``n`` timed jobs and the per-call latency percentiles (ms).
    """
    await asyncio.gather(*(send() for _ in range(tasks)))  # warm-up: connections and scripts
    latencies: list[float] = []

    async def loop(count: int) -> None:
        for _ in range(count):
            began = time.perf_counter()
            await send()
            latencies.append(time.perf_counter() - began)

    started = time.perf_counter()
    await asyncio.gather(*(loop(count) for count in split(n, tasks)))
    seconds = time.perf_counter() - started
    latencies.sort()
    return {"seconds": seconds, "n": n, "warmup_jobs": tasks,
            "p50_ms": _percentile(latencies, 50) * 1000, "p99_ms": _percentile(latencies, 99) * 1000,
            "max_ms": (latencies[-1] if latencies else 0.0) * 1000}
