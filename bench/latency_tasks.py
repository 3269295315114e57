"""Jobs for bench/idle_latency.py."""

import time


def elapsed_since(enqueued_at: float) -> float:
    return time.time() - enqueued_at


def noop() -> None:
    return None
