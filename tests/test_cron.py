"""Periodic jobs on every topology: each tick enqueued exactly once with two schedulers running, cron
expressions, coalesced missed ticks, the listing, and ``clusterq worker --with-cron``. (The cron parser,
without a server: tests/unit/test_cron_expressions.py. The tests about the process itself (a kill, SIGTERM,
a bad module) run on standalone only: the tick's exactly-once script runs on every topology in the others.)"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TypeVar

import pytest
import redis

from clusterq import (
    CronScheduler,
    JobStatus,
    Periodic,
    PeriodicError,
    Queue,
    Worker,
    list_periodic,
    remove_periodic,
)
from clusterq.cli.main import EXIT_OK
from clusterq.scheduling.periodic import RUN_NOW_POLL_S
from clusterq.state import keys as K
from clusterq.testing import Topology

DEADLINE_S = 60.0
T_ = TypeVar("T_")


def wait_for(check: Callable[[], T_], what: str) -> T_:
    deadline = time.monotonic() + DEADLINE_S
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def cron_ids(q: Queue) -> list[str]:
    return [i for i in q.get_job_ids(0, 10_000) if i.startswith("cron:")]


def tick_of(job_id: str) -> int:
    stamp = job_id.rsplit(":", 3)[-3:]
    return int(datetime.strptime(":".join(stamp), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc).timestamp()
               * 1000)


@contextmanager
def process(args: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "clusterq.cli", *args], env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def stop(proc: subprocess.Popen[bytes], log: Path) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(timeout=DEADLINE_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError(f"did not stop on SIGTERM:\n{log.read_text()}") from None
    assert code == EXIT_OK, f"exit {code}:\n{log.read_text()}"
    assert "Traceback" not in log.read_text()


def test_two_cron_processes_enqueue_each_tick_exactly_once(url: str, qname: str, subprocess_env: dict[str, str],
                                                            tmp_path: Path) -> None:
    q = Queue(qname, url)
    env = {**subprocess_env, "CQ_CRON_QUEUE": qname, "CLUSTERQ_URL": url}
    logs = [tmp_path / "cron-a.log", tmp_path / "cron-b.log"]
    with process(["cron", "cron_config"], env, logs[0]) as a, process(["cron", "cron_config"], env, logs[1]) as b:
        wait_for(lambda: len(cron_ids(q)) >= 6, "six ticks")
        stop(a, logs[0])
        stop(b, logs[1])
    ids = cron_ids(q)
    assert len(ids) == len(set(ids)), f"a tick was enqueued twice: {ids}"
    found = [tick_of(i) for i in ids]
    assert found == list(range(found[0], found[0] + 1000 * len(found), 1000)), f"a tick is missing: {ids}"
    assert all(i.startswith("cron:every-second:") for i in ids)
    # Both schedulers offered ticks: each log names the ticks it took; together, every tick once.
    taken = [line for log in logs for line in log.read_text().splitlines() if "enqueued as" in line]
    assert len(taken) == len(ids)
    runs = K.QueueKeys(qname).cron_runs("every-second")
    recorded = [r.decode().split(" ", 1)[1] for r in q.connection.lrange(runs, 0, -1)]
    assert sorted(recorded) == sorted(ids)


@pytest.mark.parametrize("clusterq_topology", ["standalone"], indirect=True)  # process handling: one topology
def test_when_one_of_two_cron_processes_is_killed_the_other_takes_every_tick(
    url: str, qname: str, subprocess_env: dict[str, str], tmp_path: Path
) -> None:
    q = Queue(qname, url)
    env = {**subprocess_env, "CQ_CRON_QUEUE": qname, "CLUSTERQ_URL": url}
    logs = [tmp_path / "cron-a.log", tmp_path / "cron-b.log"]
    with process(["cron", "cron_config"], env, logs[0]) as a, process(["cron", "cron_config"], env, logs[1]) as b:
        wait_for(lambda: len(cron_ids(q)) >= 3, "three ticks")
        a.kill()  # SIGKILL: no chance to clean up
        a.wait()
        seen = len(cron_ids(q))
        wait_for(lambda: len(cron_ids(q)) >= seen + 3, "three more ticks after the kill")
        stop(b, logs[1])
    ids = cron_ids(q)
    found = [tick_of(i) for i in ids]
    assert found == list(range(found[0], found[0] + 1000 * len(found), 1000)), f"duplicate or gap: {ids}"


def test_three_schedulers_in_threads_take_each_tick_once(url: str, qname: str) -> None:
    import threading

    q = Queue(qname, url)
    job = Periodic("jobs.noop", every=1, queue=qname, name="threads")
    schedulers = [CronScheduler(url, [job], install_signal_handlers=False) for _ in range(3)]
    threads = [threading.Thread(target=s.run, daemon=True) for s in schedulers]
    for thread in threads:
        thread.start()
    try:
        wait_for(lambda: len(cron_ids(q)) >= 4, "four ticks")
    finally:
        for s in schedulers:
            s.stop()
        for thread in threads:
            thread.join(DEADLINE_S)
    ids = cron_ids(q)
    found = [tick_of(i) for i in ids]
    assert found == list(range(found[0], found[0] + 1000 * len(found), 1000))
    assert sum(s.enqueued for s in schedulers) == len(ids)


def _now_floor_s(back_s: int) -> datetime:
    now = datetime.now(timezone.utc).replace(microsecond=0)
    return now - timedelta(seconds=back_s)


def test_a_cron_expression_job_fires_at_its_minute_and_a_worker_runs_it(url: str, qname: str, tmp_path: Path) -> None:
    q = Queue(qname, url)
    out = tmp_path / "ran"
    job = Periodic("jobs.record", cron="*/2 * * * *", queue=qname, args=(str(out), "cron"), name="even-minutes")
    scheduler = CronScheduler(url, [job], install_signal_handlers=False)
    start = _now_floor_s(3600).replace(minute=1, second=30)  # an hour ago, at hh:01:30
    scheduler.run_once(now=start)  # first seen: records the tick hh:00 without running it
    assert cron_ids(q) == []
    assert scheduler.run_once(now=start + timedelta(seconds=20)) == pytest.approx(10.0)  # until hh:02
    assert cron_ids(q) == []
    scheduler.run_once(now=start + timedelta(seconds=31))  # hh:02:01
    tick = start.replace(minute=2, second=0)
    assert cron_ids(q) == [job.job_id(int(tick.timestamp() * 1000))]
    Worker([q], url, pool="solo", install_signal_handlers=False).work(burst=True)
    assert out.read_text().splitlines() == ["cron"]
    ran = q.fetch_job(job.job_id(int(tick.timestamp() * 1000)))
    assert ran is not None and ran.get_status() == JobStatus.FINISHED


def test_a_restarted_scheduler_runs_the_latest_missed_tick_once(url: str, qname: str) -> None:
    q = Queue(qname, url)
    job = Periodic("jobs.noop", every=1, queue=qname, name="coalesce")
    t0 = _now_floor_s(120)
    CronScheduler(url, [job], install_signal_handlers=False).run_once(now=t0)
    # "All schedulers down" for 10 ticks; a new scheduler starts 10.5 s later.
    later = CronScheduler(url, [job], install_signal_handlers=False)
    later.run_once(now=t0 + timedelta(seconds=10, milliseconds=500))
    assert cron_ids(q) == [job.job_id(int((t0 + timedelta(seconds=10)).timestamp() * 1000))]
    later.run_once(now=t0 + timedelta(seconds=11, milliseconds=100))
    assert len(cron_ids(q)) == 2
    # catch_up=False: the missed tick is recorded, not run; the next one runs.
    skip = Periodic("jobs.noop", every=1, queue=qname, name="coalesce", catch_up=False)
    quiet = CronScheduler(url, [skip], install_signal_handlers=False)
    quiet.run_once(now=t0 + timedelta(seconds=30, milliseconds=500))
    assert len(cron_ids(q)) == 2
    quiet.run_once(now=t0 + timedelta(seconds=31, milliseconds=1))
    assert cron_ids(q)[-1] == job.job_id(int((t0 + timedelta(seconds=31)).timestamp() * 1000))


def test_a_periodic_jobs_arguments_and_options_apply_to_every_run(url: str, qname: str) -> None:
    q = Queue(qname, url)
    job = Periodic("jobs.echo", every=1, queue=qname, name="opts", args=(1, "a"), kwargs={"k": [2]},
                   job_timeout=7, result_ttl=600, description="nightly", meta={"who": "cron"}, max_attempts=2)
    scheduler = CronScheduler(url, [job], install_signal_handlers=False)
    t0 = _now_floor_s(60)
    for step in range(3):
        scheduler.run_once(now=t0 + timedelta(seconds=step, milliseconds=1))
    runs = [q.fetch_job(i) for i in cron_ids(q)]
    assert len(runs) == 2
    for run in runs:
        assert run is not None and run.func_name == "jobs.echo"
        assert (run.args, run.kwargs) == ([1, "a"], {"k": [2]})
        assert (run.timeout, run.result_ttl, run.description, run.meta) == (7, 600, "nightly", {"who": "cron"})
    with pytest.raises(PeriodicError, match=r"unknown option\(s\) \['job_timout'\]"):
        Periodic("jobs.echo", every=1, job_timout=7)
    with pytest.raises(PeriodicError, match=r"periodic job 'bad': JSON cannot carry"):
        CronScheduler(url, [Periodic("jobs.echo", every=1, args=(object(),), name="bad")])


def test_a_periodic_job_with_a_priority_waits_in_its_level_and_runs(url: str, qname: str) -> None:
    q = Queue(qname, url)
    job = Periodic("jobs.add", every=1, queue=qname, name="prio", args=(2, 3), priority=1,
                   concurrency_key="nightly")
    scheduler = CronScheduler(url, [job], install_signal_handlers=False)
    t0 = _now_floor_s(60)
    scheduler.run_once(now=t0)
    scheduler.run_once(now=t0 + timedelta(seconds=1))
    run_id = job.job_id(int((t0 + timedelta(seconds=1)).timestamp() * 1000))
    keys = K.QueueKeys(qname)
    assert q.connection.llen(keys.pending) == 0 and q.connection.zscore(keys.prio, run_id) is not None  # the prio set
    assert cron_ids(q) == [run_id]  # listed after the jobs without a priority
    assert q.connection.hmget(keys.job(run_id), ["pr", "lk"]) == [b"1", b"nightly"]
    Worker([q], url, pool="solo", install_signal_handlers=False).work(burst=True)
    ran = q.fetch_job(run_id)
    assert ran is not None and ran.get_status() == JobStatus.FINISHED and ran.return_value() == 5
    for option, value in (("unique", True), ("depends_on", "x"), ("debounce", ("k", 5)), ("job_id", "x")):
        with pytest.raises(PeriodicError, match=f"{option}= does not apply to periodic jobs"):
            Periodic("jobs.noop", every=1, **{option: value})


@pytest.mark.parametrize("priority", [0, 3])
def test_cron_tick_creates_the_same_record_as_enqueue(url: str, qname: str, priority: int) -> None:
    """cron_tick.lua repeats enqueue.lua's record layout; this catches the two drifting apart."""
    from dataclasses import replace

    from clusterq import Retry
    from clusterq.api.queue import EnqueueData
    from clusterq.state import store as T

    q = Queue(qname, url)
    data = EnqueueData("jobs.echo", (1, "x"), {"k": 2}, job_id="via-enqueue", job_timeout=9, result_ttl=60,
                       ttl=300, failure_ttl=70, description="d", meta={"m": 1}, max_attempts=4,
                       retry=Retry(max=2, interval=[1, 2]), priority=priority, concurrency_key="ck")
    new = replace(q._new_job(data), signature="sig")  # as a signing queue would set it
    q.store.run(T.enqueue_call(q.keys, [new]))
    q.store.run(T.cron_tick_call(q.keys, "same", 1000, "fire", 5, replace(new, id="via-cron")))
    records = [q.connection.hgetall(q.keys.job(i)) for i in ("via-enqueue", "via-cron")]
    for record in records:
        record.pop(b"c")  # creation time
    assert records[0] == records[1] and records[0]
    assert [q.connection.ttl(q.keys.job(i)) > 0 for i in ("via-enqueue", "via-cron")] == [True, True]
    waiting = q.connection.zrange(q.keys.prio, 0, -1) if priority else q.connection.lrange(q.keys.pending, 0, -1)
    assert waiting == [b"via-enqueue", b"via-cron"]


