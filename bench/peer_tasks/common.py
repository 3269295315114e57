"""What every benchmark job does, whatever the system: count itself, or record its start latency.

Standard library only: this module is imported in clusterq's interpreter and in the peers' venv alike.

- ``count_one()`` adds one to this process's counter in the file ``$BENCH_COUNTER_DIR/<pid>``,
  memory-mapped so an increment costs no system call: three little-endian 64-bit integers, the count,
  and the wall-clock times (ns) at which the first and the last job of this process finished. The bench
  takes "steady state" throughput from the first job done to the last job done over all processes.
- ``record_latency(enqueued_at)`` appends ``time.time() - enqueued_at`` to ``$BENCH_LATENCY_FILE``.
"""

from __future__ import annotations

import mmap
import os
import struct
import threading
import time

COUNTER_DIR_ENV = "BENCH_COUNTER_DIR"
LATENCY_FILE_ENV = "BENCH_LATENCY_FILE"

RECORD = 24
"""Bytes of one counter file: count, first done (ns), last done (ns)."""

_lock = threading.Lock()
_pid = 0
_map: mmap.mmap | None = None


def _open_counter(pid: int) -> mmap.mmap | None:
    directory = os.environ.get(COUNTER_DIR_ENV)
    if not directory:
        return None
    path = os.path.join(directory, str(pid))
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.ftruncate(fd, RECORD)
        return mmap.mmap(fd, RECORD)
    finally:
        os.close(fd)


def count_one() -> None:
    """Count one executed job in this process (threads share the counter; forks get their own)."""
    global _pid, _map
    with _lock:
        pid = os.getpid()
        if pid != _pid:
            _map = _open_counter(pid)
            _pid = pid
        if _map is not None:
            now = time.time_ns()
            count, first, _last = struct.unpack_from("<qqq", _map, 0)
            struct.pack_into("<qqq", _map, 0, count + 1, first if count else now, now)


def record_latency(enqueued_at: float) -> None:
    """Append this job's enqueue-to-start delay (seconds) to the latency file."""
    delay = time.time() - float(enqueued_at)
    path = os.environ.get(LATENCY_FILE_ENV)
    if path:
        with open(path, "a") as out:
            out.write(f"{delay:.9f}\n")
