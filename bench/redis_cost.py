#!/usr/bin/env python
"""Redis's own cost per job: ``python bench/redis_cost.py [-n 20000] [--json]``.

A fresh ``clusterq.testing.Standalone``; N one-by-one ``Queue.enqueue`` calls (a no-op task, no
arguments), then a ``clusterq worker --burst`` drain of them (its defaults: a process pool). For each
phase the server's ``INFO cpu`` (used_cpu_user + used_cpu_sys) and ``INFO commandstats`` deltas are
divided by N: the Redis CPU and the commands (those run inside Lua scripts included) per job, and the
commands by name. The floor of any one-by-one producer is measured the same way, on the same server:
a bare redis-py loop of one RPUSH per round trip whose request has as many bytes as one enqueue's
(``total_net_input_bytes`` per enqueue), so it shows what one round trip costs Redis by itself.

The CPU figures come from the server's rusage, not from the wall clock, but a round trip's share (the
wake-up, the read and write system calls) varies with where the scheduler puts the server and the
client: on a shared machine the same run can give 7 or 25 us per RPUSH. ``--pin CPU`` puts the server,
the producer and the worker on one CPU, which makes them repeatable; the commands' own time
(commandstats usec, which for EVALSHA includes the commands the script runs) does not depend on it.
The server's cron runs meanwhile (``--idle`` measures and subtracts it). The bench's own INFO calls are
left out of the command counts.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
SRC = BENCH_DIR.parent / "src"
sys.path.insert(0, str(BENCH_DIR))
try:
    import clusterq
except ImportError:  # a checkout without installing: use its src/
    sys.path.insert(1, str(SRC))
    import clusterq

import redis  # noqa: E402

from clusterq import Queue  # noqa: E402
from clusterq.state.keys import QueueKeys  # noqa: E402
from clusterq.testing import Standalone  # noqa: E402

NOOP = "peer_tasks.plain.noop"
QUEUE = "bench"


def snapshot(client: redis.Redis) -> dict[str, Any]:
    info: dict[str, Any] = client.execute_command("INFO", "cpu", "stats", "commandstats")
    calls = {k[len("cmdstat_"):]: int(v["calls"]) for k, v in info.items() if k.startswith("cmdstat_")}
    usec = {k[len("cmdstat_"):]: int(v["usec"]) for k, v in info.items() if k.startswith("cmdstat_")}
    cpu = float(info["used_cpu_user"]) + float(info["used_cpu_sys"])
    return {"calls": calls, "usec": usec, "cpu": cpu, "net_in": int(info["total_net_input_bytes"])}


def phase(before: dict[str, Any], after: dict[str, Any], n: int, idle_cpu_per_s: float,
          seconds: float) -> dict[str, Any]:
    calls = {k: after["calls"][k] - before["calls"].get(k, 0) for k in after["calls"]}
    usec = {k: after["usec"][k] - before["usec"].get(k, 0) for k in after["usec"]}
    calls["info"] = calls.get("info", 0) - 1  # the snapshot's own INFO
    calls = {k: v for k, v in calls.items() if v > 0}
    cpu = after["cpu"] - before["cpu"] - idle_cpu_per_s * seconds
    return {
        "cpu_us_per_job": round(cpu / n * 1e6, 2),
        "commands_per_job": round(sum(calls.values()) / n, 3),
        "commands": {k: round(v / n, 3) for k, v in sorted(calls.items(), key=lambda kv: -kv[1])},
        "command_usec_per_job": {k: round(usec[k] / n, 2) for k in sorted(calls, key=lambda k: -usec.get(k, 0))},
        "net_in_bytes_per_job": round((after["net_in"] - before["net_in"]) / n, 1),
        "seconds": round(seconds, 2),
    }


def idle_rate(client: redis.Redis, seconds: float) -> float:
    """The server's CPU per second when nothing is sent (its cron)."""
    if seconds <= 0:
        return 0.0
    before = snapshot(client)
    time.sleep(seconds)
    return (snapshot(client)["cpu"] - before["cpu"]) / seconds