def test_without_overlap_a_tick_is_skipped_while_the_previous_run_has_not_ended(url: str, qname: str) -> None:
    q = Queue(qname, url)
    job = Periodic("jobs.noop", every=1, queue=qname, name="no-overlap", overlap=False)
    scheduler = CronScheduler(url, [job], install_signal_handlers=False)
    t0 = _now_floor_s(60)
    at = [int((t0 + timedelta(seconds=s)).timestamp() * 1000) for s in range(4)]
    scheduler.run_once(now=t0)  # first seen
    scheduler.run_once(now=t0 + timedelta(seconds=1))
    scheduler.run_once(now=t0 + timedelta(seconds=2))  # the run of tick 1 is still queued: skipped
    assert cron_ids(q) == [job.job_id(at[1])]
    Worker([q], url, pool="solo", install_signal_handlers=False).work(burst=True)
    scheduler.run_once(now=t0 + timedelta(seconds=3))  # it finished: tick 3 runs
    assert [r.job_id for r in list_periodic(url)[0].runs] == [job.job_id(at[3]), job.job_id(at[1])]
    assert scheduler.enqueued == 2


def test_older_ticks_and_ticks_after_the_servers_clock_are_refused(url: str, qname: str) -> None:
    q = Queue(qname, url)
    job = Periodic("jobs.noop", every=1, queue=qname, name="guarded")
    t0 = _now_floor_s(120)
    ahead, behind = (CronScheduler(url, [job], install_signal_handlers=False) for _ in range(2))
    ahead.run_once(now=t0)
    ahead.run_once(now=t0 + timedelta(seconds=5))
    assert len(cron_ids(q)) == 1
    behind.run_once(now=t0 + timedelta(seconds=3))  # a slower scheduler offers an older tick: refused
    assert len(cron_ids(q)) == 1
    future = CronScheduler(url, [job], install_signal_handlers=False)
    wait_s = future.run_once(now=datetime.now(timezone.utc) + timedelta(hours=1))  # a clock an hour fast
    assert len(cron_ids(q)) == 1 and wait_s == 0  # not run; offered again once the server gets there
    assert ahead.enqueued == 1 and behind.enqueued == 0 and future.enqueued == 0


