"""The limits behind the targets a run can miss, measured in the same run, on the same server and machine.

A target is met, or its miss is explained by a measurement that shows the limit. These are those
measurements; none of them runs clusterq's code on the server side:

- ``ping_floor``: another client's PING percentiles while CPU-bound processes that never touch Redis keep
  every core busy (as many as the machine has CPUs): the scheduling delay a prober sees on a machine
  whose cores a worker at full speed keeps busy, with Redis itself idle.
- ``memory_floor``: bytes per waiting job of the smallest layout that keeps one record per job: the id in
  the queue's pending list plus a hash under the job's key holding only its status, with clusterq's key
  shapes and an id as long as clusterq's (32 hex digits).
- ``startup_floor``: wall time from spawning an interpreter to its exit, for ``python -c pass``,
  ``import redis`` and the ``clusterq worker`` command's imports: what "with start-up" pays before the
  first job whatever the worker does.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
import uuid
from typing import Any

import redis

from clusterq.state.keys import QueueKeys

from .measure import percentile
from .procs import Runtime, start_gated

BURN = "import time\nend = time.monotonic() + {seconds}\nwhile time.monotonic() < end: pass\n"


def ping_floor(url: str, probe_runtime: Runtime, seconds: float = 3.0) -> dict[str, float]:
    """PING p50/p99 (ms) from the bench's probe process while ``os.cpu_count()`` busy loops run."""
    burners = [subprocess.Popen([sys.executable, "-c", BURN.format(seconds=seconds + 2.0)])
               for _ in range(os.cpu_count() or 1)]
    probe = start_gated(probe_runtime, "probe", {"url": url, "pause_s": 0.001}, 1, 60.0, label="ping-floor")[0]
    try:
        time.sleep(0.5)  # the burners are spinning
        probe.go()
        time.sleep(seconds)
        probe.send("STOP")
        samples = sorted(ms for _, ms in probe.wait(60.0)["samples"])
    finally:
        probe.stop()
        for burner in burners:
            burner.kill()
            burner.wait()
    return {"p50_ms": percentile(samples, 50), "p99_ms": percentile(samples, 99), "samples": len(samples),
            "burners": len(burners)}


def memory_floor(url: str, n: int, queue: str = "bench") -> float:
    """Bytes per job of ``n`` ids in a pending list plus ``n`` one-field hashes (status only)."""
    keys = QueueKeys(queue)
    client = redis.Redis.from_url(url)
    try:
        client.flushall()
        before = int(client.info("memory")["used_memory"])
        for start in range(0, n, 1000):
            ids = [uuid.uuid4().hex for _ in range(min(1000, n - start))]
            pipe = client.pipeline(transaction=False)
            pipe.rpush(keys.pending, *ids)
            for job_id in ids:
                pipe.hset(keys.job(job_id), "s", "queued")
            pipe.execute()
        after = int(client.info("memory")["used_memory"])
        client.flushall()
    finally:
        client.close()
    return (after - before) / n


def _spawn_s(python: str, code: str, env: dict[str, str], reps: int) -> float:
    times = []
    for _ in range(reps):
        began = time.perf_counter()
        subprocess.run([python, "-c", code], env=env, check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def startup_floor(runtime: Runtime, reps: int = 5) -> dict[str, float]:
    """Median spawn-to-exit seconds of an interpreter doing nothing, importing redis, importing the CLI."""
    env = {**os.environ, **runtime.env}
    return {
        "python_s": _spawn_s(runtime.python, "pass", env, reps),
        "import_redis_s": _spawn_s(runtime.python, "import redis", env, reps),
        "import_cli_s": _spawn_s(runtime.python, "import clusterq.cli.main", env, reps),
    }


def measure(url: str, runtime: Runtime, n: int, log: Any) -> dict[str, Any]:
    """All three, logged as they come."""
    found: dict[str, Any] = {}
    found["startup"] = startup_floor(runtime)
    s = found["startup"]
    log(f"   start-up floor: python -c pass {s['python_s'] * 1000:.0f} ms, import redis "
        f"{s['import_redis_s'] * 1000:.0f} ms, import clusterq.cli.main {s['import_cli_s'] * 1000:.0f} ms")
    found["memory_floor"] = memory_floor(url, n)
    log(f"   memory floor (id in the list + a status-only hash per job): {found['memory_floor']:.0f} B/job")
    found["ping_floor"] = ping_floor(url, runtime)
    p = found["ping_floor"]
    log(f"   PING with {p['burners']} CPU-bound processes and Redis idle: p50/p99 {p['p50_ms']:.3f}/"
        f"{p['p99_ms']:.3f} ms over {p['samples']} pings")
    return found
