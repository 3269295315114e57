"""The measurement plan for one system: calibrate, repeat each measurement, keep every run."""

from __future__ import annotations

import statistics
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis

from .config import Settings
from .measure import Bench, BenchError
from .procs import DriverError, Runtime
from .systems import System
from .targets import Target

Log = Callable[[str], None]


@dataclass
class SystemResult:
    key: str
    note: str = ""
    status: str = "ok"
    runs: dict[str, list[float]] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def add(self, metric: str, value: float) -> None:
        self.runs.setdefault(metric, []).append(value)

    def median(self, metric: str) -> float | None:
        values = self.runs.get(metric)
        return statistics.median(values) if values else None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "note": self.note,
            "seconds": round(self.seconds, 1),
            **self.info,
            "metrics": {m: {"median": self.median(m), "runs": v} for m, v in self.runs.items()},
        }


FAILURES = (DriverError, BenchError, redis.RedisError, OSError, ValueError, KeyError)


def guarded(result: SystemResult, log: Log, step: str, body: Callable[[], None]) -> bool:
    """Run one step; a failure marks the system failed (with the reason) instead of stopping the bench."""
    try:
        body()
        return True
    except FAILURES as exc:
        reason = f"{step}: {type(exc).__name__}: {exc}".replace("\n", " ")
        result.status = f"failed: {reason[:300]}"
        log(f"  {result.key} FAILED in {step}: {reason[:600]}")
        log("  " + traceback.format_exc().strip().splitlines()[-1])
        return False


def job_count(bench: Bench, settings: Settings, log: Log) -> int:
    """Warm up with a small run and size N so one single-process run takes about ``budget_s``."""
    system = bench.system
    bench.target.flush()
    bench.enqueue(settings.calibration_jobs, bulk=system.has_bulk)
    rate = bench.process(settings.calibration_jobs, 1).rate
    n = int(min(settings.jobs, max(settings.min_jobs, rate * settings.budget_s)))
    log(f"  warm-up: {rate:,.0f} jobs/s on {settings.calibration_jobs} jobs -> N = {n:,}")
    return n


def one_rep(bench: Bench, n: int, result: SystemResult) -> None:
    """Enqueue n one by one, process with 1 process; enqueue n in bulk, process with 2 processes."""
    target, system = bench.target, bench.system
    target.flush()
    single = bench.enqueue(n, bulk=False)
    one = bench.process(n, 1)
    result.add("enqueue_single", single.rate)
    result.add("memory_per_job", single.delta.memory / n)
    result.add("process_1", one.rate)
    life = single.delta + one.delta
    result.add("commands_per_job", life.commands / n)
    result.add("cpu_us_per_job", life.cpu_s * 1e6 / n)
    result.add("cpu_us_enqueue", single.delta.cpu_s * 1e6 / n)
    result.add("cpu_us_processing", one.delta.cpu_s * 1e6 / n)
    result.add("commands_enqueue", single.delta.commands / n)
    result.add("commands_processing", one.delta.commands / n)
    target.flush()
    bulk = bench.enqueue(n, bulk=system.has_bulk)
    if system.has_bulk:
        result.add("enqueue_bulk", bulk.rate)
        result.add("cpu_us_enqueue_bulk", bulk.delta.cpu_s * 1e6 / n)
        result.add("commands_enqueue_bulk", bulk.delta.commands / n)
    two = bench.process(n, 2)
    result.add("process_2", two.rate)