@pytest.mark.parametrize("clusterq_topology", ["standalone"], indirect=True)
def test_an_idle_scheduler_sends_only_its_run_now_look_between_ticks(clusterq_topology: Topology, qname: str) -> None:
    import threading

    clusterq_topology.flush()
    url = clusterq_topology.url
    job = Periodic("jobs.noop", cron="0 0 1 1 *", queue=qname, name="yearly")
    scheduler = CronScheduler(url, [job], install_signal_handlers=False)
    observer = redis.Redis.from_url(url)

    def commands() -> dict[str, int]:
        return {name: int(stats["calls"]) for name, stats in observer.info("commandstats").items()}

    thread = threading.Thread(target=scheduler.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: observer.hget(K.QueueKeys(qname).cron, "yearly"), "the scheduler to settle its first tick")
        time.sleep(0.2)  # let its start-up calls finish
        before = commands()
        time.sleep(2.0)
        after = commands()
    finally:
        scheduler.stop()
        thread.join(DEADLINE_S)
        observer.close()
    sent = {name: calls - before.get(name, 0) for name, calls in after.items() if calls != before.get(name, 0)}
    sent.pop("cmdstat_info", None)  # our own
    # Between ticks only the look for run-now requests: one GET per periodic job, once a second at most.
    assert set(sent) <= {"cmdstat_get"}, sent
    assert sent.get("cmdstat_get", 0) <= 2.0 / RUN_NOW_POLL_S + 1, sent


