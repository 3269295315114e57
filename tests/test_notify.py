"""Notifications on real servers with real receivers: a Standard Webhooks signed webhook checked with the
``standardwebhooks`` package, redelivery of a 500 under the same id, one digest for many failures, Slack's
format, email through a real SMTP server (aiosmtpd), a plugin found through a real entry point, and broken
notifiers and plugins that are logged and counted without touching the jobs."""

from __future__ import annotations

import base64
import json
import logging
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks import Webhook

from clusterq import JobStatus, Queue, Worker
from clusterq.observability.notify import Notifications, load
from clusterq.observability.notify import notifiers as N
from notify_support import Receiver, smtp_server, wait_for
from worker_thread import running

SECRET = "whsec_" + base64.b64encode(b"a test secret of 32 bytes......!").decode()
TOPOLOGIES = pytest.mark.parametrize("clusterq_topology", ["standalone", "cluster"], indirect=True)


def _settings(notifiers: dict[str, Any], **extra: Any) -> dict[str, Any]:
    rules = extra.pop("rules", [{"name": "failures", "events": ["job_failed"], "window_s": 1}])
    return {"notifiers": notifiers, "rules": rules, "retry_base_s": 0.05, "flush_interval_s": 0.05, **extra}


def _fail_then_deliver(url: str, qname: str, notifications: Notifications, failures: int,
                       pool: str = "thread") -> None:
    """``failures`` failing jobs run by a burst worker (its events flushed when it stops); then a worker
    serving only the notify queue runs the digest and its deliveries."""
    q = Queue(qname, url)
    q.enqueue_many([Queue.prepare_data("jobs.fail", args=(f"boom {i}",)) for i in range(failures)])
    Worker(q, url, pool=pool, concurrency=4 if pool == "thread" else 2, hooks=[notifications],
           install_signal_handlers=False).work(burst=True)
    assert q.failed_job_registry.count == failures, "the notifier never touched the jobs"


def _delivered(notifications: Notifications, name: str, n: int = 1) -> bool:
    return notifications.outcomes.get((name, "delivered"), 0) >= n


@TOPOLOGIES
@pytest.mark.parametrize("pool", ["thread", "process"])  # process: failures seen in forked children
def test_many_failures_make_one_signed_digest_with_the_count_and_bounded_samples(url: str, qname: str,
                                                                                pool: str) -> None:
    with Receiver() as receiver:
        n = Notifications(_settings({"hook": {"type": "webhook", "url": receiver.url + "/hook", "secret": SECRET}}))
        _fail_then_deliver(url, qname, n, 200, pool)
        with running(Worker([n.queue], url, pool="thread", hooks=[n], install_signal_handlers=False)):
            wait_for(lambda: _delivered(n, "hook"), what="the digest's delivery")
            notify_queue = Queue(n.queue, url)
            wait_for(lambda: notify_queue.count == 0 and notify_queue.scheduled_job_registry.count == 0,
                     what="the notify queue to drain")
        assert len(receiver.requests) == 1, "200 failures, one digest"
        request = receiver.requests[0]
        payload = Webhook(SECRET).verify(request.body, request.headers)  # raises unless the signature holds
        assert payload["count"] == 200 and payload["rule"] == "failures" and payload["event"] == "job_failed"
        assert len(payload["samples"]) == 5, "the sample list is bounded"
        sample = payload["samples"][0]
        assert sample["queue"] == qname and sample["function"] == "jobs.fail" and "boom" in sample["reason"]
        assert "args" not in sample and "kwargs" not in sample, "arguments are redacted by default"
        assert request.headers["webhook-id"] == payload["id"]


@TOPOLOGIES
def test_a_500_is_redelivered_with_the_same_webhook_id(url: str, qname: str) -> None:
    with Receiver(statuses=(500, 200)) as receiver:
        n = Notifications(_settings({"hook": {"type": "webhook", "url": receiver.url, "secret": SECRET}}))
        _fail_then_deliver(url, qname, n, 3)
        with running(Worker([n.queue], url, pool="thread", hooks=[n], install_signal_handlers=False)):
            wait_for(lambda: _delivered(n, "hook"), what="the redelivery")
        first, second = receiver.requests
        assert first.headers["webhook-id"] == second.headers["webhook-id"]
        for request in (first, second):
            assert Webhook(SECRET).verify(request.body, request.headers)["count"] == 3
        assert n.outcomes[("hook", "failed")] == 1 and n.outcomes[("hook", "delivered")] == 1


def test_chat_notifications_are_slack_incoming_webhook_text(url: str, qname: str) -> None:
    with Receiver() as receiver:
        n = Notifications(_settings({"slack": {"type": "chat", "url": receiver.url}}, redact_args=False))
        _fail_then_deliver(url, qname, n, 2)
        with running(Worker([n.queue], url, pool="thread", hooks=[n], install_signal_handlers=False)):
            wait_for(lambda: _delivered(n, "slack"), what="the chat message")
        body = receiver.requests[0].json
        assert list(body) == ["text"]
        assert "failures: 2 x job_failed" in body["text"] and "jobs.fail" in body["text"]
        assert "boom" in body["text"] and "args=" in body["text"], "redact_args=False shows the arguments"


