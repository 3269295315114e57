"""Prometheus metrics for a worker, built as a public hook (:class:`JobMetrics`).

Jobs are counted where they run (a pool child, a thread, an asyncio task) and sent with
:func:`clusterq.hooks.report` to the worker's supervisor, which owns one ordinary prometheus-client
registry: one endpoint per worker however many children it forks and recycles, and no multiprocess
directory to clean up. A pool child's reports ride on the outcome message it sends for each job anyway
(no message of their own); no Redis command is added per job.

Series are bounded: labels are the queue, the function's dotted path and the outcome, never a job id, a
worker name or a pod. The (queue, function) pairs are capped (``max_functions``): a flood of forged
function names lands under ``function="(other)"`` instead of growing the registry.

Metric names (all prefixed ``clusterq_``):

=====================================  ==========================================================
``jobs_total{queue,function,outcome}`` runs ended: ``finished``, ``failed`` (for good), ``retried``,
                                       ``abandoned`` (lease expired past its attempts)
``job_duration_seconds{queue,function}`` histogram of run times (every run, retried ones included)
``job_wait_seconds{queue}``            histogram of enqueue-to-start times (jobs stamped at enqueue by
                                       this hook on the producer, see :meth:`JobMetrics.before_enqueue`)
``retries_total{queue,function}``      failed runs that will run again
``lease_expired_total{queue}``         jobs failed by maintenance because their worker died or hung
``worker_slots{pool,state}``           this worker's pool slots, ``busy`` or ``idle``
``observability_errors_total{kind}``   what this layer refused or failed at (a garbage header, a
                                       queue scrape while Redis is down), each logged once
``queue_jobs{queue,state}``            the worker's queues' jobs by state, and their oldest waiting
``queue_oldest_waiting_seconds{queue}`` age (:mod:`clusterq.observability.queues`), read at scrape time
=====================================  ==========================================================
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import start_http_server
from prometheus_client.registry import Collector

from clusterq.api.hooks import EnqueueInfo, Hook, JobInfo, report
from clusterq.observability.queues import QueueGauges

log = logging.getLogger(__name__)

ENQUEUED_HEADER = "cq-enqueued-at"
"""The header :meth:`JobMetrics.before_enqueue` stamps (Unix seconds, producer clock) for the wait time."""

TAG = "clusterq.metrics"
"""First item of every report this hook sends: ``on_report`` ignores other hooks' reports."""

OTHER = "(other)"
DEFAULT_MAX_FUNCTIONS = 500
DURATION_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0,
                      3600.0, float("inf"))
WAIT_BUCKETS_S = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 4 * 3600.0,
                  float("inf"))


class _Errors:
    """Counts this layer's refusals and failures, and logs the first of each kind (never a job's)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.counter = Counter("clusterq_observability_errors", "Errors of clusterq's observability layer "
                               "(each kind logged once)", ["kind"], registry=registry)
        self._logged: set[str] = set()

    def __call__(self, kind: str, message: str, *args: Any) -> None:
        self.counter.labels(kind).inc()
        if kind in self._logged:
            log.debug(message, *args)
        else:
            self._logged.add(kind)
            log.warning(message + " (logged once; counted in clusterq_observability_errors_total{kind=%r})",
                        *args, kind)


class _Timer:
    """``around_perform``'s context manager: times the run and reports it when it ends."""

    __slots__ = ("hook", "job", "start", "wait_s")

    def __init__(self, hook: JobMetrics, job: JobInfo) -> None:
        self.hook, self.job = hook, job
        self.wait_s: float | None = None

    def __enter__(self) -> _Timer:
        self.start = time.perf_counter()
        if self.job.attempt <= 1:  # a retried run's wait would count the backoff, not the backlog
            stamp = self.job.headers.get(ENQUEUED_HEADER)
            if stamp is not None:
                try:
                    self.wait_s = max(0.0, time.time() - float(stamp))
                except ValueError:
                    report((TAG, "bad", ENQUEUED_HEADER, stamp[:40]))
        return self

    def __exit__(self, kind: Any, error: Any, tb: Any) -> None:
        report((TAG, "run", self.job.queue, self.job.func, time.perf_counter() - self.start, self.wait_s,
                error is None))


class _Slots(Collector):
    """``clusterq_worker_slots{pool,state}``: read from the worker's pools at scrape time."""

    def __init__(self) -> None:
        self.worker: Any = None

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily("clusterq_worker_slots", "This worker's pool slots by state",
                                   labels=["pool", "state"])
        worker = self.worker
        if worker is not None:
            totals: dict[str, list[int]] = {}
            for lane in worker.lanes:
                busy, slots = lane.pool.busy(), lane.pool.concurrency
                total = totals.setdefault(lane.pool.kind or type(lane.pool).__name__, [0, 0])
                total[0] += busy
                total[1] += max(0, slots - busy)
            for pool, (busy, idle) in sorted(totals.items()):
                family.add_metric([pool, "busy"], busy)
                family.add_metric([pool, "idle"], idle)
        yield family


