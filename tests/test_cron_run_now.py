"""Running a periodic job now (``run_periodic_now``, ``clusterq cron --run-now``), on every topology: the
request waits in the job's queue slot until a scheduler takes it, two schedulers enqueue it exactly once
with the declared arguments (signed when they sign), and a second request while one is pending makes no
second run. (The dashboard's button: tests/test_dashboard_http.py and tests/test_dashboard.py.)"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import TypeVar

import pytest
import redis

from clusterq import CronScheduler, Periodic, PeriodicError, Queue, list_periodic, run_periodic_now
from clusterq.state import keys as K
from clusterq.state import store as T
from clusterq.state import transitions as TR

DEADLINE_S = 60.0
KEY = b"k" * 32
T_ = TypeVar("T_")


def wait_for(check: Callable[[], T_], what: str) -> T_:
    deadline = time.monotonic() + DEADLINE_S
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def manual_ids(q: Queue) -> list[str]:
    return [i for i in q.get_job_ids(0, 10_000) if ":manual:" in i]


def test_two_schedulers_enqueue_a_requested_run_once_with_its_arguments_signed(url: str, qname: str) -> None:
    q = Queue(qname, url)
    job = Periodic("jobs.echo", cron="0 0 1 1 *", queue=qname, name="yearly", args=(1, "a"), kwargs={"k": [2]},
                   meta={"who": "cron"})
    first, second = (CronScheduler(url, [job], install_signal_handlers=False, signing_key=KEY) for _ in range(2))
    first.run_once()  # declares the job (as a scheduler's start does); its yearly tick is not due
    assert q.get_job_ids(0, 100) == []

    # No scheduler runs now: the request waits, and a second one while it is pending is refused.
    assert run_periodic_now(url, "yearly") is True
    assert run_periodic_now(url, "yearly") is False
    [info] = [i for i in list_periodic(url) if i.name == "yearly"]
    assert info.run_requested is not None
    assert manual_ids(q) == []

    threads = [threading.Thread(target=s.run, daemon=True) for s in (first, second)]
    for thread in threads:
        thread.start()
    try:
        wait_for(lambda: manual_ids(q), "the requested run")
        wait_for(lambda: not q.connection.exists(q.keys.cron_run_now("yearly")), "the request to be taken")
    finally:
        for s in (first, second):
            s.stop()
        for thread in threads:
            thread.join(DEADLINE_S)
    first.run_once()  # both look once more: the request is gone, nothing more is enqueued
    second.run_once()
    [run_id] = manual_ids(q)
    assert q.get_job_ids(0, 100) == [run_id], "one extra job, and no tick ran"
    assert first.enqueued + second.enqueued == 1
    assert run_id.startswith("cron:yearly:manual:")
    run = q.fetch_job(run_id)
    assert run is not None and run.func_name == "jobs.echo"
    assert (run.args, run.kwargs, run.meta) == ([1, "a"], {"k": [2]}, {"who": "cron"})
    assert q.connection.hget(K.QueueKeys(qname).job(run_id), "sg"), "the scheduler signs, so the run is signed"
    [info] = [i for i in list_periodic(url) if i.name == "yearly"]
    assert info.run_requested is None
    assert [r.job_id for r in info.runs] == [run_id]

    # Once taken, a new request is a new run with its own id.
    assert run_periodic_now(url, "yearly") is True
    first.run_once()
    second.run_once()
    assert len(manual_ids(q)) == 2


def test_a_run_now_request_for_an_unknown_job_or_the_wrong_queue_is_refused(url: str, qname: str) -> None:
    job = Periodic("jobs.noop", cron="0 0 1 1 *", queue=qname, name="yearly-" + qname)
    CronScheduler(url, [job], install_signal_handlers=False).run_once()
    with pytest.raises(PeriodicError, match="no periodic job is named 'nope'"):
        run_periodic_now(url, "nope")
    with pytest.raises(PeriodicError, match=f"runs in queue '{qname}', not 'other'"):
        run_periodic_now(url, job.name, queue="other")
    assert not Queue(qname, url).connection.exists(K.QueueKeys(qname).cron_run_now(job.name))


def test_clusterq_cron_run_now_records_a_request_a_scheduler_takes(url: str, qname: str,
                                                                  subprocess_env: dict[str, str]) -> None:
    q = Queue(qname, url)
    job = Periodic("jobs.noop", cron="0 0 1 1 *", queue=qname, name="cli-" + qname)
    scheduler = CronScheduler(url, [job], install_signal_handlers=False)
    scheduler.run_once()
    cmd = [sys.executable, "-m", "clusterq.cli", "cron", "-u", url, "--run-now", job.name]
    out = subprocess.run(cmd, env=subprocess_env, capture_output=True, text=True, timeout=DEADLINE_S)
    assert out.returncode == 0, out.stderr
    assert "it waits until one runs" in out.stdout
    again = subprocess.run(cmd, env=subprocess_env, capture_output=True, text=True, timeout=DEADLINE_S)
    assert again.returncode == 0 and "already requested" in again.stdout
    listing = subprocess.run([sys.executable, "-m", "clusterq.cli", "cron", "-u", url, "--list"],
                             env=subprocess_env, capture_output=True, text=True, timeout=DEADLINE_S)
    assert "RUN NOW requested" in listing.stdout
    scheduler.run_once()
    assert len(manual_ids(q)) == 1
    missing = subprocess.run([sys.executable, "-m", "clusterq.cli", "cron", "-u", url, "--run-now", "nope"],
                             env=subprocess_env, capture_output=True, text=True, timeout=DEADLINE_S)
    assert missing.returncode != 0 and "no periodic job is named 'nope'" in missing.stderr


def test_a_run_now_key_of_the_wrong_type_is_logged_and_other_requests_still_run(url: str, qname: str) -> None:
    q = Queue(qname, url)
    broken = Periodic("jobs.noop", cron="0 0 1 1 *", queue=qname, name="broken")
    fine = Periodic("jobs.noop", cron="0 0 1 1 *", queue=qname, name="fine")
    scheduler = CronScheduler(url, [broken, fine], install_signal_handlers=False)
    scheduler.run_once()
    q.connection.hset(q.keys.cron_run_now("broken"), "x", "1")  # edited by hand into a hash
    assert run_periodic_now(url, "fine") is True
    scheduler.run_once()
    [run_id] = manual_ids(q)
    assert run_id.startswith("cron:fine:manual:")
    assert q.connection.type(q.keys.cron_run_now("broken")) in (b"hash", "hash"), "left alone"
    # Offered directly, the manual take names the key; the job's ticks are not stopped by it.
    new = scheduler._new_job(scheduler._entries[0], 1000, manual=True)
    with pytest.raises(redis.ResponseError, match=r"WRONGTYPE cron_tick: key .*cron:n:broken holds a hash"):
        q.store.run(T.cron_tick_call(q.keys, "broken", 1000, "manual", 5, new))
    past_ms = int(time.time() * 1000) - 60_000  # after the last yearly tick, before the server's clock
    tick = scheduler._new_job(scheduler._entries[0], past_ms)
    reply = TR.parse_cron_tick(q.store.run(T.cron_tick_call(q.keys, "broken", past_ms, "fire", 5, tick)))
    assert reply.code is TR.CronTickCode.ENQUEUED
