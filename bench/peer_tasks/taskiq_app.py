"""A taskiq ``ListQueueBroker`` on ``$BENCH_REDIS_URL`` (no result backend), queue "bench"."""

from __future__ import annotations

import os

from taskiq_redis import ListQueueBroker

from .common import count_one

broker = ListQueueBroker(os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"), queue_name="bench")


@broker.task(task_name="bench.noop")
async def noop() -> None:
    count_one()