def test_email_goes_through_a_real_smtp_server(url: str, qname: str) -> None:
    with smtp_server() as (port, received):
        n = Notifications(_settings({"mail": {"type": "email", "host": "127.0.0.1", "port": port,
                                              "sender": "clusterq@example.com", "to": ["ops@example.com"]}}))
        _fail_then_deliver(url, qname, n, 4)
        with running(Worker([n.queue], url, pool="thread", hooks=[n], install_signal_handlers=False)):
            wait_for(lambda: _delivered(n, "mail"), what="the email")
        (envelope,) = received
        assert envelope.rcpt_tos == ["ops@example.com"] and envelope.mail_from == "clusterq@example.com"
        text = envelope.content.decode()
        assert "Subject: [clusterq] failures: 4 x job_failed" in text and "jobs.fail" in text


PLUGIN = textwrap.dedent('''
    import time

    SENT = []

    class Recorder:
        def __init__(self, label="x"):
            self.label = label

        def send(self, notification):
            SENT.append((self.label, notification.count, notification.id))

    class Raises:
        def send(self, notification):
            raise RuntimeError("the plugin broke")

    class Hangs:
        def send(self, notification):
            time.sleep(3600)
''')


@pytest.fixture
def plugin_dist(tmp_path: Path) -> Any:
    """A tiny installed distribution on sys.path: real ``importlib.metadata`` entry point discovery."""
    module = f"cq_notify_plugin_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{module}.py").write_text(PLUGIN)
    info = tmp_path / "cq_notify_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: cq-notify-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[clusterq.notifiers]\n"
        f"recorder = {module}:Recorder\n"
        f"raises = {module}:Raises\n"
        f"hangs = {module}:Hangs\n"
        "broken = cq_no_such_module_anywhere:Thing\n")
    sys.path.insert(0, str(tmp_path))
    N.discover(refresh=True)
    try:
        yield __import__(module)
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop(module, None)
        N.discover(refresh=True)


def test_a_plugin_is_found_through_its_entry_point_and_a_broken_one_is_logged_not_fatal(
        url: str, qname: str, plugin_dist: Any, caplog: pytest.LogCaptureFixture) -> None:
    N.discover(refresh=True)  # read again: the broken entry point was logged once, when first read
    records = caplog.get_records("setup") + caplog.get_records("call")
    assert sum("'broken'" in r.getMessage() and "cq_no_such_module_anywhere" in r.getMessage()
               and r.levelno == logging.ERROR for r in records) == 1
    n = Notifications(_settings({"rec": {"type": "recorder", "label": "ops"}, "bad": {"type": "broken"}}))
    assert n.outcomes[("broken", "invalid")] == 1 and n.outcomes[("bad", "invalid")] == 1
    assert "its entry point is broken" in n.invalid["bad"]
    _fail_then_deliver(url, qname, n, 3)
    with running(Worker([n.queue], url, pool="thread", hooks=[n], install_signal_handlers=False)):
        wait_for(lambda: _delivered(n, "rec"), what="the plugin's delivery")
        wait_for(lambda: n.outcomes.get(("bad", "dropped")), what="the invalid notifier's delivery dropped")
    assert len(plugin_dist.SENT) == 1 and plugin_dist.SENT[0][:2] == ("ops", 3)


def test_a_notifier_that_raises_or_hangs_is_counted_and_never_fails_a_job(url: str, qname: str,
                                                                          plugin_dist: Any) -> None:
    n = Notifications(_settings({"raises": {"type": "raises"}, "hangs": {"type": "hangs"}},
                                retries=1, delivery_timeout_s=0.3))
    q = Queue(qname, url)
    ok = q.enqueue("jobs.add", 1, 2)
    _fail_then_deliver(url, qname, n, 2)
    assert ok.get_status() == JobStatus.FINISHED
    with running(Worker([n.queue], url, pool="thread", hooks=[n], install_signal_handlers=False)):
        wait_for(lambda: n.outcomes.get(("raises", "dropped")) and n.outcomes.get(("hangs", "dropped")),
                 what="both deliveries to give up")
    assert n.outcomes[("raises", "failed")] == 1 and n.outcomes[("hangs", "timeout")] == 1


