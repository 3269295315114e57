"""The ``clusterq`` command, run as a real process (``python -m clusterq.cli`` and the installed entry
point) against every topology: worker, info, enqueue, empty, requeue; where the URL comes from
(``-u``, ``$CLUSTERQ_URL``, a settings module); and one-line errors with named exit codes."""

from __future__ import annotations

import gc
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from clusterq import Job, JobStatus, Queue, Worker
from clusterq.cli.main import EXIT_CONNECTION, EXIT_ERROR, EXIT_OK, EXIT_USAGE

DEADLINE_S = 60.0


def cli(*args: str, env: dict[str, str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "clusterq.cli", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=DEADLINE_S)


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == EXIT_OK, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    assert "Traceback" not in result.stderr
    return result.stdout


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rows(info_output: str, columns: int = 5) -> dict[str, list[int]]:
    """The queue table of ``clusterq info``: name -> [queued, started, finished, failed, canceled] (the
    first ``columns`` of: those, scheduled, deferred, orphaned, retried)."""
    table: dict[str, list[int]] = {}
    for line in info_output.splitlines():
        parts = line.split()
        if len(parts) == 10 and all(p.isdigit() for p in parts[1:]):
            table[parts[0]] = [int(p) for p in parts[1:columns + 1]]
    return table


# --- worker ----------------------------------------------------------------------------------------

def test_worker_burst_processes_every_job_of_its_queues_and_exits_0(
    url: str, qname: str, subprocess_env: dict[str, str]
) -> None:
    first, second = Queue(qname, url), Queue("second", url)
    jobs = [first.enqueue("jobs.add", i, 1) for i in range(3)] + [second.enqueue("jobs.echo", "x")]
    failing = second.enqueue("jobs.fail", "on purpose")

    result = cli("worker", "--burst", "-u", url, qname, "second", env=subprocess_env)

    ok(result)
    assert [job.return_value() for job in jobs] == [1, 2, 3, {"args": ["x"], "kwargs": {}}]
    assert failing.get_status() == JobStatus.FAILED
    assert "ValueError: on purpose" in failing.exc_info
    assert first.count == second.count == 0
    assert "5 processed (4 finished, 1 failed)" in result.stderr


PRELOADED = """import os

IMPORTED_IN = os.getpid()


def where() -> list[int]:
    return [IMPORTED_IN, os.getpid()]
"""


@pytest.mark.parametrize("how", ["flag", "settings"])
def test_worker_import_loads_a_module_before_the_pool_forks(url: str, qname: str, tmp_path: Path,
                                                            subprocess_env: dict[str, str], how: str) -> None:
    (tmp_path / "preloaded_mod.py").write_text(PRELOADED)
    (tmp_path / "preload_settings.py").write_text("IMPORTS = ['preloaded_mod']\n")
    queue = Queue(qname, url)
    preloaded, plain = queue.enqueue("preloaded_mod.where"), queue.enqueue("preloaded_mod.where")
    given = ["--import", "preloaded_mod"] if how == "flag" else ["--settings", "preload_settings"]
    ok(cli("worker", "--burst", "-c", "1", "--max-jobs", "1", *given, "-u", url, qname, env=subprocess_env,
           cwd=tmp_path))
    imported_in, ran_in = preloaded.return_value()
    assert imported_in != ran_in  # imported by the supervisor, before it forked the child that ran the job
    ok(cli("worker", "--burst", "-c", "1", "-u", url, qname, env=subprocess_env, cwd=tmp_path))
    imported_in, ran_in = plain.return_value()
    assert imported_in == ran_in  # without it: imported by the child, at its first job


def test_worker_command_freezes_the_heap_while_it_works_and_gives_it_back(url: str, qname: str) -> None:
    from clusterq.cli.main import main

    job = Queue(qname, url).enqueue("gc.get_freeze_count")  # run in this process by the solo pool
    assert main(["worker", "--burst", "-q", "-P", "solo", "-u", url, qname]) == EXIT_OK
    assert job.return_value() > 0  # the start-up heap was frozen while the worker ran
    assert gc.get_freeze_count() == 0  # and is back in the collector's sight once it returned


def test_worker_import_of_a_missing_module_is_a_usage_error(url: str, qname: str,
                                                            subprocess_env: dict[str, str]) -> None:
    result = cli("worker", "--burst", "--import", "no_such_module_for_clusterq", "-u", url, qname, env=subprocess_env)
    assert result.returncode == EXIT_USAGE
    assert "no_such_module_for_clusterq" in result.stderr and "Traceback" not in result.stderr


def test_worker_max_jobs_stops_after_that_many(url: str, qname: str, subprocess_env: dict[str, str]) -> None:
    queue = Queue(qname, url)
    jobs = [queue.enqueue("jobs.noop") for _ in range(4)]

    ok(cli("worker", "--max-jobs", "3", "-u", url, qname, env=subprocess_env))

    assert [job.get_status() for job in jobs] == [JobStatus.FINISHED] * 3 + [JobStatus.QUEUED]


def test_worker_allow_option_refuses_functions_outside_the_patterns(
    url: str, qname: str, subprocess_env: dict[str, str]
) -> None:
    queue = Queue(qname, url)
    refused = queue.enqueue("os.getcwd")
    allowed = queue.enqueue("jobs.add", 1, 1)

    ok(cli("worker", "--burst", "--allow", "jobs.*", "-u", url, qname, env=subprocess_env))

    assert refused.get_status() == JobStatus.FAILED
    assert "'os.getcwd' is not in this worker's allowlist ['jobs.*']" in refused.exc_info
    assert allowed.return_value() == 2


def test_installed_entry_point_runs_a_burst_worker(url: str, qname: str, subprocess_env: dict[str, str]) -> None:
    executable = shutil.which("clusterq", path=os.path.dirname(sys.executable)) or shutil.which("clusterq")
    assert executable, "the clusterq entry point is not installed (pip install -e .)"
    job = Queue(qname, url).enqueue("jobs.add", 20, 22)

    result = subprocess.run([executable, "worker", "--burst", "-u", url, qname], env=subprocess_env,
                            capture_output=True, text=True, timeout=DEADLINE_S)

    ok(result)
    assert job.return_value() == 42


# --- info ------------------------------------------------------------------------------------------

def test_info_lists_queues_with_their_counts_and_the_running_workers(
    url: str, qname: str, subprocess_env: dict[str, str]
) -> None:
    queue = Queue(qname, url)
    queue.enqueue("jobs.add", 1, 2)
    queue.enqueue("jobs.fail")
    Worker(qname, url, install_signal_handlers=False).work(burst=True)
    queue.enqueue("jobs.noop")
    queue.enqueue("jobs.noop")
    queue.enqueue("jobs.noop", job_id="to-cancel")
    Job.fetch("to-cancel", url, queue=qname).cancel()
    Queue("other", url).enqueue("jobs.noop")

    # solo: a process pool would fork while this thread runs `clusterq info` subprocesses, and a forked
    # child would inherit the half-made subprocess's error pipe (the classic fork-while-spawning hang).
    idle = Worker("unused-queue", url, name="visible-worker", pool="solo", install_signal_handlers=False)
    thread = threading.Thread(target=idle.work, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + DEADLINE_S
        while "visible-worker" not in (out := ok(cli("info", "-u", url, env=subprocess_env))):
            assert time.monotonic() < deadline, out
    finally:
        idle.request_stop()
        thread.join(DEADLINE_S)

    table = rows(out)
    assert table[qname] == [2, 0, 1, 1, 1]
    assert table["other"] == [1, 0, 0, 0, 0]
    assert "1 worker(s)" in out
    worker_line = next(line for line in out.splitlines() if "visible-worker" in line)
    assert "queues unused-queue" in worker_line and f"pid {os.getpid()}" in worker_line


def test_info_on_an_empty_deployment_says_there_are_no_queues(url: str, subprocess_env: dict[str, str]) -> None:
    out = ok(cli("info", "-u", url, env=subprocess_env))
    assert "(no queues yet)" in out
    assert "0 worker(s)" in out


@pytest.mark.parametrize("clusterq_topology", ["standalone"], indirect=True)
def test_info_never_prints_the_password_of_its_url(
    clusterq_url: str, clusterq_topology: Any, subprocess_env: dict[str, str]
) -> None:
    admin = clusterq_topology.client()
    admin.execute_command("ACL", "SETUSER", "cli-user", "on", ">s3cret-pw", "~*", "&*", "+@all")
    try:
        url = f"redis://cli-user:s3cret-pw@127.0.0.1:{clusterq_topology.port}/0"
        out = ok(cli("info", "-u", url, env=subprocess_env))
        assert "s3cret-pw" not in out
        assert f"127.0.0.1:{clusterq_topology.port}" in out
    finally:
        admin.execute_command("ACL", "DELUSER", "cli-user")


# --- enqueue, empty, requeue -------------------------------------------------------------------------

def test_enqueue_prints_a_handle_that_job_fetch_resolves(url: str, qname: str, subprocess_env: dict[str, str]) -> None:
    out = ok(cli("enqueue", "-u", url, qname, "jobs.echo", "2", '"text"', '{"k": [1]}', "null",
                 env=subprocess_env))

    handle = out.strip()
    assert len(out.splitlines()) == 1
    job = Job.fetch(handle, url)
    assert job.queue_name == qname
    assert job.get_status() == JobStatus.QUEUED
    assert job.args == [2, "text", {"k": [1]}, None]
    Worker(qname, url, install_signal_handlers=False).work(burst=True)
    assert Job.fetch(handle, url).return_value() == {"args": [2, "text", {"k": [1]}, None], "kwargs": {}}


def test_enqueue_with_a_job_id_twice_creates_one_job_and_says_so(
    url: str, qname: str, subprocess_env: dict[str, str]
) -> None:
    first = ok(cli("enqueue", "-u", url, "--job-id", "once", qname, "jobs.add", "1", "2", env=subprocess_env))
    again = cli("enqueue", "-u", url, "--job-id", "once", qname, "jobs.add", "5", "5", env=subprocess_env)

    assert again.returncode == EXIT_ERROR and again.stdout == first
    assert "job 'once' already exists" in again.stderr and "nothing enqueued" in again.stderr
    assert Queue(qname, url).count == 1
    assert Job.fetch(first.strip(), url).args == [1, 2]


def test_enqueue_takes_an_argument_that_is_not_json_as_a_string(
    url: str, qname: str, subprocess_env: dict[str, str]
) -> None:
    handle = ok(cli("enqueue", "-u", url, qname, "jobs.echo", "u9", "2", '"2"', env=subprocess_env)).strip()

    assert Job.fetch(handle, url).args == ["u9", 2, "2"]


def test_empty_removes_every_waiting_job_and_its_record(url: str, qname: str, subprocess_env: dict[str, str]) -> None:
    queue = Queue(qname, url)
    jobs = [queue.enqueue("jobs.noop") for _ in range(3)]
    kept = Queue("kept", url).enqueue("jobs.noop")

    out = ok(cli("empty", "-u", url, qname, env=subprocess_env))

    assert f"removed 3 job(s) from {qname!r}" in out
    assert queue.count == 0
    assert not any(job.exists() for job in jobs)
    assert kept.get_status() == JobStatus.QUEUED


def test_requeue_puts_every_failed_job_back_on_its_queue(url: str, qname: str, subprocess_env: dict[str, str]) -> None:
    queue = Queue(qname, url)
    failed = [queue.enqueue("jobs.fail", f"fail {i}") for i in range(2)]
    done = queue.enqueue("jobs.noop")
    Worker(qname, url, install_signal_handlers=False).work(burst=True)
    assert queue.failed_job_registry.count == 2

    out = ok(cli("requeue", "-u", url, qname, env=subprocess_env))

    assert f"requeued 2 failed job(s) of {qname!r}" in out
    assert [job.get_status() for job in failed] == [JobStatus.QUEUED] * 2
    assert sorted(queue.get_job_ids()) == sorted(job.id for job in failed)  # same expiry: any order
    assert queue.failed_job_registry.count == 0
    assert done.get_status() == JobStatus.FINISHED


def test_demo_on_a_given_server_processes_every_sample_job(url: str, subprocess_env: dict[str, str]) -> None:
    out = ok(cli("demo", "-u", url, "--jobs", "50", env=subprocess_env))

    summary = next(line for line in out.splitlines() if line.startswith("summary:"))
    finished, failed = int(summary.split()[1]), int(summary.split()[3])
    assert finished + failed == 50
    # Only the email job (1 in 5) fails, on purpose and rarely: every other sample job must be found and run.
    assert failed <= 50 // 5 and "FunctionNotFound" not in out, out
    assert sum(Queue(name, url).count for name in ("orders", "emails", "reports", "images", "default")) == 0


# --- where the URL comes from --------------------------------------------------------------------------

def test_clusterq_url_environment_variable_is_used_without_u(
    url: str, qname: str, subprocess_env: dict[str, str]
) -> None:
    env = {**subprocess_env, "CLUSTERQ_URL": url}
    handle = ok(cli("enqueue", qname, "jobs.add", "3", "4", env=env)).strip()
    ok(cli("worker", "--burst", qname, env=env))
    assert Job.fetch(handle, url).return_value() == 7


def test_u_wins_over_the_environment_variable(url: str, qname: str, subprocess_env: dict[str, str]) -> None:
    env = {**subprocess_env, "CLUSTERQ_URL": f"redis://127.0.0.1:{closed_port()}/0"}
    handle = ok(cli("enqueue", "-u", url, qname, "jobs.add", "1", "1", env=env)).strip()
    assert Job.fetch(handle, url).get_status() == JobStatus.QUEUED


def test_settings_module_provides_url_and_queues(
    url: str, qname: str, subprocess_env: dict[str, str], tmp_path: Path
) -> None:
    (tmp_path / "cq_settings.py").write_text(f"URL = {url!r}\nQUEUES = [{qname!r}, 'from-settings']\n")
    env = {k: v for k, v in subprocess_env.items() if k != "CLUSTERQ_URL"}
    jobs = [Queue(qname, url).enqueue("jobs.add", 1, 2), Queue("from-settings", url).enqueue("jobs.add", 3, 4)]
    ignored = Queue("not-in-settings", url).enqueue("jobs.noop")

    ok(cli("worker", "--burst", "--settings", "cq_settings", env=env, cwd=tmp_path))

    assert [job.return_value() for job in jobs] == [3, 7]
    assert ignored.get_status() == JobStatus.QUEUED
    out = ok(cli("info", env={**env, "CLUSTERQ_SETTINGS": "cq_settings"}, cwd=tmp_path))
    assert rows(out)["from-settings"] == [0, 0, 1, 0, 0]


def test_a_settings_module_that_cannot_be_imported_is_a_one_line_error(
    subprocess_env: dict[str, str], tmp_path: Path
) -> None:
    result = cli("info", "--settings", "no_such_settings_module", env=subprocess_env, cwd=tmp_path)

    assert result.returncode == EXIT_ERROR
    assert result.stderr.strip().splitlines() == [
        "clusterq: cannot import settings module 'no_such_settings_module': "
        "ModuleNotFoundError: No module named 'no_such_settings_module'"
    ]


# --- errors ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("command,kind", [
    pytest.param(("info",), "standalone", id="info-standalone"),
    pytest.param(("enqueue", "q", "jobs.noop"), "sentinel", id="enqueue-sentinel"),
    pytest.param(("worker", "--burst", "q"), "cluster", id="worker-cluster"),
    pytest.param(("empty", "q"), "cluster", id="empty-cluster"),
    pytest.param(("requeue", "q"), "cluster", id="requeue-cluster"),
])
def test_unreachable_url_is_a_clear_one_line_error_with_exit_code_3(
    command: tuple[str, ...], kind: str, subprocess_env: dict[str, str]
) -> None:
    port = closed_port()
    url = {"standalone": f"redis://127.0.0.1:{port}/0",
           "sentinel": f"redis+sentinel://127.0.0.1:{port}/mymaster",
           "cluster": f"redis+cluster://127.0.0.1:{port}"}[kind]

    result = cli(command[0], "-u", url, *command[1:], env=subprocess_env)

    assert result.returncode == EXIT_CONNECTION == 3
    assert "Traceback" not in result.stderr
    errors = result.stderr.strip().splitlines()
    assert len(errors) == 1, result.stderr
    assert errors[0].startswith("clusterq: cannot reach")
    assert f"127.0.0.1:{port}" in errors[0]
    assert "<redis." not in errors[0] and len(errors[0]) < 400, errors[0]
    assert result.stdout == ""


