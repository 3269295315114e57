#!/usr/bin/env python
"""The producer's client CPU per job: ``python bench/producer_cpu.py [-n 20000] [--rounds 5] [--url URL]``.

Runs, in alternating rounds against one server (a fresh ``Standalone`` unless ``--url``), and reports per
mode the median over the rounds of the client's CPU time per job (``time.process_time()`` around the N
calls: this process only, so it barely depends on what else the machine runs; with its user-mode part,
``os.times().user``: the Python, without the system calls and wake-ups) and of the wall rate:

* ``enqueue``: ``Queue.enqueue(FUNC)`` one by one (the fast path: no options);
* ``enqueue_many``: ``Queue.enqueue_many`` of ``prepare_data(FUNC)`` in chunks of ``--chunk``;
* ``redis-py loop``: a bare redis-py loop, one ``RPUSH`` per round trip, whose request has as many bytes
  as one enqueue sends (measured with the server's ``total_net_input_bytes``), as
  ``bench/peer_drivers/redispy.py`` does;
* ``aio enqueue``: ``AsyncQueue.enqueue`` one by one (awaited in turn), with ``--aio``.

The server's time is not in the CPU figure; it is in the wall rate (and so is the machine's load: note the
load average printed with the figures).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
try:
    import clusterq  # noqa: F401
except ImportError:  # a checkout without installing: use its src/
    sys.path.insert(0, str(BENCH_DIR.parent / "src"))

import redis  # noqa: E402

from clusterq import AsyncQueue, Queue  # noqa: E402
from clusterq.testing import Standalone  # noqa: E402

FUNC = "peer_tasks.plain.noop"
LOOP_KEY = "bench:producer-cpu-loop"


def timed(n: int, body: Callable[[], Any]) -> tuple[float, float, float]:
    """(client CPU seconds, of which in user mode, wall seconds) of ``body()``."""
    cpu, user, wall = time.process_time(), os.times().user, time.perf_counter()
    body()
    return time.process_time() - cpu, os.times().user - user, time.perf_counter() - wall


def request_bytes(url: str) -> int:
    """Bytes one fast-path enqueue sends (the server's input byte counter over 1000 enqueues)."""
    client = redis.Redis.from_url(url)
    queue = Queue("cpu-probe", connection=url)
    queue.enqueue(FUNC)  # registers the queue and loads the script first
    before = int(client.info("stats")["total_net_input_bytes"])
    for _ in range(1000):
        queue.enqueue(FUNC)
    after = int(client.info("stats")["total_net_input_bytes"])
    info_bytes = len(b"*2\r\n$4\r\nINFO\r\n$5\r\nstats\r\n")
    queue.empty()
    client.close()
    return max(1, (after - before - info_bytes) // 1000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=20000, help="jobs per mode per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--chunk", type=int, default=5000, help="jobs per enqueue_many call")
    parser.add_argument("--url", help="an existing server (default: a fresh Standalone)")
    parser.add_argument("--aio", action="store_true", help="also AsyncQueue.enqueue one by one")
    opts = parser.parse_args()
    server = None if opts.url else Standalone().start()
    url = opts.url or server.url  # type: ignore[union-attr]
    try:
        size = request_bytes(url)
        n = opts.n
        queue = Queue("cpu", connection=url)
        queue.enqueue(FUNC)
        client = redis.Redis.from_url(url)
        client.ping()
        payload = b"x" * size

        def one_by_one() -> None:
            enqueue = queue.enqueue
            for _ in range(n):
                enqueue(FUNC)

        def many() -> None:
            for first in range(0, n, opts.chunk):
                queue.enqueue_many([Queue.prepare_data(FUNC) for _ in range(min(opts.chunk, n - first))])

        def loop() -> None:
            execute = client.execute_command
            for _ in range(n):
                execute("RPUSH", LOOP_KEY, payload)

        aqueue = AsyncQueue("cpu", connection=url)
        loop_runner = asyncio.new_event_loop()

        def aio() -> None:
            async def body() -> None:
                enqueue = aqueue.enqueue
                for _ in range(n):
                    await enqueue(FUNC)
            loop_runner.run_until_complete(body())

        if opts.aio:
            loop_runner.run_until_complete(aqueue.enqueue(FUNC))
        modes: dict[str, Callable[[], None]] = {"enqueue": one_by_one, "enqueue_many": many, "redis-py loop": loop}
        if opts.aio:
            modes["aio enqueue"] = aio
        figures: dict[str, list[tuple[float, float, float]]] = {name: [] for name in modes}
        for _ in range(opts.rounds):
            for name, body in modes.items():
                figures[name].append(timed(n, body))
                queue.empty()
                client.delete(LOOP_KEY)
        print(f"request bytes per enqueue: {size}; n={n} x {opts.rounds} rounds; load average "
              f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        loop_cpu = statistics.median(cpu for cpu, _, _ in figures["redis-py loop"]) / n * 1e6
        for name, runs in figures.items():
            cpu_us = statistics.median(cpu for cpu, _, _ in runs) / n * 1e6
            user_us = statistics.median(user for _, user, _ in runs) / n * 1e6
            rate = statistics.median(n / wall for _, _, wall in runs)
            print(f"  {name:14s} client CPU {cpu_us:6.1f} us/job ({cpu_us / loop_cpu:4.2f}x the loop's; user mode "
                  f"{user_us:5.1f} us)  {rate:9,.0f} jobs/s")
        if opts.aio:
            loop_runner.run_until_complete(aqueue.aclose())
        loop_runner.close()
        client.close()
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    main()