def run_system(system: System, runtime: Runtime, target: Target, settings: Settings, log: Log,
               fixed_n: int | None = None) -> SystemResult:
    started = time.monotonic()
    result = SystemResult(system.key, note=system.note)
    bench = Bench(system, runtime, target, settings)
    sizes: dict[str, int] = {}

    def calibrate() -> None:
        sizes["n"] = fixed_n or job_count(bench, settings, log)
        result.info["jobs"] = sizes["n"]

    if not guarded(result, log, "warm-up", calibrate):
        result.seconds = time.monotonic() - started
        return result
    n = sizes["n"]
    bench.process_timeout_s = max(120.0, 20 * settings.budget_s)
    for rep in range(settings.reps):
        if not guarded(result, log, f"throughput run {rep + 1}", lambda: one_rep(bench, n, result)):
            break
        log(f"  run {rep + 1}: enqueue {result.runs['enqueue_single'][-1]:,.0f}/s"
            + (f", bulk {result.runs['enqueue_bulk'][-1]:,.0f}/s" if system.has_bulk else "")
            + f", process {result.runs['process_1'][-1]:,.0f}/s (1) {result.runs['process_2'][-1]:,.0f}/s (2),"
            f" {result.runs['commands_per_job'][-1]:.1f} cmds/job, {result.runs['cpu_us_per_job'][-1]:.1f} us/job")

    def latency() -> None:
        target.flush()
        idle, runs = bench.idle_and_latency(settings.reps)
        result.add("idle_commands_per_s", idle)
        for run in runs:
            result.add("latency_p50_ms", run.p50_ms)
            result.add("latency_p99_ms", run.p99_ms)
        log(f"  idle {idle:.1f} cmds/s; latency p50/p99 "
            + ", ".join(f"{r.p50_ms:.2f}/{r.p99_ms:.2f} ms" for r in runs))

    def round_trips() -> None:
        rt_n = int(min(settings.rt_jobs, max(settings.rt_min_jobs, n * settings.rt_budget_s / settings.budget_s)))
        result.info["round_trip_jobs"] = rt_n
        for _ in range(settings.reps):
            trips = bench.round_trips(rt_n)
            result.add("rt_per_job", trips.life)
            result.add("rt_enqueue", trips.enqueue)
            result.add("rt_processing", trips.processing)
        log(f"  round trips/job on {rt_n} jobs: " + ", ".join(
            f"{life:.2f} ({e:.2f} + {p:.2f})" for life, e, p in zip(
                result.runs["rt_per_job"], result.runs["rt_enqueue"], result.runs["rt_processing"])))

    if result.ok:
        guarded(result, log, "latency", latency)
    if result.ok:
        guarded(result, log, "round trips", round_trips)
    result.seconds = time.monotonic() - started
    return result


def run_backlog(runtime: Runtime, system: System, target: Target, settings: Settings, log: Log) -> SystemResult:
    """clusterq only: one process draining a small backlog vs working through the head of a huge one.

    Three figures, the same number of jobs processed in each run: a small backlog on an otherwise empty
    server; the head of the large backlog; and a small backlog in a second queue beside the large one,
    alternated run by run with the previous figure so that machine noise hits both alike.
    """
    started = time.monotonic()
    result = SystemResult(f"{system.key}-backlog", note="1 worker process; same number of jobs processed")
    bench = Bench(system, runtime, target, settings)
    bench.process_timeout_s = 600.0
    small, large, work = settings.backlog_small, settings.backlog_large, settings.backlog_work
    big_queue, side_queue = target.queues, [f"{target.queues[0]}-side"]
    result.info.update(backlog_small=small, backlog_large=large, jobs=work)

    def small_runs() -> None:
        for _ in range(settings.reps):
            target.flush()
            bench.enqueue(small, bulk=True)
            result.add("process_backlog_small", bench.process(small, 1).rate)

    def large_runs() -> None:
        target.flush()
        filled = bench.enqueue(large, bulk=True, timeout=1800.0)
        result.add("enqueue_bulk_large", filled.rate)
        result.info["memory_per_job_large"] = filled.delta.memory / large
        log(f"  {large:,} jobs enqueued in {filled.seconds:.1f} s ({filled.rate:,.0f}/s), "
            f"{filled.delta.memory / large:.0f} B/job")
        for _ in range(settings.reps):
            bench.enqueue(small, bulk=True, queues=side_queue)
            result.add("process_backlog_side", bench.process(small, 1, queues=side_queue).rate)
            result.add("process_backlog_large", bench.process(work, 1, max_jobs=work, queues=big_queue).rate)

    if guarded(result, log, "small backlog", small_runs):
        guarded(result, log, "large backlog", large_runs)
    small_rate = result.median("process_backlog_small")
    large_rate = result.median("process_backlog_large")
    side_rate = result.median("process_backlog_side")
    if small_rate and large_rate and side_rate:
        result.add("backlog_ratio", large_rate / small_rate)
        result.add("backlog_ratio_side", large_rate / side_rate)
        log(f"  {small:,} backlog: {small_rate:,.0f} jobs/s; {large:,} backlog: {large_rate:,.0f} jobs/s "
            f"({large_rate / small_rate:.2f}x); {small:,} beside {large:,}: {side_rate:,.0f} jobs/s")
    target.flush()
    result.seconds = time.monotonic() - started
    return result
