"""The results table (stdout) and JSON (``bench/results/latest.json``), with clusterq / best-peer ratios."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .suite import SystemResult
from .systems import CLUSTERQ


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    higher_is_better: bool
    digits: int
    target: str = ""
    """Human text of the issue's target, e.g. ">= 5x best peer" or "<= 25"."""
    check: Callable[[float, float | None], bool | None] | None = None
    """check(clusterq value, best peer value) -> target met (None: cannot tell without a peer)."""


def _ratio_at_least(factor: float) -> Callable[[float, float | None], bool | None]:
    return lambda v, best: None if best is None else v >= factor * best


def _at_most(limit: float) -> Callable[[float, float | None], bool | None]:
    return lambda v, _best: v <= limit


def _at_least(limit: float) -> Callable[[float, float | None], bool | None]:
    return lambda v, _best: v >= limit


METRICS: tuple[Metric, ...] = (
    Metric("enqueue_single", "enqueue jobs/s, one by one", True, 0, ">= 3x best", _ratio_at_least(3)),
    Metric("enqueue_bulk", "enqueue jobs/s, bulk", True, 0, ">= 100,000", _at_least(100_000)),
    Metric("process_1", "processing jobs/s, 1 process", True, 0, ">= 5x best", _ratio_at_least(5)),
    Metric("process_2", "processing jobs/s, 2 processes", True, 0),
    Metric("commands_per_job", "Redis commands/job (life)", False, 1),
    Metric("commands_enqueue", "  of which enqueue", False, 1),
    Metric("commands_processing", "  of which processing", False, 1),
    Metric("commands_enqueue_bulk", "  enqueue in bulk instead", False, 1),
    Metric("cpu_us_per_job", "Redis CPU us/job (life)", False, 1, "<= 25", _at_most(25)),
    Metric("cpu_us_enqueue", "  of which enqueue", False, 1),
    Metric("cpu_us_processing", "  of which processing", False, 1),
    Metric("cpu_us_enqueue_bulk", "  enqueue in bulk instead", False, 1),
    Metric("rt_per_job", "round trips/job (life)", False, 2, "<= 1.5", _at_most(1.5)),
    Metric("rt_enqueue", "  of which enqueue", False, 2),
    Metric("rt_processing", "  of which processing", False, 2),
    Metric("latency_p50_ms", "enqueue-to-start p50 ms", False, 2),
    Metric("latency_p99_ms", "enqueue-to-start p99 ms", False, 2, "<= 5", _at_most(5)),
    Metric("idle_commands_per_s", "idle worker commands/s", False, 1, "<= 5", _at_most(5)),
    Metric("memory_per_job", "Redis bytes/pending job", False, 0, "<= 250", _at_most(250)),
)
BACKLOG_METRICS: tuple[Metric, ...] = (
    Metric("process_backlog_small", "processing jobs/s, small backlog (empty server)", True, 0),
    Metric("process_backlog_large", "processing jobs/s, large backlog", True, 0),
    Metric("process_backlog_side", "processing jobs/s, small backlog beside the large", True, 0),
    Metric("backlog_ratio", "large / small backlog", True, 2, ">= 0.90", _at_least(0.9)),
    Metric("backlog_ratio_side", "large / small beside it (interleaved runs)", True, 2, ">= 0.90", _at_least(0.9)),
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
    candidates = [(p.median(metric.key), p.key) for p in peers]
    present = [(v, k) for v, k in candidates if v is not None]
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


def cell(result: SystemResult, metric: Metric) -> str:
    value = result.median(metric.key)
    if value is None and not result.ok:
        return "failed"
    return fmt(value, metric.digits)


def main_table(results: list[SystemResult]) -> tuple[str, dict[str, Comparison]]:
    cq = next(r for r in results if r.key == CLUSTERQ)
    peers = [r for r in results if r.key != CLUSTERQ]
    headers = ["metric (median)", *(r.key for r in results), "best peer", "cq/best", "target"]
    rows = []
    comparisons = {}
    for metric in METRICS:
        comp = compare(metric, cq.median(metric.key), peers)
        comparisons[metric.key] = comp
        best = f"{fmt(comp.best_value, metric.digits)} {comp.best_key}" if comp.best_key else "-"
        ratio = f"{comp.ratio:.2f}x" if comp.ratio is not None else "-"
        rows.append([metric.label, *(cell(r, metric) for r in results), best, ratio, _verdict(comp)])
    rows.append(["N (jobs per throughput run)", *(fmt(r.info.get("jobs"), 0) for r in results), "", "", ""])
    return _render(headers, rows), comparisons


def backlog_table(backlog: SystemResult) -> str:
    rows = []
    for metric in BACKLOG_METRICS:
        comp = Comparison(metric, backlog.median(metric.key), None, None)
        rows.append([metric.label, fmt(comp.value, metric.digits), _verdict(comp)])
    info = backlog.info
    headers = [f"clusterq backlog ({info.get('backlog_small', 0):,} vs {info.get('backlog_large', 0):,} queued, "
               f"{info.get('jobs', 0):,} processed)", "value", "target"]
    return _render(headers, rows)


def cluster_table(standalone: SystemResult, cluster: SystemResult, peers: list[SystemResult],
                  queues: list[str]) -> tuple[str, dict[str, Comparison]]:
    headers = ["metric (median)", "standalone", f"cluster ({len(queues)} queues)", "best peer", "cluster/best",
               "target"]
    rows = []
    comparisons = {}
    for metric in METRICS:
        comp = compare(metric, cluster.median(metric.key), peers)
        comparisons[metric.key] = comp
        best = f"{fmt(comp.best_value, metric.digits)} {comp.best_key}" if comp.best_key else "-"
        ratio = f"{comp.ratio:.2f}x" if comp.ratio is not None else "-"
        rows.append([metric.label, cell(standalone, metric), cell(cluster, metric), best, ratio, _verdict(comp)])
    return _render(headers, rows), comparisons


def failures(results: list[SystemResult]) -> str:
    lines = [f"  {r.key}: {r.status}" for r in results if not r.ok]
    return ("failures:\n" + "\n".join(lines)) if lines else ""


def write_json(path: Path, document: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")
