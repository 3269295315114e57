"""The results table (stdout) and JSON (``bench/results/latest.json``), with clusterq / best-peer ratios."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .suite import SystemResult
from .systems import BASELINE, CLUSTERQ


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    higher_is_better: bool
    digits: int
    target: str = ""
    """Human text of the issue's target, e.g. ">= 5x best peer" or "<= 25"."""
    check: Callable[[float, float | None], bool | None] | None = None
    """check(clusterq value, reference value) -> target met (None: cannot tell without a reference)."""
    peer_keys: tuple[str, ...] = ()
    """The peers' figures to take the best of (default: the same key): e.g. steady processing with 1 or 2
    worker processes, whichever is faster for that peer."""
    against: str = "peers"
    """"peers": compare with the best peer; "baseline": with the bare redis-py loop."""
    value_key: str = ""
    """clusterq's figure, if not ``key``."""

    @property
    def own_key(self) -> str:
        return self.value_key or self.key


def _ratio_at_least(factor: float) -> Callable[[float, float | None], bool | None]:
    return lambda v, best: None if best is None else v >= factor * best


def _at_most(limit: float) -> Callable[[float, float | None], bool | None]:
    return lambda v, _best: v <= limit


def _at_least(limit: float) -> Callable[[float, float | None], bool | None]:
    return lambda v, _best: v >= limit


PROCESS_BEST = ("process_1_steady", "process_2_steady")
PROCESS_BEST_STARTUP = ("process_1", "process_2")

METRICS: tuple[Metric, ...] = (
    Metric("enqueue_single", "enqueue jobs/s, one by one, sync", True, 0, ">= 1.0x best peer", _ratio_at_least(1.0)),
    Metric("enqueue_single_limit", "  vs bare redis-py loop, same bytes", True, 0, ">= 0.8x limit",
           _ratio_at_least(0.8), against="baseline", value_key="enqueue_single", peer_keys=("enqueue_single",)),
    Metric("enqueue_async", "enqueue jobs/s, 100 asyncio tasks", True, 0, ">= 3x best peer", _ratio_at_least(3)),
    Metric("enqueue_async_p99_ms", "  latency per enqueue p99 ms", False, 2),
    Metric("enqueue_bulk", "enqueue_many jobs/s (bulk API)", True, 0, ">= 100,000", _at_least(100_000)),
    Metric("process_1_steady", "processing jobs/s, 1 worker, steady", True, 0, ">= 5x best peer",
           _ratio_at_least(5), peer_keys=PROCESS_BEST),
    Metric("process_1", "  with start-up (spawn to last job)", True, 0, ">= 5x best peer", _ratio_at_least(5),
           peer_keys=PROCESS_BEST_STARTUP),
    Metric("process_2_steady", "processing jobs/s, 2 workers, steady", True, 0),
    Metric("process_2", "  with start-up", True, 0),
    Metric("cpu_us_per_job", "Redis CPU us/job, enqueue + processing", False, 1, "<= 25", _at_most(25)),
    Metric("cpu_us_enqueue", "  of which enqueue", False, 1),
    Metric("cpu_us_processing", "  of which processing", False, 1),
    Metric("cpu_us_enqueue_bulk", "  enqueue in bulk instead", False, 1),
    Metric("commands_per_job", "Redis commands/job, enqueue + processing", False, 1, "<= 6", _at_most(6)),
    Metric("commands_enqueue", "  of which enqueue", False, 1),
    Metric("commands_processing", "  of which processing", False, 1),
    Metric("commands_enqueue_bulk", "  enqueue in bulk instead", False, 1),
    Metric("latency_p99_ms", "enqueue-to-start p99 ms, idle worker", False, 2, "<= 3", _at_most(3)),
    Metric("latency_p50_ms", "  p50 ms", False, 2),
    Metric("memory_per_job", "Redis bytes/waiting job", False, 0, "<= 135", _at_most(135)),
    Metric("rss_mb", "worker RSS MB, all processes (idle)", False, 1),
    Metric("slowlog_script_ms", "longest script ms, 1 worker draining", False, 3, "<= 1", _at_most(1.0)),
    Metric("slowlog_command_ms", "  longest command ms (any)", False, 3),
    Metric("ping_p99_ms", "other client's PING p99 ms, draining", False, 3, "<= 1", _at_most(1.0)),
    Metric("ping_p50_ms", "  PING p50 ms", False, 3),
    Metric("ping_p99_rt_ms", "  PING p99 ms, Redis+prober real-time", False, 3),
    Metric("slowlog_script_rt_ms", "  longest script ms, Redis real-time", False, 3),
    Metric("drain_steady", "  drain jobs/s with the probes on", True, 0),
    Metric("rt_per_job", "round trips/job, enqueue + processing", False, 2),
    Metric("idle_commands_per_s", "idle worker commands/s", False, 1),
)

