"""Plain functions, enqueued by dotted path: used by clusterq and RQ."""

from __future__ import annotations

from .common import count_one, record_latency


def noop() -> None:
    count_one()


def latency(enqueued_at: float) -> None:
    record_latency(enqueued_at)
