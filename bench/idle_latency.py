"""Idle-worker cost and enqueue-to-start latency, on a standalone server and on a local cluster.

    python bench/idle_latency.py [--samples 300] [--idle-s 20] [--skip-cluster] [--pool process|solo|...]

For each topology: starts it (clusterq.testing), starts one `clusterq worker` process on 5 queues (on
the cluster, queues chosen so they land on all 3 primaries), then
  1. idle cost: with every queue empty, sums `INFO commandstats` calls over all primaries before and
     after an idle window (the INFO calls themselves excluded) -> commands per second, and how many of
     them the worker sent (EVALSHA) vs ran inside scripts;
  2. latency: enqueues one job at a time, with a pause so the worker is idle each time; the job returns
     `time.time() - enqueued_at` -> median and p99;
  3. on the cluster: 10,000 jobs over the 5 queues, one worker, all must finish; then every `cq:*` key
     on every primary is checked to be in its queue's single slot (CLUSTER KEYSLOT).
Never part of the test suite: the figures depend on the machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
sys.path.insert(0, str(HERE))

from clusterq import Queue, key_slot, queue_slot  # noqa: E402
from clusterq.testing import Cluster, Standalone  # noqa: E402

QUEUE_COUNT = 5


def pick_queues(topology: object) -> list[str]:
    """Five queue names whose slots cover every primary of the topology (any five on standalone)."""
    if not isinstance(topology, Cluster):
        return [f"lat-{i}" for i in range(QUEUE_COUNT)]
    owners: dict[int, list[str]] = {}
    i = 0
    while len(owners) < 3 or sum(len(v) for v in owners.values()) < QUEUE_COUNT:
        name = f"lat-{i}"
        port = topology.node_for_slot(queue_slot(name)).port
        if len(owners.get(port, [])) < 2:
            owners.setdefault(port, []).append(name)
        i += 1
    return [n for names in owners.values() for n in names][:QUEUE_COUNT]


def primary_clients(topology: object) -> list:
    if isinstance(topology, Cluster):
        return [node.client() for node in topology.primaries()]
    return [topology.client()]


def command_calls(clients: list) -> dict[str, int]:
    totals: dict[str, int] = {}
    for client in clients:
        for name, stats in client.info("commandstats").items():
            totals[name] = totals.get(name, 0) + int(stats["calls"])
    return totals


def start_worker(url: str, queues: list[str], pool: str = "process") -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE), str(HERE.parent / "src")]))
    return subprocess.Popen([sys.executable, "-m", "clusterq.cli", "worker", "-q", "--pool", pool, "-u", url, *queues],
                            env=env)


def wait_idle(queues: list[Queue], settle_s: float = 2.0) -> None:
    while any(q.count for q in queues):
        time.sleep(0.05)
    time.sleep(settle_s)


def measure_idle(clients: list, idle_s: float) -> tuple[float, dict[str, int]]:
    """Commands per second over the window, and the count per command name."""
    before = command_calls(clients)
    time.sleep(idle_s)
    after = command_calls(clients)
    delta = {k.removeprefix("cmdstat_"): after.get(k, 0) - before.get(k, 0) for k in after}
    # INFO is this script's own probe; REPLCONF is replication between the servers, not client traffic.
    delta = {k: v for k, v in delta.items() if v and k not in ("info", "replconf")}
    return sum(delta.values()) / idle_s, delta


def measure_latency(queues: list[Queue], samples: int) -> list[float]:
    jobs = []
    for i in range(samples):
        q = queues[i % len(queues)]
        jobs.append(q.enqueue("latency_tasks.elapsed_since", time.time()))
        time.sleep(0.02)  # let the worker go idle again: we measure the wake-up path
    deadline = time.monotonic() + 60
    values = []
    for job in jobs:
        while True:
            value = job.return_value()
            if value is not None or time.monotonic() > deadline:
                break
            time.sleep(0.01)
        if value is not None:
            values.append(float(value))
    return values


def run_10k(queues: list[Queue], topology: Cluster, url: str) -> str:
    baseline = sum(q.finished_job_registry.count for q in queues)
    start = time.perf_counter()
    for q in queues:
        q.enqueue_many([q.prepare_data("latency_tasks.noop") for _ in range(10_000 // len(queues))])
    target = 10_000 + baseline
    while sum(q.finished_job_registry.count for q in queues) < target:
        if time.perf_counter() - start > 120:
            break
        time.sleep(0.05)
    elapsed = time.perf_counter() - start
    done = sum(q.finished_job_registry.count for q in queues) - (target - 10_000)
    slots_ok = True
    seen = 0
    for node in topology.primaries():
        client = node.client()
        for key in client.scan_iter(match="cq:{*", count=1000):
            seen += 1
            server_slot = client.execute_command("CLUSTER KEYSLOT", key)
            if server_slot != key_slot(key):
                slots_ok = False
        client.close()
    per_queue = {q.name: queue_slot(q.name) for q in queues}
    nodes = {topology.node_for_slot(s).port for s in per_queue.values()}
    return (f"10k over {len(queues)} queues on {len(nodes)} primaries: {done}/10000 finished in {elapsed:.2f} s "
            f"(enqueue included, {done / elapsed:,.0f} jobs/s); {seen} cq:{{...}} keys checked, "
            f"each in its queue's slot: {slots_ok}")


def run(kind: str, samples: int, idle_s: float, pool: str) -> None:
    topology = Cluster() if kind == "cluster" else Standalone()
    topology.start()
    worker = None
    try:
        url = topology.url
        queues = [Queue(name, url) for name in pick_queues(topology)]
        worker = start_worker(url, [q.name for q in queues], pool)
        queues[0].enqueue("latency_tasks.noop")
        wait_idle(queues)
        clients = primary_clients(topology)
        per_s, breakdown = measure_idle(clients, idle_s)
        latencies = measure_latency(queues, samples)
        p50 = statistics.median(latencies) * 1000
        p99 = statistics.quantiles(latencies, n=100)[98] * 1000 if len(latencies) >= 100 else max(latencies) * 1000
        print(f"{kind}: idle worker on {len(queues)} queues: {per_s:.2f} commands/s (all primaries, "
              f"INFO commandstats, script-internal included, over {idle_s:.0f} s): {breakdown}")
        print(f"{kind} ({pool} pool): enqueue-to-start latency over {len(latencies)} jobs: p50 {p50:.2f} ms, "
              f"p99 {p99:.2f} ms")
        if isinstance(topology, Cluster):
            print(f"{kind}: " + run_10k(queues, topology, url))
    finally:
        if worker is not None:
            worker.terminate()
            worker.wait(10)
        topology.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--idle-s", type=float, default=20.0)
    parser.add_argument("--skip-cluster", action="store_true")
    parser.add_argument("--pool", default="process", help="the worker's pool (default: process)")
    args = parser.parse_args()
    for kind in ("standalone",) + (() if args.skip_cluster else ("cluster",)):
        run(kind, args.samples, args.idle_s, args.pool)


if __name__ == "__main__":
    main()