def test_unsupported_url_is_a_one_line_error_with_exit_code_1(subprocess_env: dict[str, str]) -> None:
    result = cli("info", "-u", "http://127.0.0.1:1", env=subprocess_env)

    assert result.returncode == EXIT_ERROR
    assert result.stderr.strip().splitlines() == [
        "clusterq: unsupported URL scheme 'http' in 'http://127.0.0.1:1'; expected one of "
        "['redis', 'redis+cluster', 'redis+proxy', 'redis+sentinel', 'rediss', 'rediss+cluster', 'rediss+proxy', "
        "'rediss+sentinel', 'unix']"
    ]


@pytest.mark.parametrize("options,message", [
    (("-c", "0"), "concurrency must be at least 1, got 0"),
    (("--dedicated", "same=thread:2"), "queue listed twice in ['same', 'same']"),
    (("--dedicated", "oops"), "--dedicated 'oops': expected QUEUE[,QUEUE...]=[POOL:]N"),
    (("--round-jobs", "0"), "round_jobs must be a whole number of jobs, 1 or more; got 0"),
], ids=["zero concurrency", "queue in two lanes", "malformed dedicated", "zero round jobs"])
def test_worker_with_a_bad_option_value_is_a_one_line_usage_error(
    url: str, subprocess_env: dict[str, str], options: tuple[str, ...], message: str
) -> None:
    result = cli("worker", "--burst", "-u", url, *options, "same", env=subprocess_env)

    assert result.returncode == EXIT_USAGE
    errors = result.stderr.strip().splitlines()
    assert len(errors) == 1 and errors[0].startswith("clusterq: "), result.stderr
    assert message in errors[0]


def test_missing_command_is_a_usage_error(subprocess_env: dict[str, str]) -> None:
    result = cli(env=subprocess_env)
    assert result.returncode == EXIT_USAGE
    assert "usage: clusterq" in result.stderr