def test_the_listing_shows_schedule_next_run_and_recent_runs_with_statuses(
    url: str, qname: str, subprocess_env: dict[str, str]
) -> None:
    q = Queue(qname, url)
    fails = Periodic("jobs.fail", cron="0 * * * *", queue=qname, name="hourly-fail")
    adds = Periodic("jobs.add", every=60, queue=qname, args=(1, 2), name="minutely-add", result_ttl=600)
    scheduler = CronScheduler(url, [fails, adds], install_signal_handlers=False, keep_runs=3)
    t0 = _now_floor_s(4 * 3600).replace(minute=59, second=30)
    for step in range(0, 6):
        scheduler.run_once(now=t0 + timedelta(minutes=step))  # 5 minutely ticks; one hourly tick
    Worker([q], url, pool="solo", install_signal_handlers=False).work(burst=True)
    before = datetime.now(timezone.utc)
    infos = {info.name: info for info in list_periodic(url)}
    after = datetime.now(timezone.utc)
    assert set(infos) == {"hourly-fail", "minutely-add"}
    add, fail = infos["minutely-add"], infos["hourly-fail"]
    assert (add.queue, add.func, add.schedule) == (qname, "jobs.add", "every 1m")
    assert fail.schedule == "cron 0 * * * *"
    assert add.next_run is not None and before < add.next_run <= after + timedelta(minutes=1)
    assert fail.next_run is not None and fail.next_run.minute == 0 and fail.next_run > before
    assert len(add.runs) == 3  # capped at keep_runs, newest first
    assert [r.tick for r in add.runs] == sorted((r.tick for r in add.runs), reverse=True)
    assert add.last_tick == add.runs[0].tick and add.runs[0].tick == t0 + timedelta(minutes=4, seconds=30)
    assert {r.status for r in add.runs} == {"finished"} and [r.status for r in fail.runs] == ["failed"]
    assert add.late and fail.late  # no scheduler took their latest ticks (hours ago)
    env = {**subprocess_env, "CLUSTERQ_URL": url}
    listing = subprocess.run([sys.executable, "-m", "clusterq.cli", "cron", "--list"], env=env,
                             capture_output=True, text=True, timeout=DEADLINE_S)
    assert listing.returncode == EXIT_OK, listing.stderr
    assert "2 periodic job(s)" in listing.stdout and "minutely-add" in listing.stdout
    assert "finished" in listing.stdout and "LATE" in listing.stdout
    info = subprocess.run([sys.executable, "-m", "clusterq.cli", "info"], env=env, capture_output=True, text=True,
                          timeout=DEADLINE_S)
    assert "2 periodic job(s)" in info.stdout and "hourly-fail" in info.stdout
    assert remove_periodic(url, "hourly-fail") and not remove_periodic(url, "hourly-fail")
    assert [i.name for i in list_periodic(url)] == ["minutely-add"]


