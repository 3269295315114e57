#!/usr/bin/env python
"""cProfile of the worker hot loop: ``python bench/profile_worker.py [--jobs N] [--pool process|solo] [--top K]``.

Starts its own redis-server (``clusterq.testing.Standalone``, free loopback port), queues N no-op jobs
(``bench/peer_tasks/plain.py``) with ``enqueue_many``, then runs ``clusterq worker --burst`` (the CLI's
``main``, in this process) under cProfile until the queue is empty, and prints the top functions by own
time and by cumulative time. With ``--pool process`` (the default, as ``clusterq worker``) the profile
is the supervisor's: fetching, leasing, handing jobs to the children, recording outcomes; the children
run in their own processes and are not profiled. ``--pool solo`` runs the jobs in the profiled process,
so the whole path of a job is in one profile. ``--out FILE`` keeps the raw profile (for snakeviz etc.).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))
try:
    import clusterq  # noqa: F401
except ImportError:  # a checkout without installing: use its src/
    sys.path.insert(1, str(BENCH_DIR.parent / "src"))

from clusterq import Queue  # noqa: E402
from clusterq.cli.main import main as cli  # noqa: E402
from clusterq.testing import Standalone  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--pool", default="process", choices=["process", "solo", "thread", "asyncio"])
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--round-jobs", type=int, help="the worker's --round-jobs (default: its own)")
    args = parser.parse_args()
    server = Standalone().start()
    try:
        queue = Queue("bench", connection=server.url)
        for first in range(0, args.jobs, 50_000):
            size = min(50_000, args.jobs - first)
            queue.enqueue_many([queue.prepare_data("peer_tasks.plain.noop") for _ in range(size)])
        profile = cProfile.Profile()
        started = time.perf_counter()
        profile.enable()
        code = cli(["worker", "--url", server.url, "--quiet", "--burst", "--pool", args.pool,
                    *(["--round-jobs", str(args.round_jobs)] if args.round_jobs else []), "bench"])
        profile.disable()
        seconds = time.perf_counter() - started
        left = queue.count
    finally:
        server.stop()
    if code or left:
        print(f"worker exited with {code}, {left} jobs left", file=sys.stderr)
        return 1
    print(f"{args.jobs:,} no-op jobs, pool={args.pool}: {seconds:.2f} s under cProfile "
          f"({args.jobs / seconds:,.0f} jobs/s, profiler overhead included)\n")
    if args.out:
        profile.dump_stats(str(args.out))
    for order in ("tottime", "cumulative"):
        text = io.StringIO()
        stats = pstats.Stats(profile, stream=text).strip_dirs().sort_stats(order)
        stats.print_stats(args.top)
        body = text.getvalue()
        print(f"--- top {args.top} by {order} ---")
        print(body[body.index("   ncalls"):].rstrip() if "   ncalls" in body else body)
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