class JobMetrics(Hook):
    """A hook that counts jobs into a prometheus-client registry owned by the worker's supervisor.

    ``JobMetrics(port=9100)`` also serves the registry (``/metrics``) while the worker runs; ``port=0``
    picks a free one (:attr:`port` tells which). Register it on the worker (``Worker(hooks=[m])``,
    ``clusterq worker --metrics-port``) and, for the wait-time histogram, on the producers too
    (``Queue(hooks=[m])`` or :func:`clusterq.hooks.register`): they stamp each job's enqueue time in its
    headers. ``extra`` collectors (the queue gauges, :class:`~clusterq.observability.queues.QueueGauges`)
    are served from the same registry.
    """

    def __init__(self, registry: CollectorRegistry | None = None, *, port: int | None = None,
                 host: str = "127.0.0.1", max_functions: int = DEFAULT_MAX_FUNCTIONS,
                 stamp_enqueue: bool = True, queue_gauges: bool = True,
                 extra: Sequence[Collector] = ()) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.port, self.host = port, host
        self.max_functions = max_functions
        self.stamp_enqueue = stamp_enqueue
        self.queue_gauges = queue_gauges
        self._gauges: QueueGauges | None = None
        r = self.registry
        self.jobs = Counter("clusterq_jobs", "Job runs ended, by outcome", ["queue", "function", "outcome"],
                            registry=r)
        self.duration = Histogram("clusterq_job_duration_seconds", "Run time of a job's run",
                                  ["queue", "function"], buckets=DURATION_BUCKETS_S, registry=r)
        self.wait = Histogram("clusterq_job_wait_seconds", "Time from enqueue to a job's first run",
                              ["queue"], buckets=WAIT_BUCKETS_S, registry=r)
        self.retries = Counter("clusterq_retries", "Failed runs that will run again", ["queue", "function"],
                               registry=r)
        self.lease_expired = Counter("clusterq_lease_expired", "Jobs failed because their lease expired "
                                     "past their attempts (worker died or hung)", ["queue"], registry=r)
        self.errors = _Errors(r)
        self._slots = _Slots()
        r.register(self._slots)
        for collector in extra:
            r.register(collector)
        self._pairs: set[tuple[str, str]] = set()
        self._series: dict[tuple[str, str], tuple[Any, Any, Any]] = {}
        self._lock = threading.Lock()
        self._server: Any = None

    def __repr__(self) -> str:
        return f"JobMetrics(port={self.port!r})"

    # --- the producer -------------------------------------------------------------------------------

    def before_enqueue(self, job: EnqueueInfo) -> None:
        if self.stamp_enqueue:
            job.headers.setdefault(ENQUEUED_HEADER, f"{time.time():.3f}")

    # --- where the job runs (a pool child, a thread, a task): counted, then reported ----------------

    def around_perform(self, job: JobInfo) -> _Timer:
        return _Timer(self, job)

    def on_retry(self, job: JobInfo, error: BaseException | None, reason: str) -> None:
        report((TAG, "retry", job.queue, job.func))

    def on_failure(self, job: JobInfo, error: BaseException | None, reason: str) -> None:
        report((TAG, "fail", job.queue, job.func))

    # --- the supervisor -----------------------------------------------------------------------------

    def on_abandoned(self, queue: str, job_id: str) -> None:
        self.jobs.labels(queue, OTHER, "abandoned").inc()  # the function is not known here
        self.lease_expired.labels(queue).inc()

    def on_report(self, data: Any) -> None:
        if not (isinstance(data, tuple) and data and data[0] == TAG):
            return
        kind = data[1]
        if kind == "run":
            _, _, queue, func, duration_s, wait_s, ok = data
            series = self._series.get((queue, func))
            if series is None:
                series = self._series_of(queue, func)
            series[0].observe(duration_s)
            if wait_s is not None:
                series[1].observe(wait_s)
            if ok:
                series[2].inc()
        elif kind == "retry":
            func = self._function(data[2], data[3])
            self.jobs.labels(data[2], func, "retried").inc()
            self.retries.labels(data[2], func).inc()
        elif kind == "fail":
            self.jobs.labels(data[2], self._function(data[2], data[3]), "failed").inc()
        elif kind == "bad":
            self.errors("header", "job header %s is not a number (%r): the wait time is not counted",
                        data[2], data[3])

    def _series_of(self, queue: str, func: str) -> tuple[Any, Any, Any]:
        """The labelled children a run report updates, looked up once per (queue, function): the
        supervisor handles every job's report, so its per-job work is kept to the updates."""
        label = self._function(queue, func)
        series = (self.duration.labels(queue, label), self.wait.labels(queue),
                  self.jobs.labels(queue, label, "finished"))
        if label == func:  # "(other)" functions are not cached: the cache stays as bounded as the series
            self._series[(queue, func)] = series
        return series

    def _function(self, queue: str, func: str) -> str:
        """``func``, or ``(other)`` once ``max_functions`` (queue, function) pairs have been seen."""
        pair = (queue, func)
        if pair in self._pairs:
            return func
        with self._lock:  # on_report runs in job threads too (thread pool)
            if len(self._pairs) < self.max_functions:
                self._pairs.add(pair)
                return func
        return OTHER

    def on_worker_start(self, worker: Any) -> None:
        self._slots.worker = worker
        if self.queue_gauges and self._gauges is None:  # the worker's own queues, read at each scrape
            self._gauges = QueueGauges(worker.connection, [q for lane in worker.lanes for q in lane.queues],
                                       on_error=self.errors)
            self.registry.register(self._gauges)
        if self.port is not None and self._server is None:
            self._server, _ = start_http_server(self.port, self.host, registry=self.registry)
            self.port = self._server.server_address[1]
            log.info("clusterq metrics on http://%s:%d/metrics", self.host, self.port)

    def on_child_start(self) -> None:
        if self._server is not None:  # a forked child must not hold the supervisor's listening socket
            self._server.socket.close()
            self._server = None

    def on_worker_stop(self, worker: Any) -> None:
        self._slots.worker = None
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


__all__ = ["DURATION_BUCKETS_S", "ENQUEUED_HEADER", "WAIT_BUCKETS_S", "JobMetrics"]
