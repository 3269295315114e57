"""Prometheus metrics on real servers: counted in pool children, added up in the supervisor's registry
(exactly once per job however often children are recycled), bounded series, output that parses with
prometheus-client's parser, and the worker's HTTP endpoint."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
import redis
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from clusterq import JobStatus, Queue, Retry, Worker
from clusterq.observability.metrics import ENQUEUED_HEADER, JobMetrics
from clusterq.observability.queues import QueueGauges, read_queue_gauges
from worker_thread import running


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition, keyed by name and sorted labels (parsing it is part of the test)."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def _closed_port() -> int:
    """A loopback port nothing listens on (a server that is down)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _jobs(samples: dict, queue: str, outcome: str) -> float:
    return sum(v for (name, labels), v in samples.items()
               if name == "clusterq_jobs_total" and ("queue", queue) in labels and ("outcome", outcome) in labels)


@pytest.mark.parametrize("pool", ["fork", "process"])
def test_jobs_counted_in_recycled_children_add_up_exactly_in_the_supervisor(url: str, qname: str,
                                                                          pool: str) -> None:
    metrics = JobMetrics()
    q = Queue(qname, url, hooks=[metrics])
    for i in range(50):
        q.enqueue("jobs.add", i, 1)
    options = {"max_jobs_per_child": 1} if pool == "process" else {}  # fork: a fresh child per job anyway
    Worker(q, url, pool=pool, concurrency=2, hooks=[metrics], install_signal_handlers=False,
           **options).work(burst=True)
    samples = _samples(generate_latest(metrics.registry).decode())
    assert _jobs(samples, qname, "finished") == 50
    labels = (("function", "jobs.add"), ("queue", qname))
    assert samples[("clusterq_job_duration_seconds_count", labels)] == 50
    assert samples[("clusterq_job_wait_seconds_count", (("queue", qname),))] == 50, "stamped at enqueue"


def test_retries_and_the_final_failure_are_counted_apart(url: str, qname: str) -> None:
    metrics = JobMetrics()
    q = Queue(qname, url)
    q.enqueue("jobs.fail", retry=Retry(max=2))
    q.enqueue("jobs.add", 1, 2)
    Worker(q, url, pool="thread", hooks=[metrics], install_signal_handlers=False).work(burst=True)
    samples = _samples(generate_latest(metrics.registry).decode())
    assert _jobs(samples, qname, "retried") == 2
    assert _jobs(samples, qname, "failed") == 1
    assert _jobs(samples, qname, "finished") == 1
    assert samples[("clusterq_retries_total", (("function", "jobs.fail"), ("queue", qname)))] == 2
    assert samples.get(("clusterq_job_wait_seconds_count", (("queue", qname),)), 0) == 0, "no stamp, no wait"


def test_the_series_count_stays_constant_however_many_distinct_jobs_run(url: str, qname: str) -> None:
    metrics = JobMetrics()
    q = Queue(qname, url, hooks=[metrics])

    def series() -> int:
        return len(_samples(generate_latest(metrics.registry).decode()))

    def run(n: int, offset: int) -> None:
        for i in range(n):
            q.enqueue("jobs.add", offset + i, 1)
        Worker(q, url, pool="solo", hooks=[metrics], install_signal_handlers=False).work(burst=True)

    run(10, 0)
    before = series()
    run(1000, 10)
    assert series() == before
    assert _jobs(_samples(generate_latest(metrics.registry).decode()), qname, "finished") == 1010


def test_function_labels_are_capped(url: str, qname: str) -> None:
    metrics = JobMetrics(max_functions=1)
    q = Queue(qname, url)
    q.enqueue("jobs.add", 1, 2)
    q.enqueue("jobs.noop")
    Worker(q, url, pool="solo", hooks=[metrics], install_signal_handlers=False).work(burst=True)
    samples = _samples(generate_latest(metrics.registry).decode())
    functions = {dict(labels).get("function") for (name, labels) in samples if name == "clusterq_jobs_total"}
    assert functions == {"jobs.add", "(other)"}


