"""Queues from the ``CLUSTERQ`` setting, enqueue after the transaction commits, and ``@job``.

    from clusterq.contrib.django import get_queue, job

    get_queue("emails").enqueue(send_welcome, user.pk, on_commit=True)   # runs only if the transaction commits

    @job("emails", on_commit=True)
    def send_welcome(user_id): ...

``on_commit=True`` hands the enqueue to :func:`django.db.transaction.on_commit`: inside ``atomic()`` the
job is written once the outermost block commits, and never if it rolls back; outside a transaction
(autocommit) it is written at once. Such an enqueue returns None, as Celery's ``delay_on_commit`` does:
the job does not exist yet. ``using=`` names the database whose transaction counts.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Any

from django.db import transaction

from clusterq.api.decorators import DelayedFunction
from clusterq.api.decorators import job as _job
from clusterq.api.job import Job
from clusterq.api.queue import Queue
from clusterq.connection.sync import Client, connect
from clusterq.contrib.django import conf

_lock = threading.Lock()
_client: Client | None = None
_queues: dict[str, DjangoQueue] = {}


def forget() -> None:
    """Drop the cached client and queues (the setting changed)."""
    global _client
    with _lock:
        _client = None
        _queues.clear()


conf.ON_RESET.append(forget)


def get_connection() -> Client:
    """The redis-py client for ``CLUSTERQ`` (one per process, opened on first use). With ``CACHE`` naming
    a django-redis cache, that cache's own client (and connection pool) is used."""
    global _client
    if _client is None:
        config = conf.load()
        with _lock:
            if _client is None:
                _client = connect(_cache_client(config.cache) or config.url)
    return _client


def _cache_client(alias: str | None) -> Any:
    from django.conf import settings

    if alias is None or not str(settings.CACHES[alias].get("BACKEND", "")).startswith("django_redis."):
        return None
    from django_redis import get_redis_connection

    return get_redis_connection(alias)


class DjangoQueue(Queue):
    """A :class:`~clusterq.Queue` whose ``enqueue``, ``enqueue_at`` and ``enqueue_in`` also take
    ``on_commit=True`` (and ``using=``, the database alias)."""

    def enqueue(self, f: Callable[..., Any] | str, *args: Any, on_commit: bool = False,  # type: ignore[override]
                using: str | None = None, **kwargs: Any) -> Job | None:
        if on_commit:
            transaction.on_commit(lambda: Queue.enqueue(self, f, *args, **kwargs), using=using)
            return None
        return Queue.enqueue(self, f, *args, **kwargs)

    def enqueue_at(self, scheduled_time: datetime | date | str, f: Callable[..., Any] | str,  # type: ignore[override]
                   *args: Any, on_commit: bool = False, using: str | None = None, **kwargs: Any) -> Job | None:
        if on_commit:
            transaction.on_commit(lambda: Queue.enqueue_at(self, scheduled_time, f, *args, **kwargs), using=using)
            return None
        return Queue.enqueue_at(self, scheduled_time, f, *args, **kwargs)

    def enqueue_in(self, time_delta: timedelta | float | int, f: Callable[..., Any] | str,  # type: ignore[override]
                   *args: Any, on_commit: bool = False, using: str | None = None, **kwargs: Any) -> Job | None:
        if on_commit:
            transaction.on_commit(lambda: Queue.enqueue_in(self, time_delta, f, *args, **kwargs), using=using)
            return None
        return Queue.enqueue_in(self, time_delta, f, *args, **kwargs)


def get_queue(name: str = "default", **options: Any) -> DjangoQueue:
    """The queue ``name`` on the ``CLUSTERQ`` deployment, signed with its ``SIGNING_KEY`` and synchronous
    when ``SYNC`` is True. With ``options`` (those of :class:`~clusterq.Queue`) a new object is made;
    without, one per name is kept."""
    config = conf.load()
    if options:
        options.setdefault("signing_key", config.signing_key)
        options.setdefault("is_async", not config.sync)
        return DjangoQueue(name, get_connection(), **options)
    with _lock:
        queue = _queues.get(name)
    if queue is None:
        queue = DjangoQueue(name, get_connection(), signing_key=config.signing_key, is_async=not config.sync)
        with _lock:
            queue = _queues.setdefault(name, queue)
    return queue


def enqueue(f: Callable[..., Any] | str, *args: Any, queue: str = "default", on_commit: bool = False,
            using: str | None = None, **kwargs: Any) -> Job | None:
    """``get_queue(queue).enqueue(f, *args, **kwargs)``, with ``on_commit``."""
    return get_queue(queue).enqueue(f, *args, on_commit=on_commit, using=using, **kwargs)


class job(_job):  # lower case, as clusterq's and RQ's decorator
    """``@job(queue, on_commit=False, using=None, **options)``: :func:`clusterq.job` on the ``CLUSTERQ``
    deployment. With ``on_commit=True``, ``f.delay(...)`` enqueues once the transaction commits (and
    returns None); ``f.delay_on_commit(...)`` does so for one call whatever the decorator says."""

    def __init__(self, queue: str | Queue, *args: Any, on_commit: bool = False, using: str | None = None,
                 **kwargs: Any) -> None:
        super().__init__(queue, *args, **kwargs)
        self.on_commit = on_commit
        self.using = using

    def _queue(self) -> Queue:
        if self._opened is None and self.connection is None:
            return get_queue(str(self.queue))
        return super()._queue()

    def __call__(self, f: Callable[..., Any]) -> DelayedFunction[Any]:
        wrapped = super().__call__(f)
        now = wrapped.delay

        def delay_on_commit(*args: Any, **kwargs: Any) -> None:
            transaction.on_commit(lambda: now(*args, **kwargs), using=self.using)

        def delay(*args: Any, **kwargs: Any) -> Job | None:
            if self.on_commit:
                delay_on_commit(*args, **kwargs)
                return None
            return now(*args, **kwargs)

        delay.__doc__ = now.__doc__
        f.delay = delay  # type: ignore[attr-defined]
        f.delay_on_commit = delay_on_commit  # type: ignore[attr-defined]
        return wrapped
