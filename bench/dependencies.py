"""What dependencies and groups cost (not a test).

    python bench/dependencies.py [--jobs 10000]

On a local server and a local 3-primary cluster (clusterq.testing), with no-op jobs and one solo burst
worker over three queues (on three different primaries on the cluster):

- plain: N jobs enqueued and run, for reference;
- group: the same N jobs as members of one group spread over the three queues, closed with a callback;
- fan-out: one parent and N children in another queue, released when the parent finishes.

Prints wall times (enqueue, then run until everything ended) and the number of script calls the server
counted (INFO commandstats, evalsha + eval) per job."""

from __future__ import annotations

import argparse
import time
from typing import Any

from clusterq import Group, Queue, Worker, testing
from clusterq.state import keys as K


def script_calls(topology: testing.Topology) -> int:
    total = 0
    for node in topology.processes:
        if node.sentinel or not node.is_running():
            continue
        client = node.client()
        stats = client.info("commandstats")
        client.close()
        total += sum(int(stats.get(f"cmdstat_{name}", {}).get("calls", 0)) for name in ("evalsha", "eval"))
    return total


def queues(topology: testing.Topology, prefix: str) -> list[Queue]:
    first = Queue(f"{prefix}-0", topology.url)
    client: Any = first.connection
    if not hasattr(client, "get_node_from_key"):
        return [Queue(f"{prefix}-{i}", topology.url) for i in range(3)]
    found: dict[str, Queue] = {}
    i = 0
    while len(found) < 3:
        name = f"{prefix}-{i}"
        found.setdefault(client.get_node_from_key(K.QueueKeys(name).base).name, Queue(name, topology.url))
        i += 1
    return list(found.values())


def run(qs: list[Queue]) -> None:
    Worker(qs, qs[0].connection, pool="solo", install_signal_handlers=False).work(burst=True)


def measure(topology: testing.Topology, n: int) -> list[str]:
    lines = []
    for case in ("plain", "group", "fan-out"):
        topology.flush()
        qs = queues(topology, case)
        before = script_calls(topology)
        start = time.perf_counter()
        if case == "plain":
            for i, q in enumerate(qs):
                q.enqueue_many([q.prepare_data("jobs.noop") for _ in range(n // 3 + (i < n % 3))])
        elif case == "group":
            group = Group.create(qs[0])
            for i, q in enumerate(qs):
                group.enqueue_many(q, [q.prepare_data("jobs.noop") for _ in range(n // 3 + (i < n % 3))])
            group.close(on_done="jobs.noop")
        else:
            parent = qs[0].enqueue("jobs.noop")
            qs[1].enqueue_many([qs[1].prepare_data("jobs.noop", depends_on=parent) for _ in range(n)])
        enqueued = time.perf_counter()
        run(qs)
        if case == "group":
            assert group.status().done, group.status()
        if case == "fan-out":
            run(qs)  # the children released while the first burst was leaving
            assert qs[1].finished_job_registry.count == n
        done = time.perf_counter()
        calls = script_calls(topology) - before
        lines.append(f"  {case:8} enqueue {enqueued - start:6.2f} s, run {done - enqueued:6.2f} s, "
                     f"{calls / n:5.2f} script calls per job")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    args = parser.parse_args()
    for name, topology in (("standalone", testing.Standalone()), ("cluster", testing.Cluster(replicas_per_primary=0))):
        topology.start()
        try:
            print(f"{name}, {args.jobs} jobs:")
            print("\n".join(measure(topology, args.jobs)))
        finally:
            topology.stop()


if __name__ == "__main__":
    main()
