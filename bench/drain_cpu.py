#!/usr/bin/env python
"""Where a draining ``clusterq worker`` spends CPU: ``python bench/drain_cpu.py [--jobs N] [--reps R]``.

Starts its own redis-server (``clusterq.testing.Standalone``), queues N no-op jobs
(``bench/peer_tasks/plain.py``) with ``enqueue_many``, then runs ``clusterq worker --burst`` (its defaults:
process pool, one child per CPU) in a subprocess until the queue is empty. While it drains, the CPU time of
the supervisor and of each child is read from ``/proc/<pid>/stat``, another client PINGs the server every
2 ms (its round-trip times give the p99 a client sees while the worker drains), and the server's own CPU
(``INFO cpu``) and longest command (``SLOWLOG``) are read around the run. Prints, per repetition: jobs/s
over the whole drain (the first job to the last; start-up excluded), CPU microseconds per job of the
supervisor, of the children (summed), and of Redis, the longest script and the PING p50/p99, and the load
average. CPU per job does not depend on how busy the machine is; jobs/s does. ``--realtime`` runs Redis and
the pinger at real-time priority (SCHED_FIFO; root or CAP_SYS_NICE): neither then waits for a CPU the
worker's processes hold, so the PING times and the longest script are what the server itself runs.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))
try:
    import clusterq  # noqa: F401
except ImportError:  # a checkout without installing: use its src/
    sys.path.insert(1, str(BENCH_DIR.parent / "src"))

import redis  # noqa: E402

from clusterq import Queue  # noqa: E402
from clusterq.state import transitions as TR  # noqa: E402
from clusterq.testing import Standalone  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")
NAMES = {t.script.sha: t.name for t in (TR.LEASE, TR.COMPLETE, TR.EXTEND)}


def cpu_s(pid: int) -> float:
    """utime + stime of ``pid`` in seconds (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK


def children_of(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as fh:
            return [int(p) for p in fh.read().split()]
    except OSError:
        return []


def redis_cpu(client: redis.Redis) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


def realtime(pid: int, on: bool = True) -> None:
    os.sched_setscheduler(pid, os.SCHED_FIFO if on else os.SCHED_OTHER, os.sched_param(10 if on else 0))


def pinger(url: str, stop: Any, out: Any, rt: bool = False) -> None:
    """PING 1 ms apart from a process of its own (as bench/peer_drivers/probe.py) until ``stop`` is set."""
    client = redis.Redis.from_url(url)
    client.ping()
    if rt:
        realtime(0)
    samples: list[float] = []
    while not stop.is_set():
        started = time.perf_counter()
        client.ping()
        samples.append(time.perf_counter() - started)
        time.sleep(0.001)
    out.send(samples)


def one(server: Standalone, n: int, ping: bool, extra: list[str], rt: bool = False) -> dict[str, Any]:
    client = redis.Redis.from_url(server.url)
    client.flushall()
    queue = Queue("bench", connection=server.url)
    for first in range(0, n, 50_000):
        size = min(50_000, n - first)
        queue.enqueue_many([queue.prepare_data("peer_tasks.plain.noop") for _ in range(size)])
    client.config_set("slowlog-log-slower-than", 0)
    client.config_set("slowlog-max-len", 100_000)
    client.slowlog_reset()
    client.config_resetstat()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(BENCH_DIR.parent / "src"), str(BENCH_DIR)]))
    worker = subprocess.Popen([sys.executable, "-m", "clusterq", "worker", "--url", server.url, "--quiet",
                               "--burst", *extra, "bench"], env=env)
    # Wait for the first job to leave the queue: the drain has begun (start-up excluded).
    while queue.count == n and worker.poll() is None:
        time.sleep(0.001)
    kids = children_of(worker.pid)
    cpu0 = {pid: cpu_s(pid) for pid in [worker.pid, *kids]}
    rcpu0 = redis_cpu(client)
    left0 = queue.count
    started = time.perf_counter()
    stop = multiprocessing.Event()
    samples: list[float] = []
    ours, theirs = multiprocessing.Pipe()
    probe = multiprocessing.Process(target=pinger, args=(server.url, stop, theirs, rt), daemon=True)
    if ping:
        probe.start()
    cpu1 = dict(cpu0)
    while worker.poll() is None:
        for pid in cpu1:
            value = cpu_s(pid)
            if value:
                cpu1[pid] = value
        if queue.count == 0:
            break
        time.sleep(0.005)
    for pid in cpu1:
        value = cpu_s(pid)
        if value:
            cpu1[pid] = value
    seconds = time.perf_counter() - started
    rcpu1 = redis_cpu(client)
    stop.set()
    worker.wait(timeout=60)
    if ping:
        samples = ours.recv()
        probe.join()
    stats = client.info("commandstats")
    entries = client.slowlog_get(100_000)
    scripts = [e["duration"] / 1000 for e in entries
               if (e["command"] or b"").split(b" ")[0].upper() in (b"EVALSHA", b"EVAL")]
    by_script: dict[str, list[int]] = {}
    for e in entries:
        words = (e["command"] or b"").split(b" ")
        if words[0].upper() == b"EVALSHA" and len(words) > 1:
            name = NAMES.get(words[1].decode(), "?")
            by_script.setdefault(name, []).append(e["duration"])
    client.config_set("slowlog-log-slower-than", 10_000)
    jobs = left0  # jobs drained while measured (about: the queue empties before the last outcome lands)
    samples.sort()
    sup = cpu1[worker.pid] - cpu0[worker.pid]
    kid = sum(cpu1[p] - cpu0[p] for p in kids)
    return {
        "jobs": jobs, "seconds": seconds, "rate": jobs / seconds,
        "sup_us": sup / jobs * 1e6, "kids_us": kid / jobs * 1e6, "redis_us": (rcpu1 - rcpu0) / jobs * 1e6,
        "sup_busy": sup / seconds, "kids_busy": kid / seconds,
        "script_ms": max(scripts, default=0.0),
        "ping_p50": samples[len(samples) // 2] * 1000 if samples else 0.0,
        "ping_p99": samples[int(len(samples) * 0.99)] * 1000 if samples else 0.0,
        "pings": len(samples),
        "evalsha": stats.get("cmdstat_evalsha", {}),
        "commands": {k[len("cmdstat_"):]: (v["calls"], v["usec"]) for k, v in stats.items()},
        "scripts": {name: (len(d), sum(d) / len(d), max(d)) for name, d in by_script.items()},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=50_000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--round-jobs", type=int, help="the worker's --round-jobs (default: its own)")
    parser.add_argument("--no-ping", action="store_true", help="no PING probe (it costs the server a little)")
    parser.add_argument("--realtime", action="store_true",
                        help="Redis and the pinger at real-time priority (the scheduler out of the way)")
    args = parser.parse_args()
    server = Standalone().start()
    try:
        if args.realtime:
            realtime(int(redis.Redis.from_url(server.url).info("server")["process_id"]))
        for rep in range(args.reps):
            extra = ["--round-jobs", str(args.round_jobs)] if args.round_jobs else []
            r = one(server, args.jobs, not args.no_ping, extra, args.realtime)
            load = os.getloadavg()[0]
            print(f"rep {rep + 1}: {r['rate']:,.0f} jobs/s ({r['jobs']:,} in {r['seconds']:.2f} s); CPU us/job: "
                  f"supervisor {r['sup_us']:.1f} (busy {r['sup_busy']:.0%}), children {r['kids_us']:.1f} "
                  f"(busy {r['kids_busy']:.0%}), redis {r['redis_us']:.1f}; longest script {r['script_ms']:.3f} ms; "
                  f"PING p50/p99 {r['ping_p50']:.3f}/{r['ping_p99']:.3f} ms ({r['pings']}); load {load:.2f}",
                  flush=True)
            print(f"    evalsha commandstats: {r['evalsha']}")
            print("    commands (calls, usec): " + ", ".join(f"{k} {c:,}/{u:,}" for k, (c, u) in
                                                       sorted(r["commands"].items(), key=lambda i: -i[1][1])))
            for name, (calls, mean, longest) in sorted(r["scripts"].items()):
                print(f"    {name}: {calls} calls, mean {mean:.0f} us, longest {longest} us")
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
