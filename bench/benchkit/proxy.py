"""A counting TCP proxy on loopback: how many client round trips a workload takes, for any system.

A round trip is counted each time a client connection sends data after it last received data (a request
burst): a pipeline of 100 commands is one, a command and its reply is one, a blocking pop that waits is
one. Server pushes (pub/sub messages) are received data and start no burst by themselves. The proxy
runs its own event loop in a thread; it is used only for the small round-trip runs, never the timed ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from dataclasses import dataclass


@dataclass
class _Conn:
    sending: bool = False


class CountingProxy:
    def __init__(self, target_port: int, host: str = "127.0.0.1") -> None:
        self.host = host
        self.target_port = target_port
        self.port = 0
        self.bursts = 0
        self.bytes_up = 0
        """Bytes the clients sent (requests), for the payload size of the redis-py baseline."""
        self.connections = 0
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.AbstractServer | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, name="bench-proxy", daemon=True)
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self) -> CountingProxy:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self._listen(), self._loop)
        self.port = future.result(timeout=10)
        return self

    async def _listen(self) -> int:
        self._server = await asyncio.start_server(self._handle, self.host, 0)
        return int(self._server.sockets[0].getsockname()[1])

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            server_r, server_w = await asyncio.open_connection(self.host, self.target_port)
        except OSError:
            client_w.close()
            return
        self.connections += 1
        conn = _Conn()
        up = asyncio.ensure_future(self._pump(client_r, server_w, conn, upstream=True))
        down = asyncio.ensure_future(self._pump(server_r, client_w, conn, upstream=False))
        for task in (up, down):
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
        for task in (up, down):
            task.cancel()
        for writer in (server_w, client_w):
            with contextlib.suppress(Exception):
                writer.close()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, conn: _Conn,
                    upstream: bool) -> None:
        try:
            while True:
                data = await reader.read(1 << 16)
                if not data:
                    return
                if upstream:
                    self.bytes_up += len(data)
                    if not conn.sending:
                        self.bursts += 1
                        conn.sending = True
                else:
                    conn.sending = False
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            return

    def stop(self) -> None:
        async def shutdown() -> None:
            if self._server is not None:
                self._server.close()
            for task in list(self._tasks):
                task.cancel()

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(timeout=5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
