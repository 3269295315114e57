"""Another client of the same Redis: PING, 1 ms apart, from its own process, until told to STOP.

Used while one worker drains a queue at full speed; reports every (wall-clock time, round trip) so the
bench can keep the samples taken between the first and the last job done.
"""

from __future__ import annotations

import os
import select
import sys
import time
from collections.abc import Callable
from typing import Any

import redis


def worker(params: dict[str, Any], gate: Callable[[], None]) -> dict[str, Any]:
    client = redis.Redis.from_url(params["url"])
    client.ping()
    realtime = False
    if params.get("realtime"):  # the scheduler out of the way: a wait is the server's, not a CPU's
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(10))
            realtime = True
        except (OSError, AttributeError):
            pass
    pause = float(params.get("pause_s") or 0.001)
    samples: list[tuple[float, float]] = []
    gate()
    while True:
        began = time.perf_counter()
        client.ping()
        samples.append((time.time(), (time.perf_counter() - began) * 1000))
        ready, _, _ = select.select([sys.stdin], [], [], pause)
        if ready:
            break  # STOP (or the bench went away)
    client.close()
    return {"samples": [[round(t, 6), round(ms, 4)] for t, ms in samples], "realtime": realtime}
