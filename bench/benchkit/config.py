"""Run settings: the defaults (a full run) and ``--quick`` (a smoke run of a few minutes)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent.parent
REPO_DIR = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
LOG_DIR = RESULTS_DIR / "logs"


@dataclass(frozen=True)
class Settings:
    jobs: int = 10_000
    """N: jobs per throughput run, the same for every system (never sized per system)."""
    reps: int = 3
    """Repetitions of every throughput measurement; the median is reported."""
    async_tasks: int = 100
    """Concurrent asyncio tasks of the asyncio producer row."""
    latency_samples: int = 100
    latency_pause_s: float = 0.02
    idle_window_s: float = 5.0
    settle_s: float = 1.5
    rt_jobs: int = 1000
    payload_probe_jobs: int = 200
    """Extra enqueues through a byte-counting proxy that give clusterq's request size per enqueue."""
    slowlog_us: int = 20
    """SLOWLOG threshold during the drain probe (the server's default is 10,000 us)."""
    ping_pause_s: float = 0.001
    probe_peers: bool = True
    """Run the drain probe (SLOWLOG, PING) for the peers too, not only for clusterq."""
    backlog_sizes: tuple[int, ...] = ()
    """Waiting jobs for the backlog figures (``--backlog``: 10k, 100k, 1M); empty: skipped."""
    backlog_work: int = 10_000
    enqueue_chunk: int = 50_000
    cluster: bool = True
    cluster_queues: int = 6
    peers: tuple[str, ...] = ()
    json_path: Path = RESULTS_DIR / "latest.json"
    quick: bool = False


QUICK = dict(
    jobs=2_000,
    reps=1,
    latency_samples=40,
    idle_window_s=2.0,
    settle_s=1.0,
    rt_jobs=300,
    backlog_work=5_000,
    cluster=False,
    cluster_queues=3,
    probe_peers=False,
)
QUICK_PEERS = ("rq-simple", "celery-solo", "dramatiq", "huey", "arq", "taskiq")
"""--quick leaves out RQ's forking worker and Celery's prefork pool: slower than rq-simple and celery-solo
at no-op jobs in every run so far, they never set a "best peer" figure, and they take half of a quick run."""
DEFAULT_BACKLOG = (10_000, 100_000, 1_000_000)


def quick(settings: Settings) -> Settings:
    return replace(settings, quick=True, **QUICK)  # type: ignore[arg-type]
