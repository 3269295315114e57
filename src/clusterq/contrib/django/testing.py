"""Test helpers for Django projects. In ``conftest.py``: ``pytest_plugins = ["clusterq.contrib.django.testing"]``.

- ``clusterq_sync`` (fixture) / :func:`sync_mode` (context manager): every queue from
  :func:`~clusterq.contrib.django.get_queue` runs its jobs at once, in the test's thread and database
  transaction (``CLUSTERQ["SYNC"] = True``), recording their outcome as a worker would.
- ``clusterq_burst_worker`` (fixture) / :func:`run_burst_worker`: process every job waiting on some
  queues, in this process (the ``solo`` pool), so jobs see the test database, then return the number run.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.conf import settings
from django.test import override_settings

from clusterq.contrib.django import conf
from clusterq.contrib.django.queues import get_connection
from clusterq.contrib.django.worker import DjangoHook


@contextlib.contextmanager
def sync_mode() -> Iterator[None]:
    current = dict(getattr(settings, "CLUSTERQ", None) or {})
    with override_settings(CLUSTERQ={**current, "SYNC": True}):
        yield


def run_burst_worker(*queues: str, **worker_options: Any) -> int:
    """Run every job waiting on ``queues`` (default: ``CLUSTERQ["QUEUES"]``) here, then return how many ran."""
    from clusterq.worker.worker import Worker

    config = conf.load()
    worker_options.setdefault("pool", "solo")
    worker_options.setdefault("install_signal_handlers", False)
    worker_options.setdefault("signing_key", config.signing_key)
    hooks = [DjangoHook(close_connections=False), *worker_options.pop("hooks", ())]
    worker = Worker(list(queues or config.queues), get_connection(), hooks=hooks, **worker_options)
    return worker.work(burst=True)


@pytest.fixture
def clusterq_sync() -> Iterator[None]:
    with sync_mode():
        yield


@pytest.fixture
def clusterq_burst_worker() -> Callable[..., int]:
    return run_burst_worker