def measure(n: int, idle_s: float, pin: int | None = None) -> dict[str, Any]:
    server = Standalone().start()
    if pin is not None:  # the server, this producer and the worker (it inherits) on one CPU
        os.sched_setaffinity(0, {pin})
        os.sched_setaffinity(server.server.pid or 0, {pin})
    try:
        admin = server.client()
        idle = idle_rate(admin, idle_s)
        queue = Queue(QUEUE, connection=server.url)
        queue.enqueue(NOOP)  # connect and load the script outside the measure
        admin.delete(*[k for k in admin.scan_iter(count=1000)])
        admin.execute_command("CONFIG", "RESETSTAT")

        before = snapshot(admin)
        started = time.perf_counter()
        for _ in range(n):
            queue.enqueue(NOOP)
        enqueue_s = time.perf_counter() - started
        after = snapshot(admin)
        enqueue = phase(before, after, n, idle, enqueue_s)

        src = Path(clusterq.__file__).resolve().parents[1]  # the clusterq measured (PYTHONPATH may name another)
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(src), str(BENCH_DIR)]))
        before = snapshot(admin)
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "clusterq", "worker", "--url", server.url, "--quiet", "--burst",
                        QUEUE], check=True, env=env)
        process_s = time.perf_counter() - started
        after = snapshot(admin)
        process = phase(before, after, n, idle, process_s)
        left = admin.llen(QueueKeys(QUEUE).pending)

        # The floor: one RPUSH per round trip, each request as long as one enqueue's.
        request = enqueue["net_in_bytes_per_job"]
        key = "bench:redis-py-baseline"
        size = max(1, int(request) - len(f"*3\r\n$5\r\nRPUSH\r\n${len(key)}\r\n{key}\r\n$000\r\n\r\n"))
        payload = b"x" * size
        client = redis.Redis.from_url(server.url)
        client.ping()
        admin.delete(key)
        before = snapshot(admin)
        started = time.perf_counter()
        for _ in range(n):
            client.execute_command("RPUSH", key, payload)
        floor_s = time.perf_counter() - started
        after = snapshot(admin)
        floor = phase(before, after, n, idle, floor_s)
        client.close()

        return {
            "n": n,
            "server": admin.info("server").get("redis_version"),
            "idle_cpu_us_per_s": round(idle * 1e6, 1),
            "enqueue": enqueue,
            "process": process,
            "total_cpu_us_per_job": round(enqueue["cpu_us_per_job"] + process["cpu_us_per_job"], 2),
            "total_commands_per_job": round(enqueue["commands_per_job"] + process["commands_per_job"], 3),
            "left_in_pending": left,
            "floor_rpush": floor,
            "loadavg": os.getloadavg(),
            "pinned_cpu": pin,
        }
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=20_000, help="jobs (default 20,000)")
    parser.add_argument("--idle", type=float, default=2.0, help="seconds of idle CPU to subtract (default 2)")
    parser.add_argument("--pin", type=int, metavar="CPU",
                        help="run the server, the producer and the worker on this one CPU: no cross-CPU wake-ups "
                             "in the figures, which then vary less from run to run")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    result = measure(args.n, args.idle, args.pin)
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    print(f"N={result['n']:,}  load average {result['loadavg'][0]:.2f}  "
          f"server idle {result['idle_cpu_us_per_s']:.0f} us/s (subtracted)")
    for name in ("enqueue", "process", "floor_rpush"):
        p = result[name]
        print(f"{name:>11}: {p['cpu_us_per_job']:6.1f} us CPU/job  {p['commands_per_job']:6.3f} commands/job  "
              f"({p['net_in_bytes_per_job']:.0f} B in/job, {p['seconds']:.1f} s)")
        print("             " + ", ".join(f"{k} {v:g}" for k, v in p["commands"].items()))
        print("             usec/job: " + ", ".join(f"{k} {v:g}" for k, v in p["command_usec_per_job"].items()))
    print(f"      total: {result['total_cpu_us_per_job']:6.1f} us CPU/job  "
          f"{result['total_commands_per_job']:6.3f} commands/job (enqueue + process)")
    if result["left_in_pending"]:
        print(f"WARNING: {result['left_in_pending']} ids left in the pending list")
    return 0


if __name__ == "__main__":
    sys.exit(main())
