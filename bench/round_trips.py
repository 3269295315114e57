#!/usr/bin/env python
"""When Redis waits for a draining worker: ``python bench/round_trips.py [--jobs N] [--reps R] [--round-jobs N]``.

Starts its own redis-server (``clusterq.testing.Standalone``), queues N no-op jobs
(``bench/peer_tasks/plain.py``) with ``enqueue_many``, then runs ``clusterq worker --burst`` (the CLI's
``main``, in this process, with its defaults: process pool, one child per CPU) until the queue is empty,
timing every round trip the supervisor makes (``clusterq.connection.packed.exchange``, the bounded
writes of a lease and its riding outcomes). Prints, per repetition, over the middle 80 % of the round
trips (start-up and the tail left out): jobs/s, the median time inside a round trip (the server runs
the writes; the supervisor reads the children's outcomes meanwhile), the median gap between one round
trip's last reply and the next one's first write (the server has nothing of this worker's to run: the
supervisor settles the outcomes, hands the leased jobs to the children, records the outcomes they sent,
builds and packs the next calls), the share of the time in gaps, and the server's own CPU per job
(``INFO cpu``).

The supervisor and the server take turns: what the supervisor does in a gap is time the server idles,
so the gap's share bounds what overlapping more of that work could gain (docs/worker-throughput.md).
"""

from __future__ import annotations

import argparse
import itertools
import statistics
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
from drain_cpu import redis_cpu  # noqa: E402

import clusterq.state.store as store_module  # noqa: E402
from clusterq import Queue  # noqa: E402
from clusterq.cli.main import main as cli  # noqa: E402
from clusterq.testing import Standalone  # noqa: E402

NOOP = "peer_tasks.plain.noop"


def drain(server: Standalone, n: int, extra: list[str]) -> dict[str, float]:
    queue = Queue("bench", connection=server.url)
    for first in range(0, n, 50_000):
        queue.enqueue_many([queue.prepare_data(NOOP) for _ in range(min(50_000, n - first))])
    spans: list[tuple[float, float]] = []
    exchange = store_module.exchange

    def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return exchange(*args, **kwargs)
        finally:
            spans.append((started, time.perf_counter()))

    admin = redis.Redis.from_url(server.url)
    cpu0 = redis_cpu(admin)
    store_module.exchange = timed  # the name Store's packed pipeline calls
    try:
        started = time.perf_counter()
        code = cli(["worker", "--url", server.url, "--quiet", "--burst", *extra, "bench"])
        seconds = time.perf_counter() - started
    finally:
        store_module.exchange = exchange
    redis_s = redis_cpu(admin) - cpu0
    if code or queue.count:
        raise SystemExit(f"worker exited with {code}, {queue.count} jobs left")
    middle = spans[len(spans) // 10 : len(spans) - len(spans) // 10]
    inside = [end - start for start, end in middle]
    gaps = [later[0] - earlier[1] for earlier, later in itertools.pairwise(middle)]
    span_s = middle[-1][1] - middle[0][0] if middle else seconds
    return {"rate": n / seconds, "trips": len(spans), "inside_ms": statistics.median(inside) * 1e3,
            "gap_ms": statistics.median(gaps) * 1e3, "gap_share": sum(gaps) / span_s,
            "jobs_per_trip": n / max(1, len(spans)), "redis_us": redis_s / n * 1e6}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=50_000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--round-jobs", type=int, help="the worker's --round-jobs (default: its own)")
    args = parser.parse_args()
    extra = ["--round-jobs", str(args.round_jobs)] if args.round_jobs else []
    for rep in range(args.reps):
        server = Standalone().start()
        try:
            r = drain(server, args.jobs, extra)
        finally:
            server.stop()
        print(f"rep {rep + 1}: {r['rate']:,.0f} jobs/s (start-up included); {r['trips']:,.0f} round trips of "
              f"{r['jobs_per_trip']:.0f} jobs; inside one (median) {r['inside_ms']:.2f} ms, gap after one "
              f"{r['gap_ms']:.2f} ms ({r['gap_share']:.0%} of the time); Redis CPU {r['redis_us']:.1f} us/job",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
