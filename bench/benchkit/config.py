"""Run settings: the defaults (a full run, ~15 minutes on 2 cores) and ``--quick`` (a ~2-minute smoke run)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent.parent
REPO_DIR = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
LOG_DIR = RESULTS_DIR / "logs"


@dataclass(frozen=True)
class Settings:
    jobs: int = 20_000
    """N: jobs per processing run (systems too slow to process N within ``budget_s`` get fewer)."""
    reps: int = 3
    """Repetitions of every measurement; the median is reported."""
    budget_s: float = 6.0
    """Target length of one single-process processing run, used to size N for slow systems."""
    min_jobs: int = 300
    calibration_jobs: int = 500
    latency_samples: int = 100
    latency_pause_s: float = 0.02
    idle_window_s: float = 5.0
    settle_s: float = 1.5
    rt_jobs: int = 1000
    rt_min_jobs: int = 100
    rt_budget_s: float = 1.5
    backlog_small: int = 10_000
    backlog_large: int = 1_000_000
    backlog_work: int = 10_000
    enqueue_chunk: int = 50_000
    cluster: bool = True
    cluster_queues: int = 6
    peers: tuple[str, ...] = ()
    json_path: Path = RESULTS_DIR / "latest.json"
    quick: bool = False


QUICK = dict(
    jobs=3_000,
    reps=1,
    budget_s=2.0,
    min_jobs=100,
    calibration_jobs=200,
    latency_samples=40,
    idle_window_s=2.0,
    settle_s=1.0,
    rt_jobs=300,
    rt_budget_s=1.0,
    backlog_small=5_000,
    backlog_large=100_000,
    backlog_work=5_000,
    cluster_queues=3,
)


def quick(settings: Settings) -> Settings:
    return replace(settings, quick=True, **QUICK)  # type: ignore[arg-type]
