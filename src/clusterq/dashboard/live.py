"""One server-side ticker for every open browser: it reads the counts once per interval while anyone
listens, and fans the same snapshot out to each server-sent-events stream and to polling requests. N open
tabs cost Redis what one tab costs; with none open it reads nothing."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from anyio import to_thread

from clusterq.connection.sync import REDIS_ERRORS
from clusterq.exceptions import ClusterQError

KEEPALIVE_S = 15.0


class Ticker:
    def __init__(self, read: Callable[[], dict[str, Any]], interval_s: float = 1.0) -> None:
        self._read = read
        self.interval_s = interval_s
        self._listeners: set[asyncio.Queue[str]] = set()
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._latest: tuple[float, str] | None = None
        self.reads = 0
        """How many times the counts were read from Redis (the tests check N tabs do not multiply it)."""

    @property
    def listeners(self) -> int:
        return len(self._listeners)

    async def snapshot(self) -> str:
        """The latest counts as JSON; read anew only if older than the interval (polling shares it)."""
        async with self._lock:
            if self._latest is None or time.monotonic() - self._latest[0] >= self.interval_s:
                try:
                    data = await to_thread.run_sync(self._read)
                except (ClusterQError, *REDIS_ERRORS) as exc:  # type: ignore[misc]  # a tuple of classes
                    data = {"error": f"cannot read the counts: {type(exc).__name__}: {exc}"}
                self.reads += 1
                self._latest = (time.monotonic(), json.dumps(data, default=str))
            return self._latest[1]

    async def _run(self) -> None:
        while self._listeners:
            text = await self.snapshot()
            for listener in list(self._listeners):
                if listener.full():  # a slow browser: drop its stale snapshot, keep the newest
                    listener.get_nowait()
                listener.put_nowait(text)
            await asyncio.sleep(self.interval_s)

    async def stream(self) -> AsyncIterator[str]:
        """Server-sent events: one ``data:`` line per tick, a comment now and then to keep proxies open."""
        listener: asyncio.Queue[str] = asyncio.Queue(maxsize=1)
        self._listeners.add(listener)
        if self._task is None or self._task.done():  # the last listener left and the loop ended
            self._task = asyncio.create_task(self._run())
        try:
            yield "retry: 2000\n\n"
            while True:
                try:
                    text = await asyncio.wait_for(listener.get(), KEEPALIVE_S)
                except asyncio.TimeoutError:
                    yield ": keepalive\n\n"
                    continue
                yield f"data: {text}\n\n"
        finally:
            self._listeners.discard(listener)
