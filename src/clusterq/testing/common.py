"""Small shared pieces of the harness: errors, free ports, polling, and the admin client.

Kept apart from process management so every module (and its tests) can use them without caring
how servers are started.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from typing import TypeVar

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

HOST = "127.0.0.1"
POLL_INTERVAL = 0.01
DEFAULT_STARTUP_TIMEOUT = 30.0

T = TypeVar("T")


# Errors that only mean "not ready yet" while polling a server that is starting or converging.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    redis.ConnectionError,
    redis.TimeoutError,
    redis.ResponseError,
    OSError,
    ValueError,
    KeyError,
    IndexError,
)


class TopologyError(RuntimeError):
    """A server or topology did not start or did not reach the expected state in time."""


class PortClash(TopologyError):
    """The server could not bind its port because something else took it after we picked it."""


# --------------------------------------------------------------------------------------------------
# ports


_port_lock = threading.Lock()
_handed_out: set[int] = set()


def allocate_port() -> int:
    """Return a loopback port that is free right now and not handed out before by this process.

    Binding to port 0 lets the kernel pick; remembering what we handed out stops two servers of one
    topology from getting the same port. Another program can still take it before the server binds,
    which is why starts retry on :class:`PortClash`.
    """
    with _port_lock:
        for _ in range(100):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.bind((HOST, 0))
                port = int(sock.getsockname()[1])
            if port not in _handed_out:
                _handed_out.add(port)
                return port
    raise TopologyError("could not find a free loopback port")


# --------------------------------------------------------------------------------------------------
# polling


def wait_until(
    check: Callable[[], T | None],
    timeout: float,
    what: str,
    interval: float = POLL_INTERVAL,
    details: Callable[[], str] | None = None,
) -> T:
    """Poll ``check`` until it returns something truthy, treating redis/socket errors as "not yet".

    Short sleeps instead of fixed waits keep topology start-up in the low seconds. On timeout the
    error names what we waited for, the last error seen, and ``details()`` (e.g. a log tail).
    """
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            result = check()
            if result:
                return result
        except TRANSIENT_ERRORS as exc:
            last_error = exc
        if time.monotonic() >= deadline:
            message = f"timed out after {timeout:.1f}s waiting for {what}"
            if last_error is not None:
                message += f" (last error: {last_error!r})"
            if details is not None:
                message += "\n" + details()
            raise TopologyError(message)
        time.sleep(interval)


def admin_client(port: int, timeout: float = 5.0) -> redis.Redis:
    """A client for the harness's own commands: decoded strings, bounded timeouts, no retries.

    redis-py >= 6 retries with a back-off of up to seconds by default, which would turn fast polling
    into slow polling and hide a paused node; the harness wants every failure reported at once.
    """
    return redis.Redis(
        host=HOST,
        port=port,
        decode_responses=True,
        socket_timeout=timeout,
        socket_connect_timeout=min(timeout, 2.0),
        retry=Retry(NoBackoff(), 0),
    )
