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

``--breakdown`` also times the supervisor's steps outside the round trips (what fills the gaps), each as
microseconds per job: settling the recorded outcomes, reading the lease replies, handing batches to the
children (and, within it, writing their frames to the pipes), taking the children's outcomes, recording
them, building the next ``complete`` calls, the time limits, maintenance. The timers cost a little
themselves: read the shares, not the jobs/s, of such a run.
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
from clusterq.worker import fetch as fetch_module  # noqa: E402
from clusterq.worker import outcomes as outcomes_module  # noqa: E402
from clusterq.worker import worker as worker_module  # noqa: E402
from clusterq.worker.pools import process as process_module  # noqa: E402

NOOP = "peer_tasks.plain.noop"
STEPS = (
    (fetch_module.Fetcher, "settle", "settle the recorded outcomes (Fetcher.settle)"),
    (fetch_module.Fetcher, "_leased_all", "read the lease replies, hold the leases (Fetcher._leased_all)"),
    (process_module.ProcessPool, "submit", "hand the batches to the children (ProcessPool.submit)"),
    (process_module, "_send_plain", "  of which: write a batch's frame to a child's pipe"),
    (process_module.ProcessPool, "collect", "take the children's outcomes (ProcessPool.collect)"),
    (worker_module.Worker, "_absorb", "record them (Worker._absorb)"),
    (outcomes_module.Outcomes, "take", "build the next complete calls (Outcomes.take)"),
    (process_module.ProcessPool, "enforce_limits", "time limits (ProcessPool.enforce_limits)"),
    (worker_module.Worker, "_maintain", "maintenance (Worker._maintain)"),
)
"""The supervisor's steps ``--breakdown`` times outside the round trips: (owner, attribute, label)."""


class Breakdown:
    """Wraps :data:`STEPS` with timers that count only outside a round trip (a step called from inside one,
    e.g. the children's outcomes taken while the server runs the writes, overlaps the server's work)."""

    def __init__(self) -> None:
        self.inside = False
        self.seconds: dict[str, float] = {label: 0.0 for _, _, label in STEPS}
        self.calls: dict[str, int] = {label: 0 for _, _, label in STEPS}
        self._saved: list[tuple[Any, str, Any]] = []

    def install(self) -> None:
        for owner, name, label in STEPS:
            original = getattr(owner, name)
            self._saved.append((owner, name, original))
            setattr(owner, name, self._timed(original, label, batches_only=name == "_send_plain"))

    def remove(self) -> None:
        for owner, name, original in reversed(self._saved):
            setattr(owner, name, original)
        self._saved.clear()

    def _timed(self, original: Any, label: str, batches_only: bool) -> Any:
        def timed(*args: Any, **kwargs: Any) -> Any:
            # A child's outcome frame (a tuple) goes the same way: only the supervisor's batches (lists).
            if self.inside or (batches_only and not isinstance(args[-1], list)):
                return original(*args, **kwargs)
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.seconds[label] += time.perf_counter() - started
                self.calls[label] += 1
        return timed


def drain(server: Standalone, n: int, extra: list[str], breakdown: Breakdown | None = None) -> dict[str, Any]:
    queue = Queue("bench", connection=server.url)
    for first in range(0, n, 50_000):
        queue.enqueue_many([queue.prepare_data(NOOP) for _ in range(min(50_000, n - first))])
    spans: list[tuple[float, float]] = []
    exchange = store_module.exchange

    def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        if breakdown is not None:
            breakdown.inside = True
        try:
            return exchange(*args, **kwargs)
        finally:
            spans.append((started, time.perf_counter()))
            if breakdown is not None:
                breakdown.inside = False

    admin = redis.Redis.from_url(server.url)
    cpu0 = redis_cpu(admin)
    store_module.exchange = timed  # the name Store's packed pipeline calls
    if breakdown is not None:
        breakdown.install()
    try:
        started = time.perf_counter()
        code = cli(["worker", "--url", server.url, "--quiet", "--burst", *extra, "bench"])
        seconds = time.perf_counter() - started
    finally:
        store_module.exchange = exchange
        if breakdown is not None:
            breakdown.remove()
    redis_s = redis_cpu(admin) - cpu0
    if code or queue.count:
        raise SystemExit(f"worker exited with {code}, {queue.count} jobs left")
    middle = spans[len(spans) // 10 : len(spans) - len(spans) // 10]
    inside = [end - start for start, end in middle]
    gaps = [later[0] - earlier[1] for earlier, later in itertools.pairwise(middle)]
    span_s = middle[-1][1] - middle[0][0] if middle else seconds
    return {"rate": n / seconds, "trips": len(spans), "inside_ms": statistics.median(inside) * 1e3,
            "gap_ms": statistics.median(gaps) * 1e3, "gap_share": sum(gaps) / span_s,
            "jobs_per_trip": n / max(1, len(spans)), "redis_us": redis_s / n * 1e6,
            "inside_us": sum(inside) / n * 1e6 * len(spans) / max(1, len(middle)),
            "gap_us": sum(gaps) / n * 1e6 * len(spans) / max(1, len(middle))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=50_000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--round-jobs", type=int, help="the worker's --round-jobs (default: its own)")
    parser.add_argument("--breakdown", action="store_true", help="time the supervisor's steps outside the round trips")
    args = parser.parse_args()
    extra = ["--round-jobs", str(args.round_jobs)] if args.round_jobs else []
    for rep in range(args.reps):
        server = Standalone().start()
        breakdown = Breakdown() if args.breakdown else None
        try:
            r = drain(server, args.jobs, extra, breakdown)
        finally:
            server.stop()
        print(f"rep {rep + 1}: {r['rate']:,.0f} jobs/s (start-up included); {r['trips']:,.0f} round trips of "
              f"{r['jobs_per_trip']:.0f} jobs; inside one (median) {r['inside_ms']:.2f} ms, gap after one "
              f"{r['gap_ms']:.2f} ms ({r['gap_share']:.0%} of the time); Redis CPU {r['redis_us']:.1f} us/job",
              flush=True)
        if breakdown is not None:
            print(f"    per job: inside the round trips {r['inside_us']:.1f} us, in the gaps {r['gap_us']:.1f} us; "
                  "the supervisor's steps outside the round trips (us/job, calls):")
            for label, seconds in breakdown.seconds.items():
                print(f"      {label:<64} {seconds / args.jobs * 1e6:5.2f}  ({breakdown.calls[label]:,})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
