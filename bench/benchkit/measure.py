"""One measurement at a time, for one system on one deployment: enqueue, process, latency, round trips."""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import dataclass
from typing import Any

from .config import Settings
from .counters import Counters, LatencyFile
from .procs import Driver, DriverError, Runtime, go_all, run_once, start_gated
from .redisstats import Delta, delta
from .systems import System
from .targets import Target

POLL_S = 0.005
START_TIMEOUT_S = 60.0
STALL_S = 20.0
STALL_CHECK_S = 0.25


class BenchError(RuntimeError):
    """A measurement could not be made (wrong job count, timeout...)."""


@dataclass(frozen=True)
class Phase:
    jobs: int
    seconds: float
    """Enqueue: the producer's loop. Processing: from spawning the worker process(es) to the last job done."""
    delta: Delta
    steady_s: float | None = None
    """Processing only: from the first job done to the last job done (over every process)."""
    extra: dict[str, Any] | None = None

    @property
    def rate(self) -> float:
        return self.jobs / self.seconds if self.seconds > 0 else float("inf")

    @property
    def steady_rate(self) -> float | None:
        if self.steady_s is None or self.jobs < 2:
            return None
        return (self.jobs - 1) / self.steady_s if self.steady_s > 0 else float("inf")


def _server_pids(clients: list[Any]) -> list[int]:
    return [int(client.info("server")["process_id"]) for client in clients]


def _set_realtime(pids: list[int], on: bool) -> bool:
    """SCHED_FIFO (``on``) or back to the default policy for ``pids``; False if it could not be set."""
    try:
        for pid in pids:
            os.sched_setscheduler(pid, os.SCHED_FIFO if on else os.SCHED_OTHER,
                                  os.sched_param(10 if on else 0))
    except (OSError, AttributeError):
        return False
    return bool(pids)


@dataclass(frozen=True)
class DrainProbe:
    """One worker draining at full speed, watched by SLOWLOG and by another client's PINGs."""

    longest_script_ms: float | None
    longest_command_ms: float | None
    longest_command: str
    ping_p50_ms: float | None
    ping_p99_ms: float | None
    ping_samples: int
    realtime: bool = False
    """The server and the prober ran at real-time priority (``drain_probe(realtime=True)``)."""


@dataclass(frozen=True)
class LatencyRun:
    p50_ms: float
    p99_ms: float
    samples: int


@dataclass(frozen=True)
class RoundTrips:
    enqueue: float
    processing: float

    @property
    def life(self) -> float:
        return self.enqueue + self.processing


