"""Sentry on real servers with a real sentry_sdk client and a transport that captures envelopes (a pool
child's envelopes travel to the test through clusterq's own report() pipe): one event per final failure,
none per retried attempt, the job as context with its arguments redacted unless asked, the producer's
trace continued, and a child's queue flushed before it exits."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
import sentry_sdk
from sentry_sdk.envelope import Envelope
from sentry_sdk.transport import Transport

from clusterq import Queue, Retry, Worker
from clusterq.hooks import Hook, report
from clusterq.observability.sentry import SentryHook

MAIN_PID = os.getpid()


class Capture(Transport):
    envelopes: list[Envelope] = []

    def capture_envelope(self, envelope: Envelope) -> None:
        if os.getpid() != MAIN_PID:
            report(("sentry", envelope.serialize()))
        else:
            Capture.envelopes.append(envelope)


class Collector(Hook):
    def on_report(self, data: Any) -> None:
        if isinstance(data, tuple) and data[0] == "sentry":
            Capture.envelopes.append(Envelope.deserialize(data[1]))


def events() -> list[dict]:
    return [e for e in (env.get_event() for env in Capture.envelopes) if e is not None]


@pytest.fixture
def sentry() -> Iterator[None]:
    Capture.envelopes = []
    sentry_sdk.init(dsn="https://key@sentry.invalid/1", transport=Capture, traces_sample_rate=1.0,
                    default_integrations=False)
    try:
        yield
    finally:
        sentry_sdk.get_client().close()


@pytest.mark.parametrize("pool", ["process", "fork", "thread", "solo"])
def test_a_job_with_two_retries_gives_exactly_one_event(url: str, qname: str, pool: str, sentry: None) -> None:
    hook = SentryHook()
    q = Queue(qname, url, hooks=[hook])
    with sentry_sdk.start_transaction(name="request") as transaction:
        job = q.enqueue("jobs.fail", "bad input", retry=Retry(max=2))
    ok = q.enqueue("jobs.add", 1, 2)
    options = {"max_jobs_per_child": 1} if pool == "process" else {}
    Worker(q, url, pool=pool, concurrency=1, hooks=[hook, Collector()], install_signal_handlers=False,
           **options).work(burst=True)
    assert ok.return_value() == 3
    [event] = [e for e in events() if e.get("exception")]
    assert event["exception"]["values"][-1]["type"] == "ValueError"
    assert event["exception"]["values"][-1]["value"] == "bad input"
    assert event["tags"] == {"clusterq.queue": qname, "clusterq.function": "jobs.fail"}
    context = event["contexts"]["clusterq job"]
    assert (context["id"], context["queue"], context["attempt"], context["retries"]) == (job.id, qname, 3, 2)
    assert context["args"] == "[1 redacted]"
    assert event["contexts"]["trace"]["trace_id"] == transaction.trace_id, "the producer's trace continues"


def test_arguments_are_sent_when_asked_and_a_job_that_never_ran_is_a_message(url: str, qname: str,
                                                                             sentry: None) -> None:
    hook = SentryHook(include_args=True)
    q = Queue(qname, url)
    q.enqueue("jobs.fail", "shown")
    q.enqueue("jobs.no_such_function")
    Worker(q, url, pool="solo", hooks=[hook], install_signal_handlers=False).work(burst=True)
    found = events()
    [raised] = [e for e in found if e.get("exception")]
    assert raised["contexts"]["clusterq job"]["args"] == ["shown"]
    [never] = [e for e in found if not e.get("exception")]
    assert "jobs.no_such_function" in never["message"] or "jobs.no_such_function" in str(never.get("logentry"))
