"""taskiq with taskiq-redis's ``ListQueueBroker`` (its plainest Redis broker: one LPUSH per task, no
result backend): measured as an asyncio producer only (the bench runs no taskiq worker)."""

from __future__ import annotations

import asyncio
from typing import Any

from .common import concurrent_enqueue


async def _enqueue_async(params: dict[str, Any]) -> dict[str, Any]:
    from peer_tasks.taskiq_app import broker, noop

    await broker.startup()

    async def send() -> None:
        await noop.kiq()

    result = await concurrent_enqueue(int(params["n"]), int(params["tasks"]), send)
    await broker.shutdown()
    return result


def enqueue_async(params: dict[str, Any]) -> dict[str, Any]:
    return asyncio.run(_enqueue_async(params))
