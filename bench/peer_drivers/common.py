"""Loops shared by the system drivers."""

from __future__ import annotations

import time
from collections.abc import Callable
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
