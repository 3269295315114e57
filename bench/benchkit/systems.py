"""The systems under test and how each one is driven."""

from __future__ import annotations

from dataclasses import dataclass

CLUSTERQ = "clusterq"
BASELINE = "redis-py"
"""Not a peer: a bare redis-py loop, the physical limit of a one-by-one producer."""


@dataclass(frozen=True)
class System:
    key: str
    family: str
    """Which driver module (``peer_drivers.<family>``) and which peer package group."""
    variant: str = ""
    has_bulk: bool = False
    bulk_api: str = ""
    burst: bool = False
    """The worker stops by itself once its queues are empty (else the bench polls until all jobs ran)."""
    two_by: str = "processes"
    """How "2 processes" is made: two worker processes, or one worker with concurrency 2 ("concurrency")."""
    concurrency: int = 0
    done_checks: tuple[tuple[str, str], ...] = ()
    """(command, key) pairs that must all answer 0 once every job ran: the system's own "acked" state."""
    settle_s: float = 0.0
    note: str = ""
    has_worker: bool = True
    """False for producer-only rows (taskiq, the redis-py baseline): no processing, latency or RSS."""
    async_producer: bool = False
    """Has an asyncio producer, measured from ``Settings.async_tasks`` concurrent tasks."""

    @property
    def is_peer(self) -> bool:
        return self.family not in (CLUSTERQ, "redispy")

    @property
    def is_baseline(self) -> bool:
        return self.key == BASELINE


SYSTEMS: tuple[System, ...] = (
    System(CLUSTERQ, CLUSTERQ, has_bulk=True, bulk_api="Queue.enqueue_many", burst=True, async_producer=True,
           note="`clusterq worker --burst --import peer_tasks.plain` with its defaults (process pool, "
                "one child per CPU); "
                "AsyncQueue.enqueue for asyncio"),
    System(BASELINE, "redispy", has_worker=False,
           note="bare redis-py loop: one RPUSH of clusterq's enqueue size per round trip (not a peer)"),
    System("rq-fork", "rq", "fork", has_bulk=True, bulk_api="Queue.enqueue_many", burst=True,
           note="rq.Worker (a fork per job), burst mode"),
    System("rq-simple", "rq", "simple", has_bulk=True, bulk_api="Queue.enqueue_many", burst=True,
           note="rq.SimpleWorker, burst mode"),
    System("celery-solo", "celery", "solo", has_bulk=True, bulk_api="group().apply_async()",
           done_checks=(("llen", "bench"), ("hlen", "unacked")), settle_s=1.0,
           note="pool=solo, no result backend, mingle/gossip/heartbeat off"),
    System("celery-prefork", "celery", "prefork", has_bulk=True, bulk_api="group().apply_async()",
           two_by="concurrency", concurrency=1, done_checks=(("llen", "bench"), ("hlen", "unacked")),
           settle_s=1.5, note="pool=prefork, -c 1 (\"2 processes\" = -c 2)"),
    System("dramatiq", "dramatiq", concurrency=8, done_checks=(("hlen", "dramatiq:bench.msgs"),),
           note="RedisBroker, 1 process x 8 threads"),
    System("huey", "huey", concurrency=1, note="RedisHuey, 1 worker thread, blocking reads"),
    System("arq", "arq", burst=True, async_producer=True, note="burst mode, max_jobs=10 (default)"),
    System("taskiq", "taskiq", has_worker=False, async_producer=True,
           note="taskiq-redis ListQueueBroker, asyncio producer only"),
)

FAMILIES: tuple[str, ...] = ("rq", "celery", "dramatiq", "huey", "arq", "taskiq")


def select(peers: tuple[str, ...]) -> list[System]:
    """clusterq plus the peers named by family ("rq") or by key ("rq-simple"); ("none",) for none."""
    chosen = [s for s in SYSTEMS if not s.is_peer or s.family in peers or s.key in peers]
    if peers == ("none",):
        chosen = [s for s in chosen if not s.is_baseline]
    unknown = set(peers) - {s.family for s in SYSTEMS} - {s.key for s in SYSTEMS} - {"none"}
    if unknown:
        raise ValueError(f"unknown peer(s) {sorted(unknown)}; choose from {', '.join(FAMILIES)} or "
                         f"{', '.join(s.key for s in SYSTEMS if s.is_peer)}")
    return chosen
