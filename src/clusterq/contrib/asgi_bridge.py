"""Serving an ASGI app (the dashboard) from a synchronous view: Django's and Flask's views are plain
functions, under WSGI or not, so the dashboard cannot be awaited there. :class:`ASGIBridge` runs the app
on one event loop in a daemon thread and hands each request to it; the response streams back through a
queue, chunk by chunk (the dashboard's live counts are a never-ending server-sent-events stream: when the
browser goes away the WSGI server closes the iterator, which tells the app the client disconnected).

Only what the host's view gives is trusted: the identity it resolved goes into the ASGI scope
(``scope["clusterq.principal"]``), never into a header a client could send.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Iterator
from typing import Any

ASGIApp = Any
PRINCIPAL_KEY = "clusterq.principal"


def principal_from_scope(request: Any) -> Any:
    """The dashboard's ``authenticate`` for a bridged app: the identity the host view put in the scope."""
    return request.scope.get(PRINCIPAL_KEY)


class BridgeResponse:
    def __init__(self, status: int, headers: list[tuple[str, str]], body: Iterator[bytes]) -> None:
        self.status, self.headers, self.body = status, headers, body


class ASGIBridge:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                threading.Thread(target=loop.run_forever, name="clusterq-asgi-bridge", daemon=True).start()
                self._loop = loop
            return self._loop

    def request(self, *, method: str, path: str, root_path: str, query_string: bytes,
                headers: list[tuple[str, str]], body: bytes, client: tuple[str, int] | None,
                server: tuple[str, int] | None, scheme: str, principal: Any) -> BridgeResponse:
        """Run one HTTP request through the app; returns once the response has started."""
        loop = self._running_loop()
        scope = {
            "type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1",
            "method": method.upper(), "scheme": scheme, "path": path, "raw_path": path.encode(),
            "root_path": root_path, "query_string": query_string,
            "headers": [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers],
            "client": client, "server": server, "state": {}, PRINCIPAL_KEY: principal,
        }
        out: queue.Queue[Any] = queue.Queue()
        gone = asyncio.Event()
        done = object()

        async def receive() -> dict[str, Any]:
            nonlocal body
            if body is not None:
                chunk, body = body, None  # type: ignore[assignment]
                return {"type": "http.request", "body": chunk, "more_body": False}
            await gone.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            out.put(message)

        async def run() -> None:
            try:
                await self.app(scope, receive, send)
            except BaseException as exc:  # handed to the view, which raises it in its own thread
                out.put(exc)
            finally:
                out.put(done)

        future = asyncio.run_coroutine_threadsafe(run(), loop)
        first = out.get()
        if isinstance(first, BaseException):
            raise first
        if first is done or first.get("type") != "http.response.start":
            raise RuntimeError(f"the ASGI app answered no response ({first!r})")
        status = int(first["status"])
        response_headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in first.get("headers", [])]

        def chunks() -> Iterator[bytes]:
            ended = False
            try:
                while True:
                    message = out.get()
                    if message is done:
                        ended = True
                        return
                    if isinstance(message, BaseException):
                        raise message
                    if message.get("type") == "http.response.body":
                        if message.get("body"):
                            yield bytes(message["body"])
                        if not message.get("more_body", False):
                            ended = True
                            return
            finally:  # the body ended, or the client went away: then the app sees a disconnect, and stops
                loop.call_soon_threadsafe(gone.set)
                if not ended:
                    future.cancel()

        return BridgeResponse(status, response_headers, chunks())
