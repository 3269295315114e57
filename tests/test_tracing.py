"""OpenTelemetry tracing on real servers, in every pool: a producer span at enqueue, a consumer span per
run parented to it (or linked), messaging attributes, exceptions recorded, retries as runs of their own,
garbage trace headers ignored and counted. Spans are captured with the SDK's in-memory exporter; a pool
child's spans travel to the test through clusterq's own report() pipe."""

from __future__ import annotations

import json
import logging
import os
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from clusterq import Queue, Retry, Worker
from clusterq.hooks import Hook, report
from clusterq.observability.tracing import Tracing
from clusterq.worker.pools.factory import POOL_KINDS

MAIN_PID = os.getpid()


class Exporter(InMemorySpanExporter):
    """In-memory in this process; from a pool child, sent to the worker (here) with report()."""

    def export(self, spans: Any) -> SpanExportResult:
        if os.getpid() != MAIN_PID:
            report(("spans", [span.to_json() for span in spans]))
            return SpanExportResult.SUCCESS
        return super().export(spans)


class Collector(Hook):
    def __init__(self) -> None:
        self.spans: list[dict] = []

    def on_report(self, data: Any) -> None:
        if isinstance(data, tuple) and data[0] == "spans":
            self.spans.extend(json.loads(s) for s in data[1])


def _setup(link: bool = False) -> tuple[Tracing, Exporter, Collector, TracerProvider]:
    exporter = Exporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return Tracing(provider, link=link), exporter, Collector(), provider


def _spans(exporter: Exporter, collector: Collector) -> list[dict]:
    return [json.loads(s.to_json()) for s in exporter.get_finished_spans()] + collector.spans


@pytest.mark.parametrize("pool", POOL_KINDS)
def test_a_consumer_span_per_run_is_a_child_of_the_producer_span(url: str, qname: str, pool: str) -> None:
    tracing, exporter, collector, provider = _setup()
    q = Queue(qname, url, hooks=[tracing])
    with provider.get_tracer("app").start_as_current_span("request"):
        ok = q.enqueue("jobs.add", 1, 2)
        bad = q.enqueue("jobs.fail", retry=Retry(max=1))
    Worker(q, url, pool=pool, concurrency=1, hooks=[tracing, collector],
           install_signal_handlers=False).work(burst=True)
    assert ok.return_value() == 3
    spans = _spans(exporter, collector)
    [request] = [s for s in spans if s["name"] == "request"]
    producers = {s["attributes"]["messaging.message.id"]: s for s in spans if s["kind"] == "SpanKind.PRODUCER"}
    consumers = [s for s in spans if s["kind"] == "SpanKind.CONSUMER"]
    assert set(producers) == {ok.id, bad.id}
    for producer in producers.values():
        assert producer["name"] == f"send {qname}" and producer["parent_id"] == request["context"]["span_id"]
        assert producer["attributes"]["messaging.system"] == "clusterq"
        assert producer["attributes"]["messaging.operation.type"] == "send"
    by_job: dict[str, list[dict]] = {}
    for span in consumers:
        by_job.setdefault(span["attributes"]["messaging.message.id"], []).append(span)
    assert sorted(len(v) for v in by_job.values()) == [1, 2], "one span per run: the failed job ran twice"
    for job_id, runs in by_job.items():
        producer = producers[job_id]
        for span in runs:
            assert span["name"] == f"process {qname}"
            assert span["context"]["trace_id"] == request["context"]["trace_id"]
            assert span["parent_id"] == producer["context"]["span_id"]
            assert span["attributes"]["messaging.destination.name"] == qname
            assert span["attributes"]["messaging.operation.type"] == "process"
    assert sorted(s["attributes"]["clusterq.attempt"] for s in by_job[bad.id]) == [1, 2]
    for span in by_job[bad.id]:
        assert span["status"]["status_code"] == "ERROR"
        assert any(e["name"] == "exception" and "boom" in e["attributes"]["exception.message"]
                   for e in span["events"])
    assert by_job[ok.id][0]["status"]["status_code"] == "UNSET"


def test_link_mode_starts_a_trace_per_run_linked_to_the_producer(url: str, qname: str) -> None:
    tracing, exporter, collector, _ = _setup(link=True)
    q = Queue(qname, url, hooks=[tracing])
    q.enqueue("jobs.add", 1, 2)
    Worker(q, url, pool="fork", concurrency=1, hooks=[tracing, collector],
           install_signal_handlers=False).work(burst=True)
    spans = _spans(exporter, collector)
    [producer] = [s for s in spans if s["kind"] == "SpanKind.PRODUCER"]
    [consumer] = [s for s in spans if s["kind"] == "SpanKind.CONSUMER"]
    assert consumer["context"]["trace_id"] != producer["context"]["trace_id"] and consumer["parent_id"] is None
    assert [link["context"]["span_id"] for link in consumer["links"]] == [producer["context"]["span_id"]]


def test_a_garbage_trace_header_is_counted_logged_once_and_never_fails_the_job(
        url: str, qname: str, caplog: pytest.LogCaptureFixture) -> None:
    tracing, exporter, collector, _ = _setup()

    class Garbage:
        def before_enqueue(self, job) -> None:
            job.headers["traceparent"] = "00-not-a-trace-id-01"

    q = Queue(qname, url, hooks=[Garbage()])
    jobs = [q.enqueue("jobs.add", i, 1) for i in range(2)]
    with caplog.at_level(logging.WARNING, logger="clusterq.observability.tracing"):
        Worker(q, url, pool="solo", hooks=[tracing, collector], install_signal_handlers=False).work(burst=True)
    assert [j.return_value() for j in jobs] == [1, 2]
    assert tracing.bad_headers == 2
    assert len([r for r in caplog.records if "malformed traceparent" in r.getMessage()]) == 1
    consumers = [s for s in _spans(exporter, collector) if s["kind"] == "SpanKind.CONSUMER"]
    assert len(consumers) == 2 and all(s["parent_id"] is None for s in consumers)
