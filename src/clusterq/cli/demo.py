"""``clusterq demo``: start a local server (or cluster), enqueue sample jobs over several queues, process
them with a live progress line, print a summary, and stop the server. The sample job functions live
here too, so a worker can import them by dotted path."""

from __future__ import annotations

import hashlib
import logging
import random
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from clusterq.api.queue import Queue
from clusterq.state.keys import queue_slot
from clusterq.worker.worker import Worker

DEMO_QUEUES = ("orders", "emails", "reports", "images", "default")
FAILURE_RATE = 0.01


# --- sample jobs -------------------------------------------------------------------------------------

def checksum(text: str, rounds: int = 50) -> str:
    """A small CPU-bound job."""
    digest = text.encode()
    for _ in range(rounds):
        digest = hashlib.sha256(digest).digest()
    return digest.hex()[:16]


def send_email(to: str, subject: str) -> dict[str, str]:
    """Pretends to send an email (a 2 ms round trip); fails now and then, like a flaky SMTP server."""
    time.sleep(0.002)
    if random.random() < FAILURE_RATE:
        raise ConnectionError(f"SMTP server refused {to}")
    return {"to": to, "subject": subject, "status": "sent"}


def resize(width: int, height: int) -> list[int]:
    return [width // 2, height // 2]


def total(*amounts: float) -> float:
    return round(sum(amounts), 2)


def _sample(index: int) -> tuple[str, str, tuple[object, ...]]:
    kind = index % 5
    if kind == 0:
        return "orders", "clusterq.cli.demo.total", (index * 1.5, 2.25, 10)
    if kind == 1:
        return "emails", "clusterq.cli.demo.send_email", (f"user{index}@example.com", "Your order")
    if kind == 2:
        return "reports", "clusterq.cli.demo.checksum", (f"report-{index}",)
    if kind == 3:
        return "images", "clusterq.cli.demo.resize", (1920 + index, 1080)
    return "default", "clusterq.cli.demo.checksum", (f"misc-{index}", 10)


# --- the demo ----------------------------------------------------------------------------------------

@contextmanager
def _server(cluster: bool, url: str | None) -> Iterator[str]:
    if url:
        yield url
        return
    from clusterq import testing  # only the demo and `clusterq dev` start servers

    topology = testing.Cluster() if cluster else testing.Standalone()
    kind = "6-node cluster (3 primaries, 3 replicas)" if cluster else "standalone server"
    print(f"starting a local {kind} from {topology.binary} ...", flush=True)
    topology.start()
    try:
        yield topology.url
    finally:
        topology.stop()
        print("local server stopped")


def _progress(queues: list[Queue], total_jobs: int, done: threading.Event, started: float) -> None:
    while not done.wait(0.2):
        _print_progress(queues, total_jobs, started, final=False)
    _print_progress(queues, total_jobs, started, final=True)


def _print_progress(queues: list[Queue], total_jobs: int, started: float, final: bool) -> None:
    finished = sum(q.finished_job_registry.count for q in queues)
    failed = sum(q.failed_job_registry.count for q in queues)
    waiting = sum(q.count for q in queues)
    done = finished + failed
    width = 30
    filled = int(width * done / max(total_jobs, 1))
    rate = done / max(time.perf_counter() - started, 1e-9)
    line = (f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total_jobs}  finished {finished}  "
            f"failed {failed}  waiting {waiting}  {rate:,.0f} jobs/s")
    sys.stdout.write(line + ("\n" if final else ""))
    sys.stdout.flush()


def run_demo(cluster: bool = False, jobs: int = 5000, url: str | None = None) -> int:
    with _server(cluster, url) as server_url:
        queues = [Queue(name, server_url) for name in DEMO_QUEUES]
        for queue in queues:
            queue.delete()
        print(f"connected: {server_url}")
        for queue in queues:
            print(f"  queue {queue.name:<8} slot {queue_slot(queue.name):>5}  keys {queue.keys.base}:*")
        batches: dict[str, list] = {q.name: [] for q in queues}
        by_name = {q.name: q for q in queues}
        for index in range(jobs):
            name, func, args = _sample(index)
            batches[name].append(by_name[name].prepare_data(func, args))
        t0 = time.perf_counter()
        for name, batch in batches.items():
            by_name[name].enqueue_many(batch)
        enqueue_s = time.perf_counter() - t0
        print(f"enqueued {jobs} jobs over {len(queues)} queues in {enqueue_s * 1000:.0f} ms "
              f"({jobs / max(enqueue_s, 1e-9):,.0f} jobs/s)")

        worker = Worker(queues, install_signal_handlers=False)
        logging.getLogger("clusterq.worker").setLevel(logging.ERROR)  # the progress line says it all
        done = threading.Event()
        started = time.perf_counter()
        display = threading.Thread(target=_progress, args=(queues, jobs, done, started), daemon=True)
        display.start()
        try:
            worker.work(burst=True)
        except KeyboardInterrupt:
            worker.request_stop()
        elapsed = time.perf_counter() - started
        done.set()
        display.join()
        finished = sum(q.finished_job_registry.count for q in queues)
        failed = sum(q.failed_job_registry.count for q in queues)
        print(f"\nsummary: {finished} finished, {failed} failed (the demo's email job fails "
              f"{FAILURE_RATE:.0%} of the time on purpose), {worker.stats.processed / elapsed:,.0f} jobs/s "
              f"with one worker")
        sample = queues[1].failed_job_registry.get_jobs(0, 1)
        if sample:
            reason = (sample[0].refresh().exc_info or "").splitlines()[0]
            print(f"a failed job keeps its reason: {sample[0].handle}: {reason}")
        return 0 if finished + failed == jobs else 1
