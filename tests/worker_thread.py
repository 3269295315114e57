"""Run a real :class:`clusterq.Worker` in a background thread for the length of a ``with`` block."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from clusterq import Worker

JOIN_S = 30.0


@contextmanager
def running(worker: Worker, join_s: float = JOIN_S) -> Iterator[Worker]:
    """Start ``worker.work()`` in a thread; on exit, ask it to stop and fail the test if it does not stop
    within ``join_s`` or if it crashed."""
    errors: list[BaseException] = []

    def target() -> None:
        try:
            worker.work()
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    thread = threading.Thread(target=target, name=f"worker-{worker.name}", daemon=True)
    thread.start()
    try:
        yield worker
    finally:
        worker.request_stop()
        thread.join(join_s)
    assert not thread.is_alive(), "the worker did not stop after request_stop()"
    assert not errors, f"the worker crashed: {errors[0]!r}"
