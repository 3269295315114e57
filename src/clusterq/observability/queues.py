"""Queue-level gauges: how many jobs each queue holds by state, and how long its oldest waiting job waited.

Read from O(1) counters (list lengths, sorted-set cardinalities, the stats hash) of each queue and its head
job's enqueue time, by one read-only script call per queue, all queues in one pipeline: one round trip per
node, whatever the number of jobs. Nothing here grows with the number
of jobs, so a scrape of a queue holding a million jobs costs what a scrape of an empty one does.

:func:`read_queue_gauges` is the query; :class:`QueueGauges` is the prometheus-client collector built on it
(``clusterq_queue_jobs{queue,state}``, ``clusterq_queue_oldest_waiting_seconds{queue}``), served by the
worker's ``--metrics-port`` and by the dashboard's ``/metrics``. A scrape while Redis is down answers
without the queue gauges (``clusterq_queue_scrape_ok 0``) and counts the error; it never hangs a worker.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from clusterq.api.partitions import resolve_partitions
from clusterq.connection.server_checks import memory_of_primaries
from clusterq.connection.sync import REDIS_ERRORS
from clusterq.observability.backlog import STATES, QueueGauge, autoscale, read_queue_gauges
from clusterq.worker.registration import list_workers

log = logging.getLogger(__name__)

class QueueGauges(Collector):
    """A prometheus-client collector of the queue gauges of ``queues`` (a list, or a function giving it
    at each scrape) read through ``connection``. ``on_error(kind, message, *args)`` counts a failed scrape
    (the metrics hook passes its error counter); by default it is logged."""

    def __init__(self, connection: Any, queues: Sequence[str] | Callable[[], Sequence[str]],
                 on_error: Callable[..., None] | None = None) -> None:
        self.connection = connection
        self.queues = queues
        self.on_error = on_error or (lambda kind, message, *args: log.warning(message, *args))

    def collect(self) -> Iterator[GaugeMetricFamily]:
        ok = GaugeMetricFamily("clusterq_queue_scrape_ok", "1 when the queue gauges could be read from Redis")
        try:
            names = self.queues() if callable(self.queues) else self.queues
            gauges = read_queue_gauges(self.connection, list(names))
        except REDIS_ERRORS as exc:
            self.on_error("scrape", "queue gauges could not be read from Redis: %s: %s", type(exc).__name__, exc)
            ok.add_metric([], 0)
            yield ok
            return
        jobs = GaugeMetricFamily("clusterq_queue_jobs", "Jobs in the queue by state", labels=["queue", "state"])
        oldest = GaugeMetricFamily("clusterq_queue_oldest_waiting_seconds",
                                   "Age of the oldest job waiting in the queue (0 when none waits)",
                                   labels=["queue"])
        for gauge in gauges:
            for state in STATES:
                jobs.add_metric([gauge.queue, state], gauge.jobs[state])
            oldest.add_metric([gauge.queue], gauge.oldest_waiting_s or 0.0)
        try:
            logical = partitioned_totals(self.connection, gauges)
        except REDIS_ERRORS as exc:
            self.on_error("scrape", "partition counts could not be read from Redis: %s: %s", type(exc).__name__, exc)
            logical = {}
        summed = GaugeMetricFamily("clusterq_partitioned_queue_jobs",
                                   "Jobs of a partitioned queue by state, summed over its partitions (each "
                                   "partition is also a queue in clusterq_queue_jobs)", labels=["queue", "state"])
        for name, totals in logical.items():
            for state in STATES:
                summed.add_metric([name, state], totals[state])
        ok.add_metric([], 1)
        yield from (jobs, oldest, summed, ok)


def partitioned_totals(connection: Any, gauges: Sequence[QueueGauge]) -> dict[str, dict[str, int]]:
    """For each partitioned queue among the gauges' queues (its partition 0 is one of them), its jobs by
    state summed over those of its partitions the gauges cover (one read per queue, one pipeline per node)."""
    by_name = {gauge.queue: gauge for gauge in gauges}
    totals: dict[str, dict[str, int]] = {}
    for name, parts in resolve_partitions(connection, list(by_name)).items():
        if len(parts) > 1:
            members = [by_name[part] for part in parts if part in by_name]
            totals[name] = {state: sum(gauge.jobs[state] for gauge in members) for state in STATES}
    return totals


class WorkerGauges(Collector):
    """``clusterq_workers{pool,state}`` (registered workers by their first pool's kind, ``busy`` or
    ``idle``) and ``clusterq_queue_workers{queue}`` (workers serving each queue: 0 is the "no worker on
    this queue" alert), from the workers' registrations (one entry per live worker)."""

    def __init__(self, connection: Any, on_error: Callable[..., None] | None = None) -> None:
        self.connection = connection
        self.on_error = on_error or (lambda kind, message, *args: log.warning(message, *args))

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            workers = list_workers(self.connection)
        except REDIS_ERRORS as exc:
            self.on_error("scrape", "workers could not be read from Redis: %s: %s", type(exc).__name__, exc)
            return
        by_state = GaugeMetricFamily("clusterq_workers", "Registered workers by pool kind and state",
                                     labels=["pool", "state"])
        per_queue = GaugeMetricFamily("clusterq_queue_workers", "Registered workers serving the queue",
                                      labels=["queue"])
        counts: dict[tuple[str, str], int] = {}
        queues: dict[str, int] = {}
        for worker in workers:
            pool = worker.pool.partition(":")[0] or "unknown"
            key = (pool, "busy" if worker.current_job else "idle")
            counts[key] = counts.get(key, 0) + 1
            for queue in worker.queues:
                queues[queue] = queues.get(queue, 0) + 1
        for (pool, state), count in sorted(counts.items()):
            by_state.add_metric([pool, state], count)
        for queue, count in sorted(queues.items()):
            per_queue.add_metric([queue], count)
        yield from (by_state, per_queue)


class ServerGauges(Collector):
    """Each primary's memory and whether its ``maxmemory-policy`` can evict jobs (``INFO memory``, one call
    per primary): ``clusterq_redis_evicts{node,policy}`` (1: jobs can vanish), ``clusterq_redis_memory_used_bytes``
    and ``clusterq_redis_memory_max_bytes`` (0: no limit) by ``node``."""

    def __init__(self, connection: Any, on_error: Callable[..., None] | None = None) -> None:
        self.connection = connection
        self.on_error = on_error or (lambda kind, message, *args: log.warning(message, *args))

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            nodes = memory_of_primaries(self.connection)
        except REDIS_ERRORS as exc:
            self.on_error("scrape", "server memory could not be read from Redis: %s: %s", type(exc).__name__, exc)
            return
        evicts = GaugeMetricFamily("clusterq_redis_evicts", "1 when the primary's maxmemory-policy can evict "
                                   "jobs (anything but noeviction)", labels=["node", "policy"])
        used = GaugeMetricFamily("clusterq_redis_memory_used_bytes", "Memory used by the primary", labels=["node"])
        limit = GaugeMetricFamily("clusterq_redis_memory_max_bytes", "The primary's maxmemory (0: none)",
                                  labels=["node"])
        for node in nodes:
            evicts.add_metric([node.node, node.policy], 1 if node.evicts else 0)
            used.add_metric([node.node], node.used_bytes)
            limit.add_metric([node.node], node.max_bytes)
        yield from (evicts, used, limit)


def deployment_registry(connection: Any, queues: Sequence[str] | Callable[[], Sequence[str]],
                        on_error: Callable[..., None] | None = None) -> CollectorRegistry:
    """A registry of the deployment-wide gauges (queues and workers): what the dashboard's ``/metrics``
    serves."""
    registry = CollectorRegistry()
    registry.register(QueueGauges(connection, queues, on_error))
    registry.register(WorkerGauges(connection, on_error))
    registry.register(ServerGauges(connection, on_error))
    return registry


def exposition(registry: CollectorRegistry) -> bytes:
    """The registry in Prometheus' text format."""
    return generate_latest(registry)


__all__ = ["STATES", "QueueGauge", "QueueGauges", "ServerGauges", "WorkerGauges", "autoscale",
           "deployment_registry", "exposition", "read_queue_gauges"]
