"""A RedisHuey instance on ``$BENCH_REDIS_URL`` (defaults: blocking reads, results kept if not None)."""

from __future__ import annotations

import os

from huey import RedisHuey

from .common import count_one, record_latency

huey = RedisHuey("bench", url=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"))


@huey.task()
def noop() -> None:
    count_one()


@huey.task()
def latency(enqueued_at: float) -> None:
    record_latency(enqueued_at)
