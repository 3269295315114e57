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


def one_rep(bench: Bench, n: int, result: SystemResult) -> None:
    """Enqueue n one by one, process with 1 worker process; enqueue n in bulk, process with 2; the asyncio
    producer. Every system gets the same n."""
    target, system = bench.target, bench.system
    target.flush()
    single = bench.enqueue(n, bulk=False)
    one = bench.process(n, 1)
    result.add("enqueue_single", single.rate)
    result.add("memory_per_job", single.delta.memory / n)
    result.add("process_1", one.rate)
    result.add("process_1_steady", one.steady_rate or 0.0)
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
    result.add("process_2_steady", two.steady_rate or 0.0)
    if system.async_producer:
        async_rep(bench, n, result)


def async_rep(bench: Bench, n: int, result: SystemResult) -> None:
    bench.target.flush()
    phase = bench.enqueue_async(n)
    assert phase.extra is not None
    result.add("enqueue_async", phase.rate)
    result.add("enqueue_async_p99_ms", phase.extra["p99_ms"])
    bench.target.flush()


def _rep_log(system: System, result: SystemResult) -> str:
    def last(metric: str, digits: int = 0) -> str:
        values = result.runs.get(metric)
        return "-" if not values else f"{values[-1]:,.{digits}f}"

    parts = [f"enqueue {last('enqueue_single')}/s"]
    if system.has_bulk:
        parts.append(f"bulk {last('enqueue_bulk')}/s")
    if system.async_producer:
        parts.append(f"asyncio {last('enqueue_async')}/s (p99 {last('enqueue_async_p99_ms', 2)} ms)")
    if system.has_worker:
        parts += [f"process steady {last('process_1_steady')}/s, with start-up {last('process_1')}/s (1), "
                  f"{last('process_2_steady')}/s (2)",
                  f"{last('commands_per_job', 1)} cmds/job, {last('cpu_us_per_job', 1)} us/job"]
    return ", ".join(parts)


class SystemRun:
    """Every measurement of one system on one deployment. The throughput repetitions (``rep``) of all the
    systems are interleaved by the caller, so that a busy spell of a shared machine hits every system alike;
    the probes (``extras``: drain probe, latency, RSS, round trips) run once per system afterwards."""

    def __init__(self, system: System, runtime: Runtime, target: Target, settings: Settings, log: Log,
                 probe_runtime: Runtime) -> None:
        self.system, self.target, self.settings, self.log = system, target, settings, log
        self.probe_runtime = probe_runtime
        self.result = SystemResult(system.key, note=system.note)
        self.bench = Bench(system, runtime, target, settings)
        self.bench.process_timeout_s = 600.0
        self.n = settings.jobs
        self.result.info["jobs"] = self.n

    def _timed(self, step: str, body: Callable[[], None]) -> bool:
        started = time.monotonic()
        try:
            return guarded(self.result, self.log, step, body)
        finally:
            self.result.seconds += time.monotonic() - started

    def set_payload(self, payload: int) -> None:
        self.bench.extra_params = {"payload": payload}
        self.result.info["payload_value_bytes"] = payload

    def measure_payload(self) -> float | None:
        def wire() -> None:
            size = self.bench.payload_bytes(self.settings.payload_probe_jobs)
            self.result.info["payload_bytes"] = size
            self.log(f"  one enqueue sends {size:,.0f} request bytes")

        self._timed("payload size", wire)
        return self.result.info.get("payload_bytes")

    def rep(self, index: int) -> bool:
        system, bench, result, n = self.system, self.bench, self.result, self.n

        def body() -> None:
            if system.has_worker:
                one_rep(bench, n, result)
            else:
                self.target.flush()
                if system.is_baseline:
                    # Its Redis CPU and commands per request are the floor of any one-by-one producer.
                    phase = bench.enqueue(n, bulk=False)
                    result.add("enqueue_single", phase.rate)
                    result.add("cpu_us_enqueue", phase.delta.cpu_s * 1e6 / n)
                    result.add("commands_enqueue", phase.delta.commands / n)
                if system.async_producer:
                    async_rep(bench, n, result)
            self.log(f"  {system.key} run {index + 1}: {_rep_log(system, result)}")

        return self._timed(f"throughput run {index + 1}", body)

    def extras(self) -> None:
        system, bench, result, n, settings, log = (self.system, self.bench, self.result, self.n, self.settings,
                                                   self.log)
        target = self.target

        def drain() -> None:
            for _ in range(settings.reps):
                phase, probe = bench.drain_probe(n, self.probe_runtime)
                result.add("drain_steady", phase.steady_rate or 0.0)
                if probe.longest_script_ms is not None or system.key == "clusterq":
                    result.add("slowlog_script_ms", probe.longest_script_ms or 0.0)
                if probe.longest_command_ms is not None:
                    result.add("slowlog_command_ms", probe.longest_command_ms)
                    result.info.setdefault("slowlog_commands", []).append(probe.longest_command)
                if probe.ping_p99_ms is not None:
                    result.add("ping_p50_ms", probe.ping_p50_ms or 0.0)
                    result.add("ping_p99_ms", probe.ping_p99_ms)
                script = "-" if probe.longest_script_ms is None else f"{probe.longest_script_ms:.3f} ms"
                command = "-" if probe.longest_command_ms is None else f"{probe.longest_command_ms:.3f} ms"
                log(f"  drain probe: {phase.steady_rate or 0:,.0f} jobs/s; longest script {script}, "
                    f"longest command {command} "
                    f"({probe.longest_command[:70]}); PING p50/p99 {probe.ping_p50_ms or 0:.3f}/"
                    f"{probe.ping_p99_ms or 0:.3f} ms over {probe.ping_samples} pings")
            if system.key == "clusterq":
                # The same drain with the server and the prober at real-time priority: what is left of
                # the PING's wait is what the server ran before it, not a CPU the worker's processes held.
                for _ in range(settings.reps):
                    phase, probe = bench.drain_probe(n, self.probe_runtime, realtime=True)
                    if not probe.realtime:
                        log("  drain probe at real-time priority: not permitted here (needs root or "
                            "CAP_SYS_NICE); skipped")
                        break
                    if probe.ping_p99_ms is not None:
                        result.add("ping_p99_rt_ms", probe.ping_p99_ms)
                    result.add("slowlog_script_rt_ms", probe.longest_script_ms or 0.0)
                    log(f"  drain probe, server and prober at real-time priority: {phase.steady_rate or 0:,.0f} "
                        f"jobs/s; longest script {probe.longest_script_ms or 0:.3f} ms; PING p50/p99 "
                        f"{probe.ping_p50_ms or 0:.3f}/{probe.ping_p99_ms or 0:.3f} ms over {probe.ping_samples} pings")
            target.flush()

        def latency() -> None:
            target.flush()
            idle, runs = bench.idle_and_latency(settings.reps)
            result.add("idle_commands_per_s", idle)
            for run in runs:
                result.add("latency_p50_ms", run.p50_ms)
                result.add("latency_p99_ms", run.p99_ms)
            if bench.rss:
                result.add("rss_mb", sum(b for _, _, b in bench.rss) / 2**20)
                result.info["rss_processes"] = [{"pid": pid, "name": name, "mb": round(b / 2**20, 1)}
                                                for pid, name, b in bench.rss]
            log(f"  idle {idle:.1f} cmds/s; latency p50/p99 "
                + ", ".join(f"{r.p50_ms:.2f}/{r.p99_ms:.2f} ms" for r in runs)
                + "; RSS " + " + ".join(f"{b / 2**20:.1f}" for _, _, b in bench.rss) + " MB")

        def round_trips() -> None:
            rt_n = min(settings.rt_jobs, n)
            result.info["round_trip_jobs"] = rt_n
            trips = bench.round_trips(rt_n)
            result.add("rt_per_job", trips.life)
            result.add("rt_enqueue", trips.enqueue)
            result.add("rt_processing", trips.processing)
            log(f"  round trips/job on {rt_n} jobs: {trips.life:.2f} ({trips.enqueue:.2f} + {trips.processing:.2f})")

        if not system.has_worker:
            return
        if result.ok and (settings.probe_peers or not system.is_peer):
            self._timed("drain probe", drain)
        if result.ok:
            self._timed("latency", latency)
        if result.ok:
            self._timed("round trips", round_trips)