@pytest.mark.parametrize("clusterq_topology", ["standalone"], indirect=True)  # process handling: one topology
def test_a_worker_with_cron_runs_its_periodic_jobs_and_stops_on_sigterm(
    url: str, qname: str, subprocess_env: dict[str, str], tmp_path: Path
) -> None:
    out = tmp_path / "beats"
    env = {**subprocess_env, "CQ_CRON_QUEUE": qname, "CQ_CRON_OUT": str(out), "CLUSTERQ_URL": url}
    log = tmp_path / "worker.log"
    with process(["worker", "--with-cron", "cron_decorated", "-P", "thread", "-c", "2", qname], env, log) as proc:
        wait_for(lambda: out.exists() and len(out.read_text().splitlines()) >= 3, "three periodic runs")
        stop(proc, log)
    assert set(out.read_text().splitlines()) == {"beat"}
    infos = list_periodic(url)
    assert [i.name for i in infos] == ["decorated-beat"]
    assert len(infos[0].runs) >= 3 and infos[0].runs[-1].status == "finished"


@pytest.mark.parametrize("clusterq_topology", ["standalone"], indirect=True)
def test_clusterq_cron_without_a_module_runs_the_settings_modules_periodic_jobs(
    clusterq_topology: Topology, qname: str, subprocess_env: dict[str, str], tmp_path: Path
) -> None:
    clusterq_topology.flush()
    (tmp_path / "cqsettings.py").write_text(
        "from clusterq import Periodic\n"
        f"URL = {clusterq_topology.url!r}\n"
        f"PERIODIC = [Periodic('jobs.noop', every=1, queue={qname!r}, name='from-settings')]\n")
    env = {k: v for k, v in subprocess_env.items() if k != "CLUSTERQ_URL"}
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), env["PYTHONPATH"]])
    q = Queue(qname, clusterq_topology.url)
    log = tmp_path / "cron.log"
    with process(["cron", "--settings", "cqsettings"], env, log) as proc:
        wait_for(lambda: len(cron_ids(q)) >= 2, "two ticks")
        stop(proc, log)
    assert all(i.startswith("cron:from-settings:") for i in cron_ids(q))


@pytest.mark.parametrize("clusterq_topology", ["standalone"], indirect=True)  # process handling: one topology
def test_a_bad_periodic_module_is_a_one_line_error(url: str, subprocess_env: dict[str, str]) -> None:
    env = {**subprocess_env, "CLUSTERQ_URL": url}
    result = subprocess.run([sys.executable, "-m", "clusterq.cli", "cron", "no_such_module_here"], env=env,
                            capture_output=True, text=True, timeout=DEADLINE_S)
    assert result.returncode != EXIT_OK and "Traceback" not in result.stderr
    assert "cannot import periodic jobs module 'no_such_module_here'" in result.stderr
    result = subprocess.run([sys.executable, "-m", "clusterq.cli", "cron"], env=env,
                            capture_output=True, text=True, timeout=DEADLINE_S)
    assert result.returncode != EXIT_OK and "name the module declaring the periodic jobs" in result.stderr