def script_names() -> dict[str, str]:
    """clusterq's Lua scripts by SHA1, to name the EVALSHA entries of SLOWLOG ({} if that module moved)."""
    try:
        from clusterq.state import scripts
    except ImportError:
        return {}
    found = {}
    for value in vars(scripts).values():
        sha, name = getattr(value, "sha", None), getattr(value, "name", None)
        if isinstance(sha, str) and isinstance(name, str):
            found[sha] = name
    return found


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100), linear interpolation between closest ranks."""
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


class Bench:
    def __init__(self, system: System, runtime: Runtime, target: Target, settings: Settings) -> None:
        self.system = system
        self.runtime = runtime
        self.target = target
        self.settings = settings
        self.process_timeout_s = 300.0
        self.extra_params: dict[str, Any] = {}
        self.rss: list[tuple[int, str, int]] = []
        """(pid, name, bytes) of the idle worker's processes, taken after the latency probes."""

    @property
    def monitor(self) -> Any:
        return self.target.monitor

    def params(self, **extra: Any) -> dict[str, Any]:
        base = {"url": self.target.url, "queues": self.target.queues, "variant": self.system.variant,
                "concurrency": self.system.concurrency, "burst": self.system.burst, **self.extra_params}
        base.update(extra)
        return base

    # --- enqueue ----------------------------------------------------------------------------------

    def enqueue(self, n: int, bulk: bool, url: str | None = None, timeout: float = 600.0,
                queues: list[str] | None = None) -> Phase:
        before = self.monitor.snapshot()
        params = self.params(n=n, bulk=bulk, chunk=self.settings.enqueue_chunk, url=url or self.target.url,
                             queues=queues or self.target.queues)
        result = run_once(self.runtime, self.system.family, "enqueue", params, timeout, label=self.system.key)
        after = self.monitor.snapshot()
        return Phase(int(result["n"]), float(result["seconds"]), delta(before, after))

    # --- processing -------------------------------------------------------------------------------

    def _worker_layout(self, processes: int) -> tuple[int, int]:
        """(worker processes to start, concurrency each) for "1 process" / "2 processes"."""
        if self.system.two_by == "concurrency":
            return 1, max(1, self.system.concurrency) * processes
        return processes, self.system.concurrency

    def enqueue_async(self, n: int) -> Phase:
        """``n`` jobs from ``settings.async_tasks`` concurrent asyncio tasks (after one untimed job each)."""
        params = self.params(n=n, tasks=self.settings.async_tasks)
        result = run_once(self.runtime, self.system.family, "enqueue_async", params, 600.0, label=self.system.key)
        return Phase(int(result["n"]), float(result["seconds"]), Delta(0, 0.0, 0),
                     extra={k: result[k] for k in ("p50_ms", "p99_ms", "max_ms")})

    def process(self, n: int, processes: int, url: str | None = None, max_jobs: int | None = None,
                queues: list[str] | None = None, during: Any = None) -> Phase:
        """Spawn ``processes`` workers, release them once ready, and wait until ``n`` queued jobs are done.

        Two times: from spawning the workers to the last job done ("with start-up": interpreter start,
        imports, connections, pool children), and from the first job done to the last ("steady state").
        ``during(started)``, if given, is called right after the workers are released.
        """
        count, concurrency = self._worker_layout(processes)
        counters = Counters()
        params = self.params(concurrency=concurrency, max_jobs=max_jobs, url=url or self.target.url,
                             queues=queues or self.target.queues)
        before = self.monitor.snapshot()
        drivers = start_gated(self.runtime, self.system.family, params, count, START_TIMEOUT_S,
                              counters.env, label=self.system.key)
        try:
            go_all(drivers)
            if during is not None:
                during()
            self._wait_done(drivers, counters, n)
            after = self.monitor.snapshot()
        finally:
            for driver in drivers:
                driver.stop()
        ran = counters.total()
        window = counters.window()
        counters.remove()
        expected = max_jobs if max_jobs is not None else n
        if ran != expected and not (max_jobs is not None and ran > expected):
            raise BenchError(f"{self.system.key}: {ran} jobs ran, expected {expected}")
        if window is None:
            raise BenchError(f"{self.system.key}: no job recorded its finish time")
        first_done, last_done = window
        spawned = min(d.spawned_at for d in drivers)
        return Phase(ran, last_done - spawned, delta(before, after), steady_s=last_done - first_done,
                     extra={"first_done": first_done, "last_done": last_done})

    def _wait_done(self, drivers: list[Driver], counters: Counters, n: int) -> float:
        """Wall-clock time at which the work was done: every burst worker reported, or (no burst mode)
        every job ran and the system's own bookkeeping says nothing is left unacknowledged.

        Fails if no job finishes for ``STALL_S`` (a stuck or crash-looping worker) or past the timeout.
        """
        deadline = time.monotonic() + self.process_timeout_s
        results: dict[int, dict[str, Any]] = {}
        progress, progress_at, checked_at = -1, time.monotonic(), time.monotonic()
        while True:
            now = time.monotonic()
            if self.system.burst:
                for index, driver in enumerate(drivers):
                    if index not in results:
                        payload = driver.poll_result()
                        if payload is not None:
                            results[index] = payload
                if len(results) == len(drivers):
                    return max(float(r["done_at"]) for r in results.values())
            else:
                if counters.total() >= n and self.monitor.all_zero(self.system.done_checks):
                    return time.time()
                if not all(d.running() for d in drivers):
                    raise DriverError(f"{self.system.key} worker exited early: {drivers[0].log_tail()}")
            if now - checked_at < STALL_CHECK_S:
                time.sleep(POLL_S)
                continue
            checked_at = now
            done = counters.total()
            if done != progress:
                progress, progress_at = done, now
            elif now - progress_at > STALL_S:
                raise BenchError(f"{self.system.key}: no job finished for {STALL_S:.0f} s ({done} of {n} done); "
                                 f"worker log: {drivers[0].log_tail(3)}")
            if now > deadline:
                raise BenchError(f"{self.system.key}: {done} of {n} jobs done after {self.process_timeout_s:.0f} s")
            time.sleep(POLL_S)

    # --- idle cost and latency --------------------------------------------------------------------

    def drain_probe(self, n: int, probe_runtime: Runtime, realtime: bool = False) -> tuple[Phase, DrainProbe]:
        """Queue ``n`` jobs, then let one worker drain them at full speed while SLOWLOG (threshold lowered,
        reset before) records every command slower than ``settings.slowlog_us`` and a separate process
        PINGs the same server every ``settings.ping_pause_s``; PINGs sent between the first and the last job
        done count.

        ``realtime``: the server's processes and the prober run at real-time priority (SCHED_FIFO) for
        the drain, so neither waits for a CPU the worker's processes hold: a PING then waits only for
        what the server runs before it (and SLOWLOG times a script without the server being descheduled
        in it). Needs the right to set it (root or CAP_SYS_NICE); ``DrainProbe.realtime`` says if it
        took."""
        target, settings = self.target, self.settings
        target.flush()
        self.enqueue(n, bulk=self.system.has_bulk)
        nodes = range(len(self.monitor.clients))
        clients = self.monitor.clients
        self.monitor.own["config"] += len(clients)
        saved = [dict(client.config_get("slowlog-*")) for client in clients]
        for i in nodes:
            self.monitor.call("CONFIG", "SET", "slowlog-log-slower-than", str(settings.slowlog_us),
                              "slowlog-max-len", "100000", node=i)
            self.monitor.call("SLOWLOG", "RESET", node=i)
        probe_url = f"redis://{self.monitor.host}:{target.ports[0]}/0"  # a plain client, also on a cluster
        probe = start_gated(probe_runtime, "probe", {"url": probe_url, "pause_s": settings.ping_pause_s,
                                                     "realtime": realtime}, 1,
                            START_TIMEOUT_S, label=f"{self.system.key}-ping")[0]
        servers = _server_pids(clients) if realtime else []
        raised = _set_realtime(servers, True)
        try:
            phase = self.process(n, 1, during=probe.go)
            probe.send("STOP")
            reply = probe.wait(60.0)
            samples = reply["samples"]
            raised = raised and bool(reply.get("realtime"))
            entries = []
            for i in nodes:
                self.monitor.own["slowlog"] += 1
                entries += self.monitor.clients[i].slowlog_get(100000)
        finally:
            _set_realtime(servers, False)
            probe.stop()
            for i, config in enumerate(saved):
                for name, value in config.items():
                    self.monitor.call("CONFIG", "SET", name, value, node=i)
        own = {"INFO", "SLOWLOG", "CONFIG", "FLUSHALL", "LLEN", "HLEN", "PING"}  # the bench's and the probe's
        script_ms, command_ms, command = None, None, ""
        names = script_names()
        for entry in entries:
            raw = entry.get("command", b"")
            text = raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)
            name, _, rest = text.partition(" ")
            name = name.upper()
            if name == "EVALSHA" and rest[:40] in names:
                text = f"EVALSHA {names[rest[:40]]}.lua {rest[41:]}"
            if name in own:
                continue
            ms = int(entry["duration"]) / 1000
            if command_ms is None or ms > command_ms:
                command_ms, command = ms, text[:80]
            if name.startswith(("EVAL", "FCALL")) and (script_ms is None or ms > script_ms):
                script_ms = ms
        assert phase.extra is not None
        first, last = phase.extra["first_done"], phase.extra["last_done"]
        pings = sorted(ms for t, ms in samples if first <= t <= last) or sorted(ms for _, ms in samples)
        return phase, DrainProbe(script_ms, command_ms, command,
                                 percentile(pings, 50) if pings else None,
                                 percentile(pings, 99) if pings else None, len(pings), raised)

    def payload_bytes(self, extra_jobs: int) -> float:
        """Request bytes one enqueue sends: two enqueue runs through a byte-counting proxy, of 1 and of
        1 + ``extra_jobs`` jobs (connection set-up and script loading cancel out), divided."""
        self.enqueue(1, bulk=False)  # scripts loaded into the server's cache before either counted run
        sent = []
        for n in (1, 1 + extra_jobs):
            with self.target.proxied() as (url, proxies):
                self.enqueue(n, bulk=False, url=url)
                sent.append(sum(p.bytes_up for p in proxies))
        self.target.flush()
        return (sent[1] - sent[0]) / extra_jobs

    def idle_and_latency(self, reps: int) -> tuple[float, list[LatencyRun]]:
        """Start one idle worker; measure its commands per second, then ``reps`` rounds of latency probes."""
        settings = self.settings
        latency_file = LatencyFile()
        drivers = start_gated(self.runtime, self.system.family, self.params(burst=False), 1, START_TIMEOUT_S,
                              latency_file.env, label=self.system.key)
        try:
            go_all(drivers)
            time.sleep(settings.settle_s + self.system.settle_s)
            before = self.monitor.snapshot()
            time.sleep(settings.idle_window_s)
            idle = delta(before, self.monitor.snapshot()).commands / settings.idle_window_s
            runs = []
            for _ in range(reps):
                latency_file.clear()
                run_once(self.runtime, self.system.family, "latency",
                         self.params(samples=settings.latency_samples, pause_s=settings.latency_pause_s),
                         120.0, label=self.system.key)
                samples = self._wait_samples(latency_file, drivers[0])
                runs.append(LatencyRun(percentile(samples, 50), percentile(samples, 99), len(samples)))
            self.rss = drivers[0].rss()
        finally:
            drivers[0].stop()
            latency_file.remove()
        return idle, runs

    def _wait_samples(self, latency_file: LatencyFile, driver: Driver) -> list[float]:
        deadline = time.monotonic() + 30.0
        while time.monotonic() < deadline:
            samples = latency_file.read_ms()
            if len(samples) >= self.settings.latency_samples:
                return samples
            if not driver.running():
                raise DriverError(f"{self.system.key} worker exited during latency probes: {driver.log_tail()}")
            time.sleep(0.05)
        raise BenchError(f"{self.system.key}: only {len(latency_file.read_ms())} of "
                         f"{self.settings.latency_samples} latency probes ran within 30 s")

    # --- round trips ------------------------------------------------------------------------------

    def round_trips(self, n: int) -> RoundTrips:
        """Enqueue ``n`` jobs one by one and process them with one worker, all through counting proxies."""
        with self.target.proxied() as (url, proxies):
            self.target.flush()
            start = sum(p.bursts for p in proxies)
            self.enqueue(n, bulk=False, url=url)
            enqueued = sum(p.bursts for p in proxies)
            self.process(n, 1, url=url)
            done = sum(p.bursts for p in proxies)
        return RoundTrips((enqueued - start) / n, (done - enqueued) / n)
