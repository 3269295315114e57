"""A worker's timings and limits: keyword arguments, or one WorkerSettings."""

from __future__ import annotations

import pytest

from clusterq import Worker
from clusterq.worker.settings import WorkerSettings


def test_the_keyword_arguments_and_a_settings_object_configure_a_worker_alike(clusterq_standalone) -> None:
    url = clusterq_standalone.url
    by_keywords = Worker(["a"], url, pool="solo", lease_s=30, max_batch=7, install_signal_handlers=False)
    by_settings = Worker(["a"], url, pool="solo",
                         settings=WorkerSettings(lease_s=30, max_batch=7, install_signal_handlers=False))
    assert by_keywords.settings == by_settings.settings
    assert (by_settings.lease_ms, by_settings.max_batch, by_settings.leases.lease_ms) == (30_000, 7, 30_000)


def test_settings_and_a_changed_keyword_together_are_refused_by_name(clusterq_standalone) -> None:
    with pytest.raises(ValueError, match="lease_s"):
        Worker(["a"], clusterq_standalone.url, pool="solo", lease_s=30, settings=WorkerSettings())
