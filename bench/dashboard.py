"""The dashboard under a large backlog: page times, and what open tabs cost Redis.

    python bench/dashboard.py [--waiting 1000000] [--failed 100000] [--tabs 10] [--window-s 10]

Starts a standalone server (clusterq.testing), fills one queue with ``--waiting`` jobs and another with
``--failed`` failed jobs (a burst worker fails them), serves the dashboard on uvicorn on loopback, then
  1. page times: each page (overview with its hour, day and week charts, a queue's first and a deep page
     per state, a job, a search, the counts) fetched 20 times -> median and worst, in ms;
  2. Redis traffic: commands the server processed (INFO stats, the INFO calls excluded) over a window
     with 0 (idle), 1 and ``--tabs`` open event streams -> commands per second.
Never part of the test suite: the figures depend on the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
sys.path.insert(0, str(HERE.parent / "tests"))

import httpx  # noqa: E402
import uvicorn  # noqa: E402

from clusterq import Queue, Worker  # noqa: E402
from clusterq.dashboard import create_app  # noqa: E402
from clusterq.testing import Standalone  # noqa: E402

CHUNK = 10_000


def fill(url: str, waiting: int, failed: int) -> tuple[Queue, Queue]:
    big, bad = Queue("backlog", url), Queue("failing", url)
    for start in range(0, waiting, CHUNK):
        big.enqueue_many([Queue.prepare_data("jobs.add", (i, 1)) for i in range(start, min(waiting, start + CHUNK))])
    for start in range(0, failed, CHUNK):
        bad.enqueue_many([Queue.prepare_data("jobs.fail", ("bench",))] * (min(failed, start + CHUNK) - start))
    Worker([bad], url, pool="thread", concurrency=4, install_signal_handlers=False).work(burst=True)
    return big, bad


def processed(client: object) -> int:
    return int(client.info("stats")["total_commands_processed"])  # type: ignore[attr-defined]


def page_times(base: str, big: Queue, bad: Queue) -> list[tuple[str, float, float]]:
    job = bad.failed_job_registry.get_job_ids(0, 1)[0]
    pages = {
        "overview": "/", "overview, day chart": "/?window=day", "overview, week chart": "/?window=week",
        "counts (JSON)": "/api/counts",
        "queue waiting p1": f"/queue?name={big.name}", "queue waiting p1000": f"/queue?name={big.name}&page=1000",
        "queue failed p1": f"/queue?name={bad.name}&state=failed",
        "queue failed p1000": f"/queue?name={bad.name}&state=failed&page=1000",
        "queue failed, week chart": f"/queue?name={bad.name}&state=failed&window=week",
        "job": f"/job?h={bad.name}/{job}", "search failed by function": f"/search?queue={bad.name}&func=jobs.add",
        "workers": "/workers",
    }
    rows = []
    with httpx.Client(base_url=base, timeout=60) as client:
        for name, path in pages.items():
            times = []
            for _ in range(20):
                start = time.perf_counter()
                assert client.get(path).status_code == 200, path
                times.append((time.perf_counter() - start) * 1000)
            rows.append((name, statistics.median(times), max(times)))
    return rows


async def streams(base: str, n: int, window_s: float) -> None:
    async def one(client: httpx.AsyncClient) -> None:
        async with client.stream("GET", "/events") as reply:
            async for _ in reply.aiter_lines():
                pass

    async with httpx.AsyncClient(base_url=base, timeout=None) as client:
        tasks = [asyncio.create_task(one(client)) for _ in range(n)]
        await asyncio.sleep(window_s)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def traffic(base: str, server_client: object, tabs: int, window_s: float) -> list[tuple[str, float]]:
    rows = []
    for label, n in (("idle (no tab)", 0), ("1 tab", 1), (f"{tabs} tabs", tabs)):
        before = processed(server_client)
        start = time.monotonic()
        asyncio.run(streams(base, n, window_s))
        elapsed = time.monotonic() - start
        rows.append((label, (processed(server_client) - before - 1) / elapsed))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--waiting", type=int, default=1_000_000)
    parser.add_argument("--failed", type=int, default=100_000)
    parser.add_argument("--tabs", type=int, default=10)
    parser.add_argument("--window-s", type=float, default=10.0)
    args = parser.parse_args()
    logging.getLogger("clusterq").setLevel(logging.ERROR)  # one warning per failed job otherwise
    topology = Standalone()
    topology.start()
    try:
        started = time.monotonic()
        big, bad = fill(topology.url, args.waiting, args.failed)
        print(f"filled {big.count} waiting and {bad.failed_job_registry.count} failed in "
              f"{time.monotonic() - started:.0f} s")
        server = uvicorn.Server(uvicorn.Config(create_app(topology.url), host="127.0.0.1", port=0,
                                               log_level="warning", lifespan="off"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.05)
        base = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
        print(f"\n{'page':<28}{'median ms':>10}{'worst ms':>10}")
        for name, median, worst in page_times(base, big, bad):
            print(f"{name:<28}{median:>10.1f}{worst:>10.1f}")
        print(f"\n{'open event streams':<28}{'Redis commands/s':>18}")
        for label, rate in traffic(base, topology.client(), args.tabs, args.window_s):
            print(f"{label:<28}{rate:>18.1f}")
        server.should_exit = True
        thread.join(10)
    finally:
        topology.stop()


if __name__ == "__main__":
    main()