def fmt(value: float | None, digits: int) -> str:
    if value is None:
        return "-"
    if digits == 0:
        return f"{value:,.0f}"
    return f"{value:,.{digits}f}"


@dataclass
class Comparison:
    metric: Metric
    value: float | None
    best_key: str | None
    best_value: float | None

    @property
    def ratio(self) -> float | None:
        if self.value is None or not self.best_value:
            return None
        return self.value / self.best_value

    @property
    def met(self) -> bool | None:
        if self.metric.check is None or self.value is None:
            return None
        return self.metric.check(self.value, self.best_value)

    def to_json(self) -> dict[str, Any]:
        return {"clusterq": self.value, "best_peer": self.best_key, "best_peer_value": self.best_value,
                "ratio_to_best_peer": self.ratio, "target": self.metric.target or None, "target_met": self.met}


def compare(metric: Metric, value: float | None, peers: list[SystemResult]) -> Comparison:
    keys = metric.peer_keys or (metric.key,)
    candidates = [(p.median(key), p.key + (f" ({key.split('_')[1]}w)" if len(keys) > 1 else ""))
                  for p in peers for key in keys]
    present = [(v, k) for v, k in candidates if v is not None and v > 0]
    if not present:
        return Comparison(metric, value, None, None)
    best_value, best_key = (max if metric.higher_is_better else min)(present)
    return Comparison(metric, value, best_key, best_value)


def _verdict(comparison: Comparison) -> str:
    if comparison.metric.target == "":
        return ""
    met = comparison.met
    mark = "-" if met is None else ("met" if met else "MISSED")
    return f"{comparison.metric.target} {mark}"


def _render(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(headers, widths)))]
    lines.append("  ".join("-" * w for w in widths))
    for row in rows:
        lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))))
    return "\n".join(lines)


SLOWLOG_FLOOR_MS = 0.0


def cell(result: SystemResult, metric: Metric) -> str:
    if metric.against == "baseline":
        return ""
    value = result.median(metric.own_key)
    if value is None and not result.ok:
        return "failed"
    if metric.key.startswith("slowlog") and value == 0:
        return f"<{SLOWLOG_FLOOR_MS:.3f}"
    return fmt(value, metric.digits)


def _row(metric: Metric, value: float | None, peers: list[SystemResult], baseline: list[SystemResult],
         cells: list[str]) -> tuple[list[str], Comparison]:
    comp = compare(metric, value, baseline if metric.against == "baseline" else peers)
    best = f"{fmt(comp.best_value, metric.digits)} {comp.best_key}" if comp.best_key else "-"
    ratio = f"{comp.ratio:.2f}x" if comp.ratio is not None else "-"
    return [metric.label, *cells, best, ratio, _verdict(comp)], comp


def split_results(results: list[SystemResult]) -> tuple[SystemResult, list[SystemResult], list[SystemResult]]:
    cq = next(r for r in results if r.key == CLUSTERQ)
    baseline = [r for r in results if r.key == BASELINE]
    peers = [r for r in results if r.key not in (CLUSTERQ, BASELINE)]
    return cq, baseline, peers


def main_table(results: list[SystemResult]) -> tuple[str, dict[str, Comparison]]:
    cq, baseline, peers = split_results(results)
    shown = [cq, *baseline, *peers]
    headers = ["metric (median)", *(r.key for r in shown), "best peer", "cq/best", "target"]
    rows = []
    comparisons = {}
    for metric in METRICS:
        row, comp = _row(metric, cq.median(metric.own_key), peers, baseline, [cell(r, metric) for r in shown])
        comparisons[metric.key] = comp
        rows.append(row)
    rows.append(["N (jobs per run)", *(fmt(r.info.get("jobs"), 0) for r in shown), "", "", ""])
    return _render(headers, rows), comparisons


