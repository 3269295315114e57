"""Notifications configured the way workers are (``--notify-config``, ``$CLUSTERQ_NOTIFY_CONFIG``), their
Prometheus counter, and the queue gauges read in one script call per queue (no second round trip for the
oldest waiting age)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import redis
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from clusterq import Queue, Worker
from clusterq.observability.backlog import read_queue_gauges
from clusterq.observability.notify import CONFIG_ENV, Notifications
from clusterq.testing import Standalone
from notify_support import Receiver, wait_for
from worker_thread import running


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "clusterq.cli", *args], env=env, capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize("how", ["flag", "env"])
def test_a_worker_configured_from_a_file_sends_one_digest(url: str, qname: str, tmp_path: Path,
                                                           subprocess_env: dict[str, str], how: str) -> None:
    with Receiver() as receiver:
        config = tmp_path / "alerts.json"
        config.write_text(json.dumps({"notifiers": {"chat": {"type": "chat", "url": receiver.url}},
                                      "rules": [{"name": "failures", "events": ["job_failed"], "window_s": 1}],
                                      "retry_base_s": 0.05}))
        q = Queue(qname, url)
        for i in range(3):
            q.enqueue("jobs.fail", f"boom {i}")
        given = ["--notify-config", str(config)] if how == "flag" else []
        env = {**subprocess_env, **({CONFIG_ENV: str(config)} if how == "env" else {})}
        first = _cli("worker", "--burst", "-u", url, *given, qname, env=env)
        assert first.returncode == 0, first.stderr
        assert "thread:2 for clusterq:notify" in first.stderr, "the CLI adds a lane serving the notify queue"
        notify = Queue("clusterq:notify", url)
        assert notify.scheduled_job_registry.count == 1, "one digest scheduled for the window"
        time.sleep(1.2)  # the window closes (its digest falls due); a burst worker does not wait for it
        second = _cli("worker", "--burst", "-u", url, *given, "clusterq:notify", env=env)
        assert second.returncode == 0, second.stderr
        (request,) = receiver.requests
        assert "failures: 3 x job_failed" in request.json["text"]


def test_a_bad_notify_config_is_one_line_naming_the_field(url: str, tmp_path: Path,
                                                           subprocess_env: dict[str, str]) -> None:
    config = tmp_path / "alerts.json"
    config.write_text(json.dumps({"notifiers": {"chat": {"type": "chat", "url": "http://x"}},
                                  "rules": [{"events": ["backlog"]}]}))
    result = _cli("worker", "--burst", "-u", url, "--notify-config", str(config), "q", env=subprocess_env)
    assert result.returncode != 0
    assert "needs a 'threshold'" in result.stderr and "Traceback" not in result.stderr


def test_deliveries_are_counted_in_clusterq_notifications_total(url: str, qname: str) -> None:
    registry = CollectorRegistry()
    with Receiver(statuses=(500, 200)) as receiver:
        n = Notifications({"notifiers": {"hook": {"type": "webhook", "url": receiver.url}},
                           "rules": [{"events": ["job_failed"], "window_s": 1}], "retry_base_s": 0.05},
                          registry=registry)
        Queue(qname, url).enqueue("jobs.fail")
        Worker(qname, url, pool="thread", hooks=[n], install_signal_handlers=False).work(burst=True)
        with running(Worker([n.queue], url, pool="thread", hooks=[n], install_signal_handlers=False)):
            wait_for(lambda: n.outcomes.get(("hook", "delivered")), what="the delivery")
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(generate_latest(registry).decode())
               for s in family.samples}
    assert samples[("clusterq_notifications_total", (("notifier", "hook"), ("outcome", "failed")))] == 1
    assert samples[("clusterq_notifications_total", (("notifier", "hook"), ("outcome", "delivered")))] == 1


class CountingConnection(redis.Connection):
    """A real connection that counts what it writes: one write per round trip (a pipeline is one)."""

    writes = 0

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        CountingConnection.writes += 1
        super().send_packed_command(command, check_health)


def test_the_queue_gauges_and_the_oldest_age_take_one_round_trip(clusterq_standalone: Standalone,
                                                                  qname: str) -> None:
    clusterq_standalone.flush()
    url = clusterq_standalone.url
    names = [f"{qname}-{i}" for i in range(3)]
    for name in names:
        Queue(name, url).enqueue_many([Queue.prepare_data("jobs.noop") for _ in range(5)])
    client = redis.Redis(connection_pool=redis.ConnectionPool.from_url(url, connection_class=CountingConnection))
    read_queue_gauges(client, names)  # connects and loads the script
    stats = clusterq_standalone.client()
    before = int(stats.info("commandstats")["cmdstat_evalsha"]["calls"])
    CountingConnection.writes = 0
    gauges = read_queue_gauges(client, names)
    assert CountingConnection.writes == 1, "one round trip for every queue, the oldest waiting age included"
    assert int(stats.info("commandstats")["cmdstat_evalsha"]["calls"]) - before == 3, "one call per queue"
    for gauge in gauges:
        assert gauge.jobs["waiting"] == 5 and gauge.oldest_waiting_s is not None and gauge.oldest_waiting_s >= 0
