"""arq coroutines (arq runs ``async def`` jobs on one event loop, 10 at a time by default)."""

from __future__ import annotations

from typing import Any

from .common import count_one, record_latency


async def noop(ctx: dict[str, Any]) -> None:
    count_one()


async def latency(ctx: dict[str, Any], enqueued_at: float) -> None:
    record_latency(enqueued_at)