@TOPOLOGIES
def test_the_periodic_check_reports_a_backlog_and_a_queue_without_worker(url: str, qname: str) -> None:
    with Receiver() as receiver:
        rules = [{"name": "backlog", "events": ["backlog"], "threshold": 5, "queues": [qname], "window_s": 1},
                 {"name": "unserved", "events": ["no_worker"], "window_s": 1}]
        n = Notifications(_settings({"hook": {"type": "webhook", "url": receiver.url}}, rules=rules,
                                    check_interval_s=0.2))
        q = Queue(qname, url)
        q.enqueue_many([Queue.prepare_data("jobs.noop") for _ in range(8)])
        with running(Worker([n.queue], url, pool="thread", hooks=[n], install_signal_handlers=False)):
            wait_for(lambda: _delivered(n, "hook", 2), what="both digests")
        by_rule = {r.json["rule"]: r.json for r in receiver.requests}
        assert by_rule["backlog"]["samples"][0] == {"event": "backlog", "queue": qname, "waiting": 8, "threshold": 5}
        assert {"event": "no_worker", "queue": qname, "waiting": 8} in by_rule["unserved"]["samples"]
        assert all(s["queue"] != n.queue for s in by_rule["unserved"]["samples"])


@pytest.mark.parametrize(("config", "message"), [
    ({"notifiers": {}}, "needs 'notifiers'"),
    ({"notifiers": {"a": {"type": "webhook", "url": "http://x"}}, "bogus": 1}, "unknown field(s) ['bogus']"),
    ({"notifiers": {"a": {"type": "webhook", "url": "http://x"}}, "rules": [{"events": ["nope"]}]},
     "unknown event(s) ['nope']"),
    ({"notifiers": {"a": {"type": "webhook", "url": "http://x"}}, "rules": [{"events": ["backlog"]}]},
     "needs a 'threshold'"),
    ({"notifiers": {"a": {"type": "webhook", "url": "http://x"}}, "rules": [{"events": ["job_failed"],
                                                                             "notify": ["b"]}]},
     "notifies ['b']"),
    ({"notifiers": {"a": {"type": "webhook", "url": "http://x", "secret_env": "CQ_NO_SUCH_VAR"}}},
     "$CQ_NO_SUCH_VAR, which is not set"),
])
def test_bad_settings_are_refused_naming_the_field(config: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError) as caught:
        load(config)
    assert message in str(caught.value)


def test_a_bad_webhook_secret_is_named_and_only_that_notifier_is_dropped(caplog: pytest.LogCaptureFixture) -> None:
    n = Notifications({"notifiers": {"a": {"type": "webhook", "url": "http://127.0.0.1:9", "secret": "nope"},
                                     "b": {"type": "chat", "url": "http://127.0.0.1:9"}}})
    assert "'whsec_'" in n.invalid["a"] and "b" in n.notifiers
    assert json.loads(json.dumps(sorted(n.outcomes))) == [["a", "invalid"]]


def test_an_eviction_policy_that_can_drop_jobs_is_reported(clusterq_standalone: Any) -> None:
    clusterq_standalone.flush()
    url = clusterq_standalone.url
    admin = clusterq_standalone.client()
    before = admin.config_get("maxmemory-policy")["maxmemory-policy"]
    admin.config_set("maxmemory-policy", "allkeys-lru")
    try:
        with Receiver() as receiver:
            n = Notifications(_settings({"hook": {"type": "webhook", "url": receiver.url}},
                                        rules=[{"name": "evicts", "events": ["eviction_policy"], "window_s": 1}],
                                        check_interval_s=0.2))
            with running(Worker([n.queue], url, pool="thread", hooks=[n], install_signal_handlers=False)):
                wait_for(lambda: _delivered(n, "hook"), what="the digest")
            sample = receiver.requests[0].json["samples"][0]
            assert sample["event"] == "eviction_policy" and sample["policy"] == "allkeys-lru"
    finally:
        admin.config_set("maxmemory-policy", before)


def test_a_worker_whose_registration_expired_since_the_last_check_is_reported_lost(url: str) -> None:
    from clusterq.state import keys as K
    admin = Queue("x", url).connection
    now_ms = int(time.time() * 1000)
    # What the previous check saw: "ghost" live with its last heartbeat 61 s ago (past the 60 s a
    # registration lives), "stopped" with a recent one (it unregistered: a clean stop, not a loss).
    admin.hset(K.NOTIFY_SEEN, mapping={"ghost": now_ms - 61_000, "stopped": now_ms - 2_000})
    admin.set(K.NOTIFY_LAST_CHECK, now_ms - 1_000)
    with Receiver() as receiver:
        n = Notifications(_settings({"hook": {"type": "webhook", "url": receiver.url}},
                                    rules=[{"name": "lost", "events": ["worker_lost"], "window_s": 1}],
                                    check_interval_s=0.2))
        with running(Worker([n.queue], url, pool="thread", hooks=[n], install_signal_handlers=False)):
            wait_for(lambda: _delivered(n, "hook"), what="the digest")
        (request,) = receiver.requests
        assert [s["worker"] for s in request.json["samples"]] == ["ghost"]
