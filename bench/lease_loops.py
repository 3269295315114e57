#!/usr/bin/env python
"""What a second lease loop would give: ``python bench/lease_loops.py [--jobs N] [--rounds R]``.

One default ``clusterq worker`` has one lease loop: its supervisor and the server take turns
(docs/worker-throughput.md). This bench measures how much a second loop in a process of its own would add.
It starts its own redis-server (``clusterq.testing.Standalone``) and queues N no-op jobs
(``bench/peer_tasks/plain.py``) with ``enqueue_many``. It then drains them with ``clusterq worker --burst``
processes in three arrangements, alternated in each round:

- one default worker (process pool, one child per CPU);
- two workers with one child each (``-c 1``): the same number of children, two loops;
- two default workers: twice the children, two loops (the bench's "2 workers" row).

Each figure is jobs/s from the first job leaving the queue to the queue being empty (start-up left out).
Each round prints the three figures and the two-loop arrangements' gain over the one default worker.
The machine drifts, so compare within a round, not across rounds.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))
try:
    import clusterq  # noqa: F401
except ImportError:  # a checkout without installing: use its src/
    sys.path.insert(1, str(BENCH_DIR.parent / "src"))

import redis  # noqa: E402

from clusterq import Queue  # noqa: E402
from clusterq.testing import Standalone  # noqa: E402

ARRANGEMENTS = {
    "1 default": [[]],
    "2 x -c 1": [["-c", "1"], ["-c", "1"]],
    "2 default": [[], []],
}


def drain(server: Standalone, n: int, workers: list[list[str]]) -> float:
    """Jobs/s of ``workers`` (extra arguments of each ``clusterq worker``) draining ``n`` queued jobs."""
    redis.Redis.from_url(server.url).flushall()
    queue = Queue("bench", connection=server.url)
    for first in range(0, n, 50_000):
        queue.enqueue_many([queue.prepare_data("peer_tasks.plain.noop") for _ in range(min(50_000, n - first))])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(BENCH_DIR.parent / "src"), str(BENCH_DIR)]))
    processes = [subprocess.Popen([sys.executable, "-m", "clusterq", "worker", "--url", server.url, "--quiet",
                                   "--burst", *extra, "bench"], env=env) for extra in workers]
    try:
        while queue.count == n and all(p.poll() is None for p in processes):
            time.sleep(0.001)
        left = queue.count
        started = time.perf_counter()
        while queue.count and any(p.poll() is None for p in processes):
            time.sleep(0.002)
        seconds = time.perf_counter() - started
    finally:
        for process in processes:
            process.wait(timeout=60)
    return left / seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=60_000)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    server = Standalone().start()
    gains: dict[str, list[float]] = {name: [] for name in ARRANGEMENTS if name != "1 default"}
    try:
        for turn in range(args.rounds):
            rates = {name: drain(server, args.jobs, workers) for name, workers in ARRANGEMENTS.items()}
            base = rates["1 default"]
            parts = [f"1 default {base:,.0f}"]
            for name in gains:
                gains[name].append(rates[name] / base - 1)
                parts.append(f"{name} {rates[name]:,.0f} ({rates[name] / base - 1:+.0%})")
            print(f"round {turn + 1}: jobs/s " + ", ".join(parts), flush=True)
    finally:
        server.stop()
    print("median gain over one default worker: " + ", ".join(
        f"{name} {statistics.median(values):+.0%}" for name, values in gains.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
