"""Dramatiq actors on a Redis broker from ``$BENCH_REDIS_URL`` (default middleware)."""

from __future__ import annotations

import os

import dramatiq
from dramatiq.brokers.redis import RedisBroker

from .common import count_one, record_latency

broker = RedisBroker(url=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"))
dramatiq.set_broker(broker)


@dramatiq.actor(queue_name="bench")
def noop() -> None:
    count_one()


@dramatiq.actor(queue_name="bench")
def latency(enqueued_at: float) -> None:
    record_latency(enqueued_at)
