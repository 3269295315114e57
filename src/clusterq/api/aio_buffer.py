"""The asyncio counter buffer: :class:`AsyncBuffer` adds increments from coroutines (an ASGI app's hot
path); the flush is the workers' (``clusterq worker --with-buffers``), exactly as for :class:`~clusterq.Buffer`."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from clusterq.api import buffer_core as B
from clusterq.connection.aio import AsyncConnectionLike
from clusterq.state.aio_store import AsyncStore, LazyStore

__all__ = ["AsyncBuffer"]


class AsyncBuffer:
    """The asyncio twin of :class:`clusterq.Buffer` (same arguments, same keys, same checks): ``await
    buffer.incr(key, {"times_seen": 1})``. Close it with :meth:`aclose` (or ``async with``) when it
    opened its own client from a URL."""

    def __init__(
        self,
        name: str,
        connection: AsyncConnectionLike = None,
        *,
        partitions: int = 1,
        flush_to: Callable[..., Any] | str | None = None,
        queue: str = "default",
        batch: int = 100,
        lease_s: float = 60,
        min_age_s: float = 0,
        interval_s: float = 5,
        **job_options: Any,
    ) -> None:
        self.spec = B.BufferSpec.of(name, partitions, flush_to, queue, batch, lease_s, min_age_s, interval_s,
                                    job_options)
        self._lazy = LazyStore(connection)
        self._checked = False

    def __repr__(self) -> str:
        return f"AsyncBuffer({self.spec.name!r}, partitions={self.spec.partitions})"

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def partitions(self) -> int:
        return self.spec.partitions

    async def __aenter__(self) -> AsyncBuffer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._lazy.aclose()

    async def incr(self, key: str, increments: Mapping[str, int | float]) -> None:
        """Add ``increments`` to ``key``'s sums (see :meth:`clusterq.Buffer.incr`)."""
        call = self.spec.incr_call(key, increments)
        store = await self._store()
        await store.run(call)

    async def incr_many(self, items: Iterable[tuple[str, Mapping[str, int | float]]]) -> int:
        """:meth:`incr` for many keys in one pipeline per node; every item is checked before anything is sent."""
        calls = [self.spec.incr_call(key, increments) for key, increments in items]
        if calls:
            store = await self._store()
            await store.run_many(calls)
        return len(calls)

    async def pending(self) -> int:
        """Keys with increments not yet taken by a flush."""
        return await self._count("pending")

    async def in_flight(self) -> int:
        """Flush records taken whose jobs are not yet acknowledged as enqueued."""
        return await self._count("inflight")

    async def _count(self, which: str) -> int:
        store = await self._lazy.get()
        pipe = store.client.pipeline(transaction=False)
        for p in range(self.partitions):
            pipe.zcard(getattr(self.spec.keys(p), which))
        return sum(int(n) for n in await pipe.execute())

    async def _store(self) -> AsyncStore:
        store = await self._lazy.get()
        if not self._checked:
            config = self.spec.keys(0).config
            pipe = store.client.pipeline(transaction=False)
            pipe.set(config, self.partitions, nx=True)
            pipe.get(config)
            error = self.spec.config_mismatch((await pipe.execute())[1])
            if error is not None:
                raise error
            self._checked = True
        return store
