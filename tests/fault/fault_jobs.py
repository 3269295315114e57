"""Job functions of the fault-injection suite, importable by workers as ``fault_jobs.<name>``.

Every execution appends one line ``<job id> <pid> <unix time>`` to a record file with a single
``O_APPEND`` write, so records from many processes never interleave and survive any Redis fault.
"""

from __future__ import annotations

import os
import time

from clusterq import get_current_job


def _append(path: str, line: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def mark(path: str, job_id: str, sleep_s: float = 0.0) -> int:
    """Sleep, then record this execution; returns the pid that ran it."""
    if sleep_s:
        time.sleep(sleep_s)
    _append(path, f"{job_id} {os.getpid()} {time.time():.6f}\n")
    return os.getpid()


def mark_start_then_sleep(path: str, job_id: str, sleep_s: float) -> int:
    """Record the start in ``path + '.start'``, sleep, then record the execution like :func:`mark`."""
    _append(path + ".start", f"{job_id} {os.getpid()} {time.time():.6f}\n")
    return mark(path, job_id, sleep_s)


def mark_current(path: str) -> int:
    """Record this execution under the running job's own id (for jobs enqueued with a generated id)."""
    job = get_current_job()
    assert job is not None
    return mark(path, job.id)
