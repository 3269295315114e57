"""Worker health probes on a real server: /readyz turns false when the server stops and true when it is
back while /livez stays true (a Redis outage restarts nothing); a stop request turns the worker not-ready
before it drains."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from clusterq import Queue, Worker
from clusterq.observability.health import HealthServer
from clusterq.testing import Standalone
from worker_thread import running

DEADLINE_S = 60.0


@pytest.fixture
def private_server() -> Iterator[Standalone]:
    """A server of the test's own, since the test stops it (the session topologies stay untouched)."""
    server = Standalone()
    server.start()
    try:
        yield server
    finally:
        server.stop()


def probe(health: HealthServer, path: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{health.port}{path}", timeout=30) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def until(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.mark.parametrize("pool", ["process", "thread"])
def test_readyz_follows_redis_and_livez_does_not(private_server: Standalone, pool: str) -> None:
    url = private_server.url
    health = HealthServer(port=0, ready_cache_s=0)
    worker = Worker(Queue("health", url), url, pool=pool, concurrency=1, hooks=[health],
                    install_signal_handlers=False)
    with running(worker):
        until(lambda: health.worker is not None and probe(health, "/readyz")[0] == 200, "ready")
        assert probe(health, "/livez")[0] == 200
        private_server.server.kill()
        until(lambda: probe(health, "/readyz")[0] == 503, "not ready while Redis is down")
        body = probe(health, "/readyz")[1]
        assert not body["ok"] and "Redis unreachable" in body["reason"]
        assert probe(health, "/livez")[0] == 200, "a Redis outage must not fail liveness"
        private_server.server.restart()
        until(lambda: probe(health, "/readyz")[0] == 200, "ready again once Redis is back")
        assert probe(health, "/livez")[0] == 200


def test_a_stop_request_turns_the_worker_not_ready_before_it_drains(url: str, qname: str, tmp_path) -> None:
    health = HealthServer(port=0, ready_cache_s=0)
    q = Queue(qname, url)
    started, release = str(tmp_path / "started"), str(tmp_path / "release")
    job = q.enqueue("jobs.record_then_wait", started, release)
    worker = Worker(q, url, pool="thread", concurrency=1, hooks=[health], install_signal_handlers=False)
    with running(worker):
        until(lambda: (tmp_path / "started").exists(), "the job to start")
        assert probe(health, "/readyz")[0] == 200
        worker.request_stop()  # what SIGTERM does
        status, body = probe(health, "/readyz")
        assert status == 503 and body["reason"].startswith("stopping")
        assert probe(health, "/livez")[0] == 200, "draining is alive"
        assert not job.is_finished, "still draining"
        (tmp_path / "release").write_text("go")
    assert job.return_value() == "released"


def test_the_worker_command_serves_probes_and_sigterm_turns_it_not_ready_before_draining(
        url: str, qname: str, tmp_path, subprocess_env: dict[str, str]) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    health = HealthServer(port=port)  # only to reuse probe(): the CLI's worker serves the port
    job = Queue(qname, url).enqueue("jobs.record_then_wait", str(tmp_path / "started"), str(tmp_path / "release"))
    cli = [sys.executable, "-m", "clusterq.cli", "worker", "-P", "thread", "-c", "1", "-u", url,
           "--health-port", str(port), qname]
    proc = subprocess.Popen(cli, env=subprocess_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        until(lambda: (tmp_path / "started").exists(), "the job to start")
        until(lambda: _up(health) and probe(health, "/readyz")[0] == 200, "the probes to answer")
        proc.send_signal(signal.SIGTERM)
        until(lambda: probe(health, "/readyz")[0] == 503, "not ready after SIGTERM")
        assert probe(health, "/livez")[0] == 200 and proc.poll() is None, "draining, alive"
        (tmp_path / "release").write_text("go")
        assert proc.wait(timeout=DEADLINE_S) == 0, proc.stderr.read() if proc.stderr else ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert job.return_value() == "released"


def _up(health: HealthServer) -> bool:
    try:
        probe(health, "/livez")
    except urllib.error.URLError:
        return False
    return True
