"""Job functions for the get_current_job, progress, stop, decorator and synchronous-mode tests
(importable by dotted path in workers: ``control_jobs.whoami``)."""

from __future__ import annotations

import asyncio
import os
import time

from clusterq import get_current_job, set_progress
from clusterq.api.decorators import job


def _describe() -> dict:
    current = get_current_job()
    if current is None:
        return {"job": None}
    # A round trip with the job's own connection: it must be usable in every pool (forked children too).
    status = current.get_status()
    return {"id": current.id, "queue": current.queue_name, "handle": current.handle, "func": current.func_name,
            "status": status.value if status else None, "args": current.args, "pid": os.getpid()}


def whoami(*args):
    return _describe()


async def whoami_async(*args):
    await asyncio.sleep(0)
    return _describe()


def progress_steps(n):
    for i in range(1, n + 1):
        set_progress(i / n, f"step {i} of {n}")
    job = get_current_job()
    assert job is not None
    return {"value": job.progress.value, "message": job.progress.message}


def progress_then_wait(path, seconds):
    """Report progress, say so in ``path``, then run on (in short steps, so a thread can be stopped)."""
    get_current_job().set_progress(42, "halfway")
    with open(path, "a") as fh:
        fh.write("started\n")
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.02)
    return "ran to the end"


async def async_progress_then_wait(path, seconds):
    set_progress(7, "async halfway")
    with open(path, "a") as fh:
        fh.write("started\n")
    await asyncio.sleep(seconds)
    return "ran to the end"


def bad_progress():
    set_progress(object())


def outside_progress():
    return "unreachable"


@job("decorated-default")  # decorating at import time needs no server: the queue opens on first delay()
def decorated_add(a, b):
    return a + b


def current_job_is_none_here():
    return get_current_job() is None


def plain_add(a, b=0):
    return a + b


def record_order(path, value):
    with open(path, "a") as fh:
        fh.write(f"{value}\n")
    return value
