"""How long after its tick a periodic job is enqueued, with two schedulers running (not a test).

    python bench/cron_delay.py [--seconds 11] [--schedulers 2]

Starts a local server and a local cluster (clusterq.testing), runs N CronSchedulers in threads on a
one-second interval job, then reads each run's creation time (the server's clock, field ``c``) and
prints the delay after its tick, the number of runs and who enqueued them (each tick exactly once)."""

from __future__ import annotations

import argparse
import statistics
import threading
import time

from clusterq import CronScheduler, Periodic, Queue, testing
from clusterq.state import keys as K


def measure(topology: testing.Topology, seconds: float, schedulers: int) -> str:
    queue = Queue("cron-delay", topology.url)
    job = Periodic("jobs.noop", every=1, queue=queue.name, name="cron-delay")
    running = [CronScheduler(topology.url, [job], install_signal_handlers=False) for _ in range(schedulers)]
    threads = [threading.Thread(target=s.run, daemon=True) for s in running]
    for thread in threads:
        thread.start()
    time.sleep(seconds)
    for s in running:
        s.stop()
    for thread in threads:
        thread.join()
    ids = queue.get_job_ids(0, 10_000)
    delays = []
    for job_id in ids:
        created = int(queue.connection.hget(K.QueueKeys(queue.name).job(job_id), "c"))
        delays.append(created - created // 1000 * 1000)
    ticks = sorted(created for created in ids)
    return (f"{len(ids)} runs ({len(set(ticks))} distinct ticks), enqueued by {[s.enqueued for s in running]}; "
            f"delay after the tick: median {statistics.median(delays)} ms, max {max(delays)} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=11.0)
    parser.add_argument("--schedulers", type=int, default=2)
    args = parser.parse_args()
    for name, topology in (("standalone", testing.Standalone()), ("cluster", testing.Cluster())):
        topology.start()
        try:
            print(f"{name}: {measure(topology, args.seconds, args.schedulers)}")
        finally:
            topology.stop()


if __name__ == "__main__":
    main()