def limits_lines(limits: dict[str, Any], results: list[SystemResult], comparisons: dict[str, Comparison],
                 n: int) -> str:
    """What each missable target is up against on this machine and server (bench/benchkit/limits.py)."""
    cq, baseline, peers = split_results(results)
    lines = ["limits measured in this run (the floor under each target a run can miss):"]
    base = baseline[0] if baseline else None
    cpu, cmds = (base.median("cpu_us_enqueue"), base.median("commands_enqueue")) if base else (None, None)
    if cpu is not None:
        lines.append(f"  Redis CPU: one bare RPUSH per round trip (the redis-py row) costs the server {cpu:.1f} us "
                     f"and {fmt(cmds, 1)} command(s) per request (clusterq's one-by-one enqueue: "
                     f"{fmt(cq.median('cpu_us_enqueue'), 1)} us, {fmt(cq.median('commands_enqueue'), 1)} commands); "
                     + (f"a one-by-one enqueue leaves at most {25 - cpu:.1f} us of the 25 us/job target for "
                        "the script's work and all of processing" if cpu < 25 else
                        "the round trip alone is already above the 25 us/job target"))
    best_enqueue = comparisons.get("enqueue_single")
    fastest = next((p for p in peers if best_enqueue is not None and p.key == best_enqueue.best_key), None)
    rate, own_cpu = cq.median("enqueue_single"), cq.median("cpu_us_enqueue")
    peer_cpu = fastest.median("cpu_us_enqueue") if fastest else None
    if fastest and rate and own_cpu is not None and peer_cpu is not None and best_enqueue and best_enqueue.best_value:
        extra = own_cpu - peer_cpu
        with_extra = 1 / (1 / best_enqueue.best_value + max(extra, 0.0) / 1e6)
        lines.append(f"  one-by-one enqueue: the server spends {extra:.1f} us more per job on clusterq's enqueue "
                     f"(a script writing a record) than on {fastest.key}'s one command; {fastest.key}'s "
                     f"{best_enqueue.best_value:,.0f}/s with that added to each round trip would be "
                     f"{with_extra:,.0f}/s (clusterq: {rate:,.0f}/s)")
    floor = limits.get("memory_floor")
    if floor is not None:
        huey = next((p.median("memory_per_job") for p in peers if p.key == "huey"), None)
        lines.append(f"  memory: the smallest layout with a record per job (its id in the pending list, a hash "
                     f"holding only its status, clusterq's key shapes and id length) takes {floor:.0f} B/job "
                     f"(clusterq: {fmt(cq.median('memory_per_job'), 0)} B; Huey, with no record per job, "
                     f"{fmt(huey, 0)} B)")
    ping = limits.get("ping_floor")
    if ping:
        lines.append(f"  PING: with {ping['burners']} CPU-bound processes (no Redis traffic) keeping every core "
                     f"busy, another client's PING p50/p99 is {ping['p50_ms']:.3f}/{ping['p99_ms']:.3f} ms "
                     f"(clusterq draining: {fmt(cq.median('ping_p50_ms'), 3)}/{fmt(cq.median('ping_p99_ms'), 3)} ms)")
    held, held_script = cq.median("ping_p99_rt_ms"), cq.median("slowlog_script_rt_ms")
    if held is not None:
        lines.append(f"  PING, scheduler out of the way: with Redis and the prober at real-time priority (the worker's "
                     f"processes cannot keep either off a CPU), clusterq draining at full speed leaves another "
                     f"client's PING p99 at {held:.3f} ms and its longest script at {fmt(held_script, 3)} ms: "
                     f"what Redis runs of the worker's before a PING; the rest of the p99 above is the wait for a CPU")
    startup = limits.get("startup")
    steady = cq.median("process_1_steady")
    best = comparisons.get("process_1")
    if startup:
        text = (f"  start-up: spawn to exit of python -c pass {startup['python_s'] * 1000:.0f} ms, import redis "
                f"{startup['import_redis_s'] * 1000:.0f} ms, import clusterq.cli.main "
                f"{startup['import_cli_s'] * 1000:.0f} ms")
        if steady and best is not None and best.best_value:
            ceiling = n / (startup["import_cli_s"] + (n - 1) / steady)
            bare = n / (startup["import_redis_s"] + (n - 1) / steady)
            text += (f"; with nothing but that import before the first job and clusterq's steady rate after it, "
                     f"{n:,} jobs would run at {ceiling:,.0f} jobs/s = {ceiling / best.best_value:.2f}x the best "
                     f"peer's {best.best_value:,.0f} with start-up; with only `import redis` before it, "
                     f"{bare:,.0f} jobs/s = {bare / best.best_value:.2f}x")
        lines.append(text)
    return "\n".join(lines) if len(lines) > 1 else ""


