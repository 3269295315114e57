"""The command line as RQ users meet it (issue 15): --version, consistent -q/-Q, -v for clusterq's logs
only, requeue/empty of a missing queue, requeue by id or handle, stopped jobs left unless asked,
empty --all with confirmation, info's scheduled/deferred/orphaned/retried columns, the server named
without -u, and ``clusterq dev`` cleaning up on SIGINT and SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import control_jobs
from clusterq import JobStatus, Queue, Retry, Worker, __version__, connect
from clusterq.cli.main import EXIT_ERROR, EXIT_OK, EXIT_USAGE
from clusterq.state import store as T
from test_cli import DEADLINE_S, cli, ok, rows
from worker_thread import running


def _burst(url: str, queue: Queue) -> None:
    Worker([queue], url, pool="solo", install_signal_handlers=False, maintenance_interval_s=0.2).work(burst=True)


def test_version(subprocess_env: dict[str, str]) -> None:
    assert ok(cli("--version", env=subprocess_env)).strip() == f"clusterq {__version__}"


def test_requeue_and_empty_of_a_queue_that_does_not_exist_fail(url: str, qname: str,
                                                                 subprocess_env: dict[str, str]) -> None:
    for command in ("requeue", "empty"):
        result = cli(command, "-u", url, qname, env=subprocess_env)
        assert result.returncode == EXIT_ERROR, (command, result.stderr)
        assert f"no queue named {qname!r}" in result.stderr and result.stdout == ""


def test_requeue_by_id_or_handle_and_stopped_jobs_only_with_a_flag(url: str, qname: str, tmp_path: Path,
                                                                     subprocess_env: dict[str, str]) -> None:
    queue = Queue(qname, url)
    failed = [queue.enqueue("jobs.fail", f"fail {i}") for i in range(3)]
    _burst(url, queue)
    stopped = queue.enqueue(control_jobs.progress_then_wait, str(tmp_path / "started"), 120)
    with running(Worker([queue], url, pool="thread", concurrency=1, install_signal_handlers=False)):
        deadline = time.monotonic() + DEADLINE_S
        while not (tmp_path / "started").exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        stopped.stop("on purpose")
        while stopped.get_status() != JobStatus.STOPPED and time.monotonic() < deadline:
            time.sleep(0.02)
    assert stopped.get_status() == JobStatus.STOPPED

    assert ok(cli("requeue", "-u", url, qname, failed[0].id, env=subprocess_env)).strip() == \
        f"requeued {failed[0].handle}"
    assert ok(cli("requeue", "-u", url, "--handle", failed[1].handle, env=subprocess_env)).strip() == \
        f"requeued {failed[1].handle}"
    assert [job.get_status() for job in failed] == [JobStatus.QUEUED, JobStatus.QUEUED, JobStatus.FAILED]

    out = ok(cli("requeue", "-u", url, qname, env=subprocess_env))
    assert f"requeued 1 failed job(s) of {qname!r} (1 stopped job(s) left" in out
    assert failed[2].get_status() == JobStatus.QUEUED and stopped.get_status() == JobStatus.STOPPED
    out = ok(cli("requeue", "-u", url, qname, "--include-stopped", env=subprocess_env))
    assert f"requeued 1 failed job(s) of {qname!r}" in out and stopped.get_status() == JobStatus.QUEUED


def test_empty_all_asks_first(url: str, qname: str, subprocess_env: dict[str, str]) -> None:
    a, b = Queue(qname, url), Queue(qname + "-b", url)
    a.enqueue("jobs.noop")
    b.enqueue("jobs.noop")
    refused = cli("empty", "-u", url, "--all", env=subprocess_env)  # stdin is not a terminal: no prompt
    assert refused.returncode == EXIT_USAGE and "add --yes to confirm" in refused.stderr
    assert a.count == b.count == 1
    out = ok(cli("empty", "-u", url, "--all", "--yes", env=subprocess_env))
    assert f"removed 1 job(s) from {qname!r}" in out and a.count == b.count == 0
    assert ok(cli("empty", "-u", url, qname, qname + "-b", env=subprocess_env)).count("removed 0") == 2


def test_suspend_and_resume_take_queues_as_arguments_or_capital_q(url: str, qname: str,
                                                                   subprocess_env: dict[str, str]) -> None:
    queue = Queue(qname, url)
    ok(cli("suspend", "-u", url, "-q", qname, env=subprocess_env))  # -q is --quiet, as everywhere
    assert queue.is_suspended
    ok(cli("resume", "-u", url, "-Q", qname, env=subprocess_env))
    assert not queue.is_suspended


def test_info_counts_scheduled_deferred_orphaned_and_retried(url: str, qname: str,
                                                              subprocess_env: dict[str, str]) -> None:
    queue = Queue(qname, url)
    queue.enqueue("jobs.fail", retry=Retry(max=1))  # one retried attempt, then one final failure
    _burst(url, queue)
    later = queue.enqueue_in(3600, "jobs.noop")
    queue.enqueue("jobs.noop", depends_on=later)
    ghost = queue.enqueue("jobs.noop")
    # leased by a worker that is not registered (it died): its lease is over at once
    T.Store(connect(url)).run(T.take_call(queue.keys, ghost.id, 1, "ghost-worker"))
    time.sleep(0.01)

    out = ok(cli("info", "-u", url, env=subprocess_env))

    header = next(line for line in out.splitlines() if line.startswith("queue "))
    assert header.split() == ["queue", "queued", "started", "finished", "failed", "canceled", "scheduled",
                              "deferred", "orphaned", "retried"]
    assert rows(out, 9)[qname] == [0, 1, 0, 1, 0, 1, 1, 1, 1]
    line = next(line for line in out.splitlines() if ghost.handle in line)
    assert "ORPHANED (worker ghost-worker gone; back on the queue after" in line


def test_the_server_used_is_named_when_no_url_is_given(url: str, qname: str, subprocess_env: dict[str, str]) -> None:
    env = {**subprocess_env, "CLUSTERQ_URL": url}
    result = cli("info", env=env)
    assert result.returncode == EXIT_OK
    assert result.stderr.startswith("clusterq: using ") and "($CLUSTERQ_URL; -u URL to choose)" in result.stderr
    env.pop("CLUSTERQ_URL")
    result = cli("info", env={**env, "CLUSTERQ_URL": ""}, cwd=None)
    assert "clusterq: using standalone server at 127.0.0.1:6379 (the default; -u URL to choose)" in result.stderr
    assert "clusterq: using" not in cli("info", "-u", url, env=subprocess_env).stderr


def test_verbose_means_clusterq_debug_logs_not_redis_pys(subprocess_env: dict[str, str]) -> None:
    # in a fresh interpreter, as the command runs (pytest's own log handlers would hide basicConfig's)
    code = ("import argparse, logging; from clusterq.cli.main import _configure_logging; "
            "_configure_logging(argparse.Namespace(verbose=True, quiet=False)); "
            "print(logging.getLogger('clusterq.worker').isEnabledFor(logging.DEBUG), "
            "logging.getLogger('redis.cluster').isEnabledFor(logging.DEBUG))")
    result = subprocess.run([sys.executable, "-c", code], env=subprocess_env, capture_output=True, text=True,
                            timeout=DEADLINE_S)
    assert result.stdout.split() == ["True", "False"], result.stderr


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_dev_stops_and_removes_its_data_on_sigint_and_sigterm(sig: int, tmp_path: Path,
                                                               subprocess_env: dict[str, str]) -> None:
    # started as a shell starts a background job: SIGINT ignored
    process = subprocess.Popen([sys.executable, "-m", "clusterq.cli", "dev"], env={**subprocess_env,
                               "TMPDIR": str(tmp_path)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert "ready" in line, line + process.stderr.read() if process.stderr else ""
        assert any(p.name.startswith("clusterq-") for p in tmp_path.iterdir())
        process.send_signal(sig)
        assert process.wait(DEADLINE_S) == EXIT_OK
    finally:
        if process.poll() is None:
            process.kill()
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith("clusterq-")]
    assert os.path.isdir(tmp_path)
