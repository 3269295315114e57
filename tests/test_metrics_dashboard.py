"""The dashboard's /metrics: the deployment's queue and worker gauges, token-protected when auth is on,
output that parses with prometheus-client's parser."""

from __future__ import annotations

import re
import time
from pathlib import Path

import httpx
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from clusterq import Queue, Retry, Worker
from clusterq.dashboard import AuthConfig, Token, create_app, hash_token
from clusterq.observability.metrics import JobMetrics
from clusterq.observability.queues import deployment_registry
from dashboard_support import serving
from worker_thread import running


def _samples(text: str) -> dict:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_the_dashboard_serves_queue_and_worker_gauges_behind_its_token(url: str, qname: str) -> None:
    q = Queue(qname, url)
    for i in range(3):
        q.enqueue("jobs.add", i, 1)
    auth = AuthConfig(tokens=[Token("prometheus", hash_token("scrape-me"), "viewer")])
    with serving(create_app(url, auth=auth)) as base, httpx.Client(base_url=base, timeout=30) as c:
        assert c.get("/metrics").status_code == 401
        assert c.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
        bearer = {"Authorization": "Bearer scrape-me"}
        reply = c.get("/metrics", headers=bearer)
        assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/plain")
        samples = _samples(reply.text)
        assert samples[("clusterq_queue_jobs", (("queue", qname), ("state", "waiting")))] == 3
        assert samples[("clusterq_queue_oldest_waiting_seconds", (("queue", qname),))] >= 0
        assert samples[("clusterq_queue_scrape_ok", ())] == 1
        policies = [(dict(labels), v) for (name, labels), v in samples.items() if name == "clusterq_redis_evicts"]
        assert policies and all(v == (labels["policy"] != "noeviction") for labels, v in policies)
        with running(Worker(q, url, pool="thread", concurrency=2, install_signal_handlers=False, name="w1")):
            samples = {}
            for _ in range(600):  # until the worker has registered and run the backlog
                samples = _samples(c.get("/metrics", headers=bearer).text)
                if samples.get(("clusterq_queue_workers", (("queue", qname),))) == 1 and \
                        samples[("clusterq_queue_jobs", (("queue", qname), ("state", "finished")))] == 3:
                    break
                time.sleep(0.05)
            assert samples[("clusterq_queue_workers", (("queue", qname),))] == 1
            assert samples[("clusterq_queue_jobs", (("queue", qname), ("state", "finished")))] == 3
            assert sum(v for (name, labels), v in samples.items()
                       if name == "clusterq_workers" and ("pool", "thread") in labels) == 1


def test_the_autoscaling_endpoint_answers_in_the_shape_kedas_metrics_api_scaler_reads(url: str, qname: str) -> None:
    a, b = Queue(qname, url), Queue(f"{qname}-b", url)
    for i in range(3):
        a.enqueue("jobs.add", i, 1)
    b.enqueue("jobs.add", 1, 1)
    b.enqueue_in(0.2, "jobs.add", 2, 2)  # due soon, and no worker promotes it: due-scheduled
    b.enqueue_in(3600, "jobs.add", 3, 3)  # not due: not counted
    auth = AuthConfig(tokens=[Token("keda", hash_token("scale-me"), "viewer")])
    bearer = {"Authorization": "Bearer scale-me"}
    with serving(create_app(url, auth=auth)) as base, httpx.Client(base_url=base, timeout=30) as c:
        assert c.get("/api/autoscale", params={"queue": qname}).status_code == 401
        assert c.get("/api/autoscale", headers=bearer).status_code == 400
        answer: dict = {}
        deadline = time.monotonic() + 60
        while answer.get("due_scheduled") != 1:
            assert time.monotonic() < deadline, answer
            answer = c.get("/api/autoscale", params={"queue": f"{qname},{qname}-b"}, headers=bearer).json()
        assert answer["queues"] == [qname, f"{qname}-b"]
        assert (answer["waiting"], answer["running"], answer["due_scheduled"], answer["value"]) == (4, 0, 1, 5)
        assert answer["oldest_waiting_s"] >= 0


def test_the_shipped_alert_rules_and_grafana_dashboard_use_only_metrics_clusterq_exposes(url: str,
                                                                                        qname: str) -> None:
    metrics = JobMetrics()
    q = Queue(qname, url, hooks=[metrics])
    q.enqueue("jobs.add", 1, 2)
    q.enqueue("jobs.fail", retry=Retry(max=1))
    with running(Worker(q, url, pool="thread", hooks=[metrics], install_signal_handlers=False, name="w-rules")):
        deadline = time.monotonic() + 60
        while q.count or q.started_job_registry.count:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        text = generate_latest(metrics.registry) + generate_latest(deployment_registry(q.connection, [qname]))
        families = list(text_string_to_metric_families(text.decode()))
        exposed = {s.name for family in families for s in family.samples} | {  # declared, none counted yet
            f"{family.name}_total" if family.type == "counter" else family.name for family in families}
    root = Path(__file__).resolve().parent.parent / "deploy"
    for path in (root / "prometheus" / "clusterq-alerts.yml", root / "grafana" / "clusterq-dashboard.json"):
        used = set(re.findall(r"\bclusterq_[a-z_]+", path.read_text()))
        assert used and used <= exposed, f"{path.name} uses {sorted(used - exposed)}, which nothing exposes"
