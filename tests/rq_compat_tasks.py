"""Job functions for tests/test_rq_compat.py (RQ names used from inside a job)."""

from __future__ import annotations

from clusterq import get_current_job


def give_up(message: str = "not worth retrying") -> None:
    """Fail for good: ``retries_left = 0`` (RQ's way to stop retries) before raising."""
    job = get_current_job()
    assert job is not None
    job.retries_left = 0
    raise ValueError(message)


def add(a: int, b: int) -> int:
    return a + b


def fail() -> None:
    raise RuntimeError("boom")
