"""Partitioned queues on a local 3-primary cluster (clusterq.testing): placement, memory, drain throughput,
idle cost and wake-up latency.

    python bench/partitions.py [--jobs 30000] [--partitions 12] [--idle-s 10]

1. placement: N jobs (enqueue_many, 1,000 per call) into a P-partition queue; jobs and used memory per
   primary, and the enqueue rate;
2. drain: one worker (solo pool, in this process, burst) drains the P-partition queue, then the same N
   jobs in an unpartitioned queue: jobs/s for each;
3. idle: one worker on a 64-partition queue, every partition empty, for --idle-s seconds: commands per
   second summed over the primaries (INFO commandstats, its own calls excluded);
4. wake-up: jobs enqueued one at a time into that idle worker's queue (each into the next partition):
   enqueue-to-start latency, median and max.
Never part of the test suite: the figures depend on the machine.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

from clusterq import Queue, Worker  # noqa: E402
from clusterq.testing import Cluster  # noqa: E402


def command_calls(nodes: list[Any]) -> tuple[int, int]:
    """(all commands, EVALSHA calls) summed over ``nodes``; INFO excluded (commands run inside scripts
    count in commandstats: the first figure includes them)."""
    total = sent = 0
    for node in nodes:
        stats = node.client().info("commandstats")
        total += sum(int(v["calls"]) for k, v in stats.items() if k not in ("cmdstat_info", "cmdstat_hello"))
        sent += int(stats.get("cmdstat_evalsha", {}).get("calls", 0))
    return total, sent


def used_memory(nodes: list[Any]) -> dict[int, int]:
    return {node.port: int(node.client().info("memory")["used_memory"]) for node in nodes}


def fill(q: Any, jobs: int) -> float:
    began = time.perf_counter()
    for start in range(0, jobs, 1000):
        q.enqueue_many([q.prepare_data("operator.add", (i, 1)) for i in range(start, min(jobs, start + 1000))])
    return time.perf_counter() - began


def drain(q: Any, url: str) -> tuple[int, float]:
    worker = Worker(q.name, url, pool="solo", install_signal_handlers=False, max_batch=100)
    began = time.perf_counter()
    done = worker.work(burst=True)
    return done, time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=30_000)
    parser.add_argument("--partitions", type=int, default=12)
    parser.add_argument("--idle-s", type=float, default=60.0)
    parser.add_argument("--samples", type=int, default=64)
    args = parser.parse_args()
    with Cluster(primaries=3, replicas_per_primary=0).start() as cluster:
        url = cluster.url
        primaries = cluster.primaries()
        print(f"cluster: 3 primaries ({', '.join(str(p.port) for p in primaries)}), {cluster.binary.version_string}")

        # 1. placement and memory
        q = Queue("bench-events", url, partitions=args.partitions)
        before = used_memory(primaries)
        seconds = fill(q, args.jobs)
        after = used_memory(primaries)
        counts = q.counts()
        per_node: Counter[str] = Counter()
        parts_per_node: Counter[str] = Counter()
        for (_, _, node), count in zip(q.layout(), counts):
            per_node[node] += count
            parts_per_node[node] += 1
        print(f"\n{args.jobs} jobs into {args.partitions} partitions: {args.jobs / seconds:,.0f} jobs/s enqueued "
              f"(enqueue_many, 1,000 per call)")
        for node in sorted(per_node):
            port = int(node.rsplit(":", 1)[1])
            print(f"  {node}: {parts_per_node[node]} partitions, {per_node[node]} jobs, "
                  f"+{(after[port] - before[port]) / 1e6:.1f} MB used memory")

        # 2. drain: partitioned vs not
        done, seconds = drain(q, url)
        print("\ndrain, 1 worker (solo pool, batches of 100):")
        print(f"  {args.partitions} partitions: {done} jobs in {seconds:.2f} s = {done / seconds:,.0f} jobs/s "
              f"(finished registry: {q.finished_job_registry.count}, waiting: {q.count})")
        plain = Queue("bench-plain", url)
        fill(plain, args.jobs)
        done, seconds = drain(plain, url)
        print(f"  unpartitioned: {done} jobs in {seconds:.2f} s = {done / seconds:,.0f} jobs/s "
              f"(finished registry: {plain.finished_job_registry.count}, waiting: {plain.count})")

        # 3. idle cost of a worker on a 64-partition queue
        idle = Queue("bench-idle", url, partitions=64)
        idle.declare()
        worker = Worker("bench-idle", url, pool="solo", install_signal_handlers=False)
        thread = threading.Thread(target=worker.work, daemon=True)
        thread.start()
        time.sleep(3.0)  # start-up: first lease round, subscriptions, first maintenance
        start_total, start_sent = command_calls(primaries)
        time.sleep(args.idle_s)
        total, sent = command_calls(primaries)
        total, sent = total - start_total, sent - start_sent
        print(f"\nidle worker on a 64-partition queue, {args.idle_s:g} s (--idle-s; the worker's fallback poll is "
              f"every 30 s): {sent / args.idle_s:.2f} EVALSHA/s sent, {total / args.idle_s:.1f} commands/s in all "
              "(the scripts' own commands included), summed over the primaries")

        # 4. wake-up latency
        latencies = []
        for _ in range(args.samples):
            enqueued_at = time.time()
            job = idle.enqueue("time.time")
            deadline = time.monotonic() + 10
            while (value := job.return_value()) is None and time.monotonic() < deadline:
                time.sleep(0.001)
            latencies.append((float(value) - enqueued_at) * 1000 if value is not None else float("inf"))
            time.sleep(0.05)
        latencies.sort()
        print(f"wake-up, {args.samples} jobs one at a time (round-robin over the 64 partitions): "
              f"enqueue-to-start median {statistics.median(latencies):.2f} ms, max {latencies[-1]:.2f} ms")
        worker.request_stop()
        thread.join(timeout=10)


if __name__ == "__main__":
    main()
