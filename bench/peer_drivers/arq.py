"""arq: an asyncio worker (10 jobs at a time, its default) with a burst mode."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from arq import create_pool
from arq.connections import RedisSettings
from arq.worker import Worker
from peer_tasks.arq_tasks import latency as latency_job
from peer_tasks.arq_tasks import noop

from .common import concurrent_enqueue


def _settings(params: dict[str, Any]) -> RedisSettings:
    return RedisSettings.from_dsn(params["url"])


async def _enqueue(params: dict[str, Any]) -> float:
    pool = await create_pool(_settings(params), default_queue_name=params["queues"][0])
    await pool.ping()
    started = time.perf_counter()
    for _ in range(int(params["n"])):
        await pool.enqueue_job("noop")
    seconds = time.perf_counter() - started
    await pool.aclose()
    return seconds


async def _latency(params: dict[str, Any]) -> None:
    pool = await create_pool(_settings(params), default_queue_name=params["queues"][0])
    for _ in range(int(params["samples"])):
        await pool.enqueue_job("latency", time.time())
        await asyncio.sleep(float(params["pause_s"]))
    await pool.aclose()


async def _enqueue_async(params: dict[str, Any]) -> dict[str, Any]:
    pool = await create_pool(_settings(params), default_queue_name=params["queues"][0])

    async def send() -> None:
        await pool.enqueue_job("noop")

    result = await concurrent_enqueue(int(params["n"]), int(params["tasks"]), send)
    await pool.aclose()
    return result


def enqueue_async(params: dict[str, Any]) -> dict[str, Any]:
    return asyncio.run(_enqueue_async(params))


def enqueue(params: dict[str, Any]) -> dict[str, Any]:
    return {"seconds": asyncio.run(_enqueue(params)), "n": int(params["n"])}


def latency(params: dict[str, Any]) -> dict[str, Any]:
    asyncio.run(_latency(params))
    return {}


def worker(params: dict[str, Any], gate: Callable[[], None]) -> dict[str, Any]:
    w = Worker(
        functions=[noop, latency_job],  # type: ignore[list-item]
        redis_settings=_settings(params),
        queue_name=params["queues"][0],
        burst=bool(params.get("burst")),
    )
    gate()
    w.run()
    return {"done_at": time.time(), "processed": w.jobs_complete}


