"""Partitioned queues on a local 3-primary cluster (clusterq.testing): placement, memory, drain throughput,
Redis CPU per primary, idle cost and wake-up latency.

    python bench/partitions.py [--jobs 30000] [--partitions 12] [--idle-s 10] [--skip-idle]

1-2. for a P-partition queue, then an unpartitioned one: N jobs (enqueue_many, 1,000 per call) and the Redis
   CPU that cost; jobs and
   used memory per primary; then worker processes (solo pool, batches of 100, burst) drain them, 1 process
   and then 2 (the queue is filled again): jobs/s, the workers' CPU per job, and each primary's CPU during
   the drain (INFO cpu, user + sys), with the spread (largest deviation from the mean) over the primaries;
3. idle: one worker on a 64-partition queue, every partition empty, for --idle-s seconds: commands per
   second summed over the primaries (INFO commandstats, its own calls excluded);
4. wake-up: jobs enqueued one at a time into that idle worker's queue (each into the next partition):
   enqueue-to-start latency, median and max.
Never part of the test suite: the figures depend on the machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import threading
import time
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


def redis_cpu(nodes: list[Any]) -> dict[int, float]:
    """CPU seconds (user + sys, main thread and children) each server has used so far (INFO cpu)."""
    out = {}
    for node in nodes:
        cpu = node.client().info("cpu")
        out[node.port] = float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])
    return out


WORKER_SCRIPT = """
import os, sys, time
sys.path.insert(0, sys.argv[1])
from clusterq import Worker
name, url, start = sys.argv[2], sys.argv[3], float(sys.argv[4])
worker = Worker(name, url, pool="solo", install_signal_handlers=False, max_batch=100)
time.sleep(max(0.0, start - time.time()))
cpu0 = sum(os.times()[:2])
done = worker.work(burst=True)
print(done, time.time(), sum(os.times()[:2]) - cpu0)
"""


def drain(name: str, url: str, processes: int, primaries: list[Any]) -> dict[str, Any]:
    """``processes`` worker processes (solo pool, batches of 100, burst) drain queue ``name`` together,
    all starting at the same instant; returns jobs, seconds, the workers' CPU and each primary's CPU."""
    start = time.time() + 3.0  # imports and connections happen before the clock starts
    procs = [subprocess.Popen([sys.executable, "-c", WORKER_SCRIPT, str(HERE.parent / "src"), name, url, str(start)],
                              stdout=subprocess.PIPE, text=True) for _ in range(processes)]
    time.sleep(max(0.0, start - time.time() - 0.2))
    cpu_before = redis_cpu(primaries)
    outputs = [proc.communicate()[0].split() for proc in procs]
    cpu_after = redis_cpu(primaries)
    if any(proc.returncode for proc in procs) or any(len(out) != 3 for out in outputs):
        raise SystemExit(f"a worker process failed: {outputs}")
    done = sum(int(out[0]) for out in outputs)
    seconds = max(float(out[1]) for out in outputs) - start
    return {"done": done, "seconds": seconds, "client_cpu": sum(float(out[2]) for out in outputs),
            "redis_cpu": {port: cpu_after[port] - cpu_before[port] for port in cpu_before}}


def spread(values: list[float]) -> str:
    """The largest deviation from the mean, in percent of the mean."""
    mean = sum(values) / len(values)
    return f"{max(abs(v - mean) for v in values) / mean * 100:.1f}%" if mean else "n/a"


def run_kind(label: str, q: Any, url: str, jobs: int, primaries: list[Any], node_of_slot: Any) -> None:
    ports = [p.port for p in primaries]
    before, cpu_before = used_memory(primaries), redis_cpu(primaries)
    seconds = fill(q, jobs)
    after, cpu_after = used_memory(primaries), redis_cpu(primaries)
    fill_cpu = sum(cpu_after.values()) - sum(cpu_before.values())
    counts = q.counts() if hasattr(q, "counts") else [q.count]
    slots = [slot for _, slot, _ in q.layout()] if hasattr(q, "layout") else [q.slot]
    per_port = dict.fromkeys(ports, 0)
    for slot, count in zip(slots, counts):
        per_port[node_of_slot(slot).port] += count
    memory = {port: (after[port] - before[port]) / 1e6 for port in ports}
    print(f"\n{label}: {jobs:,} jobs enqueued at {jobs / seconds:,.0f} jobs/s (enqueue_many, 1,000 per call); "
          f"Redis CPU {fill_cpu / jobs * 1e6:.0f} µs/job in all")
    rows = []
    for processes in (1, 2):
        if processes == 2:
            fill(q, jobs)
        result = drain(q.name, url, processes, primaries)
        rows.append((processes, result))
    one = rows[0][1]
    print("  | primary | jobs | used memory (MB) | Redis CPU s, drain by 1 process | µs Redis CPU per job |")
    print("  |---|---|---|---|---|")
    for port in ports:
        cpu = one["redis_cpu"][port]
        per_job = f"{cpu / per_port[port] * 1e6:.0f}" if per_port[port] else "-"
        print(f"  | {port} | {per_port[port]:,} | {memory[port]:.1f} | {cpu:.2f} | {per_job} |")
    print(f"  spread (largest deviation from the mean): jobs {spread(list(per_port.values()))}, "
          f"memory {spread(list(memory.values()))}, Redis CPU {spread(list(one['redis_cpu'].values()))}")
    for processes, result in rows:
        cpu = result["redis_cpu"]
        print(f"  drain, {processes} worker process{'es' if processes > 1 else ''} (solo pool, batches of 100): "
              f"{result['done']:,} jobs in {result['seconds']:.1f} s = {result['done'] / result['seconds']:,.0f} "
              f"jobs/s; worker CPU {result['client_cpu'] / max(result['done'], 1) * 1e6:.0f} µs/job; Redis CPU "
              f"per primary {', '.join(f'{cpu[p]:.1f}' for p in ports)} s "
              f"({sum(cpu.values()) / max(result['done'], 1) * 1e6:.0f} µs/job in all, "
              f"spread {spread(list(cpu.values()))})")
    print(f"  left: waiting {q.count}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=30_000)
    parser.add_argument("--partitions", type=int, default=12)
    parser.add_argument("--idle-s", type=float, default=60.0)
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--skip-idle", action="store_true", help="only placement and drain (sections 1 and 2)")
    args = parser.parse_args()
    with Cluster(primaries=3, replicas_per_primary=0).start() as cluster:
        url = cluster.url
        primaries = cluster.primaries()
        print(f"cluster: 3 primaries ({', '.join(str(p.port) for p in primaries)}), {cluster.binary.version_string}; "
              f"load average before: {os.getloadavg()[0]:.2f}")

        # 1 and 2. placement, memory, drain throughput and Redis CPU per primary: partitioned vs not
        run_kind(f"{args.partitions}-partition queue", Queue("bench-events", url, partitions=args.partitions), url,
                 args.jobs, primaries, cluster.node_for_slot)
        run_kind("unpartitioned queue", Queue("bench-plain", url), url, args.jobs, primaries, cluster.node_for_slot)
        if args.skip_idle:
            return

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
