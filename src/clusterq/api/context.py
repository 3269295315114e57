"""The job running now, as seen from inside it: :func:`get_current_job` and :func:`set_progress`.

The executor sets a context variable around each job it runs, so the answer is right in every pool:
a forked child runs one job at a time, each thread and each asyncio task has its own context, and the
solo pool runs jobs in the worker's own thread.

A job may run in a process forked from the worker, where the worker's client must not be shared. The
:class:`JobConnection` opens a client in that process on first use (from the worker's URL, or by
reusing the worker's client object, whose redis-py connection pools reconnect after a fork), so a job
that never asks for itself costs nothing.
"""

from __future__ import annotations

import os
import threading
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from clusterq.api.hooks import decode_headers
from clusterq.api.job import Job
from clusterq.connection.sync import Client, ConnectionLike, connect
from clusterq.state import keys as K
from clusterq.state.store import Store

if TYPE_CHECKING:
    from clusterq.serializers import Serializer
    from clusterq.state.store import LeasedJob


class JobConnection:
    """How a running job reaches Redis: the worker's client in the worker's process; in a forked child a
    client of its own, opened on first use."""

    def __init__(self, connection: ConnectionLike, client: Client) -> None:
        # Only a URL (or None, for $CLUSTERQ_URL) can be reopened; a client object is reused as it is.
        self._spec = connection if connection is None or isinstance(connection, str) else None
        self._reopen = connection is None or isinstance(connection, str)
        self._client = client
        self._pid = os.getpid()
        self._store: Store | None = Store(client)
        self._lock = threading.Lock()

    def store(self) -> Store:
        if os.getpid() != self._pid:
            with self._lock:
                if os.getpid() != self._pid:
                    self._store = None
                    self._pid = os.getpid()
        if self._store is None:
            with self._lock:
                if self._store is None:
                    client = connect(self._spec) if self._reopen else self._client
                    self._store = Store(client)
        return self._store


class _Running:
    """What the executor knows of the job it runs; the :class:`Job` is made on first request."""

    __slots__ = ("connection", "job", "leased", "serializer")

    def __init__(self, leased: LeasedJob, connection: JobConnection | None, serializer: Serializer) -> None:
        self.leased = leased
        self.connection = connection
        self.serializer = serializer
        self.job: Job | None = None

    def get(self) -> Job | None:
        if self.job is None:
            if self.connection is None:
                return None
            queue = self.leased.queue
            self.job = Job.trusted(queue, self.leased.id, K.QueueKeys(queue), self.connection.store(),
                                   self.serializer)
            self.job._headers = decode_headers(self.leased.headers)  # known from the lease: no read
        return self.job


_current: ContextVar[_Running | None] = ContextVar("clusterq_current_job", default=None)


def enter_job(leased: LeasedJob, connection: JobConnection | None, serializer: Serializer) -> Any:
    """Mark ``leased`` as the job running in this context; returns the token for :func:`leave_job`."""
    return _current.set(_Running(leased, connection, serializer))


def leave_job(token: Any) -> None:
    _current.reset(token)


def get_current_job() -> Job | None:
    """The :class:`~clusterq.Job` running in this thread or task, or None outside a job (RQ's
    ``rq.get_current_job()``). Works in every pool and in a queue's synchronous mode."""
    running = _current.get()
    return running.get() if running is not None else None


def set_progress(value: Any, message: str | None = None) -> None:
    """Report the running job's progress (any JSON value, e.g. a fraction or a count, and an optional
    message): ``job.progress`` and ``clusterq info`` show it. Raises RuntimeError outside a job."""
    job = get_current_job()
    if job is None:
        raise RuntimeError("set_progress() was called outside a running job")
    job.set_progress(value, message)