def slowlog_lines(results: list[SystemResult]) -> str:
    """The longest command SLOWLOG saw in each drain probe (script names for clusterq's EVALSHAs)."""
    lines = ["longest command while one worker drained (SLOWLOG, per run):"]
    for result in results:
        commands = result.info.get("slowlog_commands")
        times = result.runs.get("slowlog_command_ms") or []
        if commands:
            lines.append(f"  {result.key}: " + "; ".join(f"{ms:.3f} ms {c}" for ms, c in zip(times, commands)))
    return "\n".join(lines) if len(lines) > 1 else ""


def rss_lines(results: list[SystemResult]) -> str:
    """Each system's idle worker processes: the worker (supervisor) first, then its children."""
    lines = ["worker RSS by process (MB; the worker process first, then what it forked):"]
    for result in results:
        procs = result.info.get("rss_processes")
        if procs:
            lines.append(f"  {result.key}: " + " + ".join(f"{p['mb']:.1f} ({p['name']})" for p in procs)
                         + f" = {sum(p['mb'] for p in procs):.1f}")
    return "\n".join(lines)


def backlog_table(backlog: SystemResult) -> str:
    sizes = backlog.info.get("sizes") or []
    rows = []
    for size in sizes:
        rate = backlog.median(f"backlog_{size}_rate")
        cpu = backlog.median(f"backlog_{size}_cpu_us")
        rows.append([f"{size:,}", fmt(rate, 0), fmt(cpu, 1), _verdict_value("<= 25", cpu, 25),
                     fmt(backlog.median(f"backlog_{size}_commands"), 2),
                     fmt(backlog.median(f"backlog_{size}_bytes"), 0),
                     fmt(backlog.median(f"backlog_{size}_fill"), 0)])
    headers = ["jobs waiting", "processing jobs/s (steady)", "Redis CPU us/job", "target", "commands/job",
               "bytes/waiting job", "enqueue_many jobs/s (fill)"]
    title = (f"clusterq backlog: one default `clusterq worker` process runs {backlog.info.get('jobs', 0):,} jobs "
             "(--max-jobs) from the head of the queue")
    return title + "\n" + _render(headers, rows)


def _verdict_value(target: str, value: float | None, limit: float) -> str:
    if value is None:
        return "-"
    return f"{target} {'met' if value <= limit else 'MISSED'}"


def cluster_table(standalone: SystemResult, cluster: SystemResult, peers: list[SystemResult],
                  queues: list[str], cluster_baseline: SystemResult | None = None) -> tuple[str, dict[str, Comparison]]:
    """clusterq on the cluster against the peers on the standalone server (they have no cluster support);
    the bare-loop limit against ``cluster_baseline`` (the same loop on the cluster) when it was measured."""
    headers = ["metric (median)", f"cluster ({len(queues)} queues)", "standalone", "peers", "best peer (standalone)",
               "cluster/best", "target"]
    baseline = [p for p in peers if p.key == BASELINE]
    if cluster_baseline is not None and cluster_baseline.ok:
        baseline = [dataclasses.replace(cluster_baseline, key=f"{BASELINE} (cluster)")]
    others = [p for p in peers if p.key != BASELINE]
    rows = []
    comparisons = {}
    for metric in METRICS:
        row, comp = _row(metric, cluster.median(metric.own_key), others, baseline,
                         [cell(cluster, metric), cell(standalone, metric),
                          "" if metric.against == "baseline" else "n/a"])
        comparisons[metric.key] = comp
        rows.append(row)
    return _render(headers, rows), comparisons


def failures(results: list[SystemResult]) -> str:
    lines = [f"  {r.key}: {r.status}" for r in results if not r.ok]
    return ("failures:\n" + "\n".join(lines)) if lines else ""


def write_json(path: Path, document: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")
