"""What the observability hooks cost: processing throughput and Redis commands per job with no hooks, with
metrics, and with metrics and tracing, in the same run on the same server; and the time of a scrape with
a large backlog.

    python bench/observability.py [--jobs 5000] [--reps 3] [--pool process] [--waiting 1000000]

Starts a standalone server (clusterq.testing). For each repetition, each mode in turn (alternating, so
drift hits them alike): ``--jobs`` no-op jobs are enqueued in bulk, then one burst worker (``--pool``, 2
slots) runs them; jobs/s is measured from the worker's start to its end, commands per job from ``INFO
commandstats`` over the processing only. "metrics" is a worker with :class:`JobMetrics` (counting in the
pool's children, reporting to the supervisor); "metrics+tracing" adds :class:`Tracing` with an SDK tracer
provider that exports nowhere (the cost of making the spans). Then ``--waiting`` jobs are enqueued and a
scrape of the worker's registry (queue gauges included) and of the dashboard's deployment registry is
timed (median of 20). Never part of the test suite: the figures depend on the machine.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
sys.path.insert(0, str(HERE.parent / "tests"))

from prometheus_client import generate_latest  # noqa: E402

from clusterq import Queue, Worker  # noqa: E402
from clusterq.observability.metrics import JobMetrics  # noqa: E402
from clusterq.observability.queues import deployment_registry, exposition  # noqa: E402
from clusterq.testing import Standalone  # noqa: E402

CHUNK = 10_000


def commands(client: object) -> int:
    stats = client.info("commandstats")  # type: ignore[attr-defined]
    return sum(int(v["calls"]) for k, v in stats.items() if k not in ("cmdstat_info",))


def fill(q: Queue, n: int) -> None:
    for start in range(0, n, CHUNK):
        q.enqueue_many([Queue.prepare_data("jobs.noop") for _ in range(start, min(n, start + CHUNK))])


MODES = ("off", "metrics", "metrics+tracing")


def hooks_for(mode: str) -> list:
    hooks: list = []
    if mode != "off":
        hooks.append(JobMetrics(queue_gauges=False))
    if mode == "metrics+tracing":
        from opentelemetry.sdk.trace import TracerProvider  # the otel extra: only for this row

        from clusterq.observability.tracing import Tracing
        hooks.append(Tracing(TracerProvider()))  # spans made and ended, exported nowhere
    return hooks


def process(url: str, client: object, n: int, pool: str, mode: str) -> tuple[float, float]:
    q = Queue(f"bench-{mode.replace('+', '-')}", url)
    fill(q, n)
    hooks = hooks_for(mode)
    metrics = bool(hooks)
    worker = Worker(q, url, pool=pool, concurrency=2, hooks=hooks, install_signal_handlers=False)
    before = commands(client)
    start = time.perf_counter()
    worker.work(burst=True)
    elapsed = time.perf_counter() - start
    used = commands(client) - before
    if metrics:
        text = generate_latest(hooks[0].registry).decode()  # type: ignore[attr-defined]
        assert f'clusterq_jobs_total{{function="jobs.noop",outcome="finished",queue="{q.name}"}} {n}.0' in text, \
            "every job counted once"
    return n / elapsed, used / n


def timed(fn: object, reps: int = 20) -> tuple[float, float]:
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), max(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--pool", default="process")
    parser.add_argument("--waiting", type=int, default=1_000_000)
    args = parser.parse_args()
    logging.getLogger("clusterq").setLevel(logging.ERROR)
    topology = Standalone()
    topology.start()
    try:
        client = topology.client()
        rows: dict[str, list[tuple[float, float]]] = {mode: [] for mode in MODES}
        for _ in range(args.reps):
            for mode in MODES:
                client.flushall()
                rows[mode].append(process(topology.url, client, args.jobs, args.pool, mode))
        print(f"processing {args.jobs} no-op jobs, pool {args.pool} x2, median of {args.reps}")
        print(f"{'hooks':<18}{'jobs/s':>10}{'commands/job':>14}")
        for mode in MODES:
            rate = statistics.median(r for r, _ in rows[mode])
            per_job = statistics.median(c for _, c in rows[mode])
            print(f"{mode:<18}{rate:>10.0f}{per_job:>14.2f}")
        client.flushall()
        q = Queue("backlog", topology.url)
        started = time.monotonic()
        fill(q, args.waiting)
        print(f"\nfilled {q.count} waiting jobs in {time.monotonic() - started:.0f} s")
        hook = JobMetrics()
        worker = Worker(q, topology.url, pool="solo", hooks=[hook], install_signal_handlers=False)
        hook.on_worker_start(worker)  # registers the queue gauges as a running worker would (no job run)
        deployment = deployment_registry(q.connection, ["backlog"])
        for label, registry in (("worker /metrics", hook.registry), ("dashboard /metrics", deployment)):
            median, worst = timed(lambda r=registry: exposition(r))
            print(f"scrape {label:<22} median {median:.1f} ms, worst {worst:.1f} ms")
    finally:
        topology.stop()


if __name__ == "__main__":
    main()
