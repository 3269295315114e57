"""Health probes for a worker (:class:`HealthServer`, ``clusterq worker --health-port``), as a public hook.

``/livez``: the supervisor loop went round within ``live_after_s`` (or the worker is draining after a
stop). It never talks to Redis, so a Redis outage makes workers not-ready, never restarted in a storm.

``/readyz``: the worker is not stopping, and Redis answers a PING through the worker's own client (for a
Cluster this also means the client knows the slot map; through Sentinel, that it found the primary). A
stop request (SIGTERM) turns it not-ready at once, before the running jobs drain. The PING result is kept
``ready_cache_s`` so a busy prober costs Redis at most one command per that interval.

Each answer is a small JSON object (``{"ok": true, ...}``) with status 200 or 503. The server runs in a
thread of the supervisor; forked pool children close their copy of its socket.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from clusterq.api.hooks import Hook
from clusterq.connection.sync import REDIS_ERRORS

log = logging.getLogger(__name__)

DEFAULT_LIVE_AFTER_S = 60.0
"""A loop that has not gone round for this long is not live (its longest sleep is well under it)."""


class HealthServer(Hook):
    """Serves ``/livez`` and ``/readyz`` for the worker it is a hook of, on ``host:port`` (``port=0``: a
    free one, :attr:`port` tells which once the worker started)."""

    def __init__(self, port: int = 0, host: str = "127.0.0.1", *, live_after_s: float = DEFAULT_LIVE_AFTER_S,
                 ready_cache_s: float = 1.0) -> None:
        self.port, self.host = port, host
        self.live_after_s, self.ready_cache_s = live_after_s, ready_cache_s
        self.worker: Any = None
        self._server: ThreadingHTTPServer | None = None
        self._lock = threading.Lock()
        self._checked: tuple[float, bool, str] = (float("-inf"), False, "not checked yet")
        self._failed_logged = False

    def __repr__(self) -> str:
        return f"HealthServer(port={self.port!r})"

    # --- the probes ---------------------------------------------------------------------------------

    def live(self) -> tuple[bool, dict[str, Any]]:
        worker = self.worker
        if worker is None:
            return False, {"reason": "the worker is not running"}
        idle_s = time.monotonic() - worker.ticked_at
        ok = worker.stopping or idle_s < self.live_after_s  # draining: its loop has ended, on purpose
        return ok, {"loop_idle_s": round(idle_s, 3), "stopping": worker.stopping}

    def ready(self) -> tuple[bool, dict[str, Any]]:
        worker = self.worker
        if worker is None:
            return False, {"reason": "the worker is not running"}
        if worker.stopping:
            return False, {"reason": "stopping: draining its running jobs"}
        if not getattr(worker, "serving", True):  # a SIGTERM before its handlers are installed would kill it
            return False, {"reason": "starting"}
        ok, reason = self._ping(worker)
        return ok, {"reason": reason} if not ok else {"queues": worker.queue_names}

    def _ping(self, worker: Any) -> tuple[bool, str]:
        with self._lock:  # one PING at a time, and at most one per ready_cache_s
            at, ok, reason = self._checked
            if time.monotonic() - at < self.ready_cache_s:
                return ok, reason
            try:
                worker.connection.ping()
                ok, reason = True, ""
                self._failed_logged = False
            except REDIS_ERRORS as exc:
                ok, reason = False, f"Redis unreachable: {type(exc).__name__}: {exc}"
                if not self._failed_logged:  # once per outage
                    self._failed_logged = True
                    log.warning("readiness: %s", reason)
            self._checked = (time.monotonic(), ok, reason)
            return ok, reason

    # --- the hook -----------------------------------------------------------------------------------

    def on_worker_start(self, worker: Any) -> None:
        if self._server is None:
            self._server = ThreadingHTTPServer((self.host, self.port), _handler(self))
            self._server.daemon_threads = True
            self.port = self._server.server_address[1]
            threading.Thread(target=self._server.serve_forever, name="clusterq-health", daemon=True).start()
            log.info("clusterq health probes on http://%s:%d/livez and /readyz", self.host, self.port)
        self.worker = worker  # last: once set, the port is known

    def on_child_start(self) -> None:
        if self._server is not None:  # a forked child must not hold the supervisor's listening socket
            self._server.socket.close()
            self._server = None

    def on_worker_stop(self, worker: Any) -> None:
        self.worker = None
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def _handler(health: HealthServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            probe = {"/livez": health.live, "/readyz": health.ready}.get(self.path.split("?")[0])
            if probe is None:
                self._answer(404, {"ok": False, "reason": "not found: /livez or /readyz"})
                return
            ok, details = probe()
            self._answer(200 if ok else 503, {"ok": ok, **details})

        def _answer(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # probes every few seconds would flood the worker's log

    return Handler


__all__ = ["DEFAULT_LIVE_AFTER_S", "HealthServer"]