def run_backlog(runtime: Runtime, system: System, target: Target, settings: Settings, log: Log) -> SystemResult:
    """clusterq only: processing throughput and Redis CPU per job with 10k, 100k, 1M jobs waiting.

    For each size the queue is filled with ``enqueue_many`` (chunks of ``enqueue_chunk``), then one
    default ``clusterq worker`` process runs ``backlog_work`` jobs (``--max-jobs``) from its head; the
    queue is refilled when fewer than that are left.
    """
    started = time.monotonic()
    result = SystemResult(f"{system.key}-backlog", note="1 `clusterq worker` process, --max-jobs from the head")
    bench = Bench(system, runtime, target, settings)
    bench.process_timeout_s = 600.0
    result.info.update(sizes=list(settings.backlog_sizes), jobs=settings.backlog_work)

    def level(size: int) -> Callable[[], None]:
        def body() -> None:
            work = min(size, settings.backlog_work)
            left = 0
            for _ in range(settings.reps):
                if left < work:
                    target.flush()
                    filled = bench.enqueue(size, bulk=True, timeout=1800.0)
                    result.add(f"backlog_{size}_bytes", filled.delta.memory / size)
                    result.add(f"backlog_{size}_fill", filled.rate)
                    left = size
                phase = bench.process(work, 1, max_jobs=work)
                left -= phase.jobs
                result.add(f"backlog_{size}_rate", phase.steady_rate or 0.0)
                result.add(f"backlog_{size}_cpu_us", phase.delta.cpu_s * 1e6 / phase.jobs)
                result.add(f"backlog_{size}_commands", phase.delta.commands / phase.jobs)
                log(f"  {size:,} waiting: {phase.steady_rate or 0:,.0f} jobs/s steady, "
                    f"{phase.delta.cpu_s * 1e6 / phase.jobs:.1f} us Redis CPU/job, "
                    f"{phase.delta.commands / phase.jobs:.2f} cmds/job")
        return body

    for size in settings.backlog_sizes:
        if not guarded(result, log, f"backlog {size:,}", level(size)):
            break
    target.flush()
    result.seconds = time.monotonic() - started
    return result
