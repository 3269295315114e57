"""clusterq in a FastAPI (or Starlette) application (``pip install 'clusterq[fastapi]'``): one asyncio client
opened in the app's ``lifespan``, queues injected with ``Depends``, and the dashboard mounted behind the
app's own authentication.

    from fastapi import Depends, FastAPI
    from clusterq import AsyncQueue
    from clusterq.contrib.fastapi import ClusterQ

    cq = ClusterQ("redis+cluster://10.0.0.1:6379")
    app = FastAPI(lifespan=cq.lifespan)
    cq.mount_dashboard(app, "/jobs", authenticate=lambda request: ("ops", "admin") if is_staff(request) else None)

    @app.post("/signup")
    async def signup(address: str, emails: AsyncQueue = Depends(cq.queue("emails"))) -> dict:
        return {"job": (await emails.enqueue("myapp.tasks.send_welcome", address)).handle}

An application with a lifespan of its own enters ``cq.lifespan(app)`` inside it (``async with``).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

from anyio import to_thread
from starlette.requests import Request

from clusterq.api.aio_queue import AsyncQueue
from clusterq.connection.aio import AsyncClient, connect_async, disconnect_async
from clusterq.connection.sync import URL_ENV
from clusterq.signing import SigningKey

STATE = "clusterq"


class _Open:
    def __init__(self, client: AsyncClient, signing_key: SigningKey | None) -> None:
        self.client = client
        self.signing_key = signing_key
        self.queues: dict[str, AsyncQueue] = {}

    def queue(self, name: str) -> AsyncQueue:
        found = self.queues.get(name)
        if found is None:
            found = self.queues[name] = AsyncQueue(name, self.client, signing_key=self.signing_key)
        return found


class ClusterQ:
    """``url``: a Redis URL (None: ``$CLUSTERQ_URL``); ``signing_key``: signs every job enqueued here."""

    def __init__(self, url: str | None = None, *, signing_key: SigningKey | None = None) -> None:
        if url is not None and not isinstance(url, str):
            raise TypeError(f"ClusterQ(url) must be a Redis URL (str) or None for ${URL_ENV}, got {type(url).__name__}")
        self.url = url
        self.signing_key = signing_key

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Any) -> AsyncIterator[None]:
        """Open the client when the app starts (a wrong URL fails start-up), close it when it stops."""
        client = await connect_async(self.url)
        setattr(app.state, STATE, _Open(client, self.signing_key))
        try:
            yield
        finally:
            setattr(app.state, STATE, None)
            await disconnect_async(client)

    def _open(self, app: Any) -> _Open:
        found = getattr(app.state, STATE, None)
        if found is None:
            raise RuntimeError("clusterq's client is not open: create the app with FastAPI(lifespan=cq.lifespan) "
                               "(or enter `async with cq.lifespan(app)` in your own lifespan)")
        return found

    def client(self, request: Request) -> AsyncClient:
        """The app's asyncio client (for :class:`~clusterq.AsyncJob.fetch` and the like)."""
        return self._open(request.app).client

    def get_queue(self, request: Request, name: str = "default") -> AsyncQueue:
        """The :class:`~clusterq.AsyncQueue` ``name`` on the app's client (Starlette endpoints call this)."""
        return self._open(request.app).queue(name)

    def queue(self, name: str = "default") -> Callable[[Request], AsyncQueue]:
        """A dependency: ``emails: AsyncQueue = Depends(cq.queue("emails"))``."""

        def dependency(request: Request) -> AsyncQueue:
            return self.get_queue(request, name)

        dependency.__name__ = f"clusterq_queue_{name}"
        return dependency

    def connection(self) -> Callable[[Request], AsyncClient]:
        """A dependency giving the app's client: ``redis = Depends(cq.connection())``."""

        def dependency(request: Request) -> AsyncClient:
            return self.client(request)

        return dependency

    def mount_dashboard(self, app: Any, path: str = "/jobs", *,
                        authenticate: Callable[[Request], Any] | None = None, login_url: str | None = None,
                        **options: Any) -> None:
        """Mount the dashboard at ``path``. ``authenticate(request)`` says who asks from the app's own
        session or headers: a ``(name, role)`` pair, a Principal, or None (redirect to ``login_url``). Without
        it, the dashboard's own rules apply (``auth=`` users and tokens, else loopback only). Other
        ``options`` are those of :func:`clusterq.dashboard.create_app`. The dashboard's (synchronous)
        client is opened at the first request, so mounting needs no server."""
        app.mount("/" + path.strip("/"), _LazyDashboard(self.url, dict(options, authenticate=authenticate,
                                                                          login_url=login_url)))


class _LazyDashboard:
    def __init__(self, url: str | None, options: dict[str, Any]) -> None:
        self.url, self.options = url, options
        self.app: Any = None
        self._lock = threading.Lock()

    def _make(self) -> Any:
        with self._lock:
            if self.app is None:
                from clusterq.dashboard.app import create_app

                self.app = create_app(self.url, **self.options)
            return self.app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        app = self.app or await to_thread.run_sync(self._make)
        await app(scope, receive, send)


__all__ = ["ClusterQ"]
