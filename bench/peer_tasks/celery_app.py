"""The Celery app: Redis broker from ``$BENCH_REDIS_URL``, no result backend (Celery's default)."""

from __future__ import annotations

import os

from celery import Celery

from .common import count_one, record_latency

app = Celery("bench", broker=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"))
app.conf.update(
    task_default_queue="bench",
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
    worker_redirect_stdouts=False,
)


@app.task(name="bench.noop")
def noop() -> None:
    count_one()


@app.task(name="bench.latency")
def latency(enqueued_at: float) -> None:
    record_latency(enqueued_at)