def test_a_garbage_enqueue_stamp_is_counted_and_never_fails_the_job(url: str, qname: str) -> None:
    metrics = JobMetrics()

    class Garbage:
        def before_enqueue(self, job) -> None:
            job.headers[ENQUEUED_HEADER] = "not a time"

    q = Queue(qname, url, hooks=[Garbage()])
    job = q.enqueue("jobs.add", 1, 2)
    Worker(q, url, pool="fork", concurrency=1, hooks=[metrics], install_signal_handlers=False).work(burst=True)
    assert job.return_value() == 3
    samples = _samples(generate_latest(metrics.registry).decode())
    assert samples[("clusterq_observability_errors_total", (("kind", "header"),))] == 1
    assert _jobs(samples, qname, "finished") == 1


def test_the_worker_serves_its_registry_over_http(url: str, qname: str) -> None:
    metrics = JobMetrics(port=0)
    q = Queue(qname, url)
    job = q.enqueue("jobs.add", 1, 2)
    with running(Worker(q, url, pool="process", concurrency=2, hooks=[metrics], install_signal_handlers=False)):
        assert job.latest_result(timeout=60).return_value == 3
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics.port}/metrics", timeout=10) as reply:
            text = reply.read().decode()
    samples = _samples(text)
    assert _jobs(samples, qname, "finished") == 1
    assert samples[("clusterq_worker_slots", (("pool", "process"), ("state", "idle")))] == 2
    assert samples[("clusterq_queue_jobs", (("queue", qname), ("state", "finished")))] == 1
    assert samples[("clusterq_queue_scrape_ok", ())] == 1


def test_queue_gauges_count_jobs_by_state_and_age_the_oldest_waiting_one(url: str, qname: str) -> None:
    q = Queue(qname, url)
    failed = q.enqueue("jobs.fail")
    Worker(q, url, pool="solo", install_signal_handlers=False).work(burst=True)
    assert failed.get_status() == JobStatus.FAILED
    first = q.enqueue("jobs.add", 1, 2)
    q.enqueue("jobs.add", 1, 2, priority=3)
    q.enqueue_in(3600, "jobs.add", 1, 2)
    q.enqueue("jobs.add", 1, 2, depends_on=first)
    other = f"{qname}-empty"
    [gauge, empty] = read_queue_gauges(q.connection, [qname, other])
    assert gauge.jobs == {"waiting": 2, "running": 0, "scheduled": 1, "deferred": 1, "failed": 1,
                          "finished": 0, "canceled": 0}
    assert gauge.oldest_waiting_s is not None and 0 <= gauge.oldest_waiting_s < 600
    assert set(empty.jobs.values()) == {0} and empty.oldest_waiting_s is None


def test_a_scrape_while_redis_is_down_answers_without_queue_gauges_and_counts_it(caplog) -> None:
    metrics = JobMetrics(queue_gauges=False)
    metrics.registry.register(QueueGauges(redis.Redis(port=_closed_port()), ["q"],
                                          on_error=metrics.errors))
    for _ in range(3):  # the error counter is collected before the gauges: the 3rd shows the first 2
        samples = _samples(generate_latest(metrics.registry).decode())
    assert samples[("clusterq_queue_scrape_ok", ())] == 0
    assert samples[("clusterq_observability_errors_total", (("kind", "scrape"),))] == 2
    assert not any(name == "clusterq_queue_jobs" for name, _ in samples)
    assert len([r for r in caplog.records if "queue gauges could not be read" in r.getMessage()
                and r.levelname == "WARNING"]) == 1, "logged once"


def test_the_worker_command_serves_metrics_on_its_port(url: str, qname: str, tmp_path,
                                                       subprocess_env: dict[str, str]) -> None:
    port = _closed_port()
    job = Queue(qname, url).enqueue("jobs.record_then_wait", str(tmp_path / "started"), str(tmp_path / "release"))
    cli = [sys.executable, "-m", "clusterq.cli", "worker", "-P", "process", "-c", "1", "-u", url,
           "--metrics-port", str(port), qname]
    proc = subprocess.Popen(cli, env=subprocess_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        text = ""
        while "clusterq_worker_slots{" not in text or not (tmp_path / "started").exists():
            assert time.monotonic() < deadline and proc.poll() is None, "the worker's metrics never answered"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
                    text = reply.read().decode()
            except OSError:
                time.sleep(0.05)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
            samples = _samples(reply.read().decode())  # scraped after the job started
        assert samples[("clusterq_worker_slots", (("pool", "process"), ("state", "busy")))] == 1
        assert samples[("clusterq_queue_jobs", (("queue", qname), ("state", "running")))] == 1
        (tmp_path / "release").write_text("go")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert job.return_value() == "released"
