"""Public hooks on real servers, in every pool and in a queue's synchronous mode ("inline"): headers set
before enqueue reach the process that runs the job; around-perform sees the job's exception; retries and
the final failure are told apart; abandonment, worker and child life-cycle hooks fire; a broken hook
never touches a job; hooks are found through an entry point; the asyncio producer runs them too."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from clusterq import AsyncQueue, Job, JobStatus, ProcessPool, Queue, Retry, Worker
from clusterq.api.queue import EnqueueData
from clusterq.cli.main import EXIT_OK, EXIT_USAGE
from clusterq.hooks import discover
from clusterq.signing import Signer
from clusterq.state import store as T
from clusterq.worker.pools.factory import POOL_KINDS
from hook_recorder import ENTRY_POINT_PATH_ENV, Counting, Raising, Recorder, Refusing, read

MODES = (*POOL_KINDS, "inline")
FORKED = ("process", "fork")


def _queue(url: str, qname: str, mode: str, hooks: list, **options) -> Queue:
    return Queue(qname, url, hooks=hooks, is_async=mode != "inline", **options)


def _burst(url: str, q: Queue, mode: str, hooks: list, **options) -> Worker | None:
    if mode == "inline":
        return None  # enqueue ran the jobs
    worker = Worker(q, url, pool=mode, concurrency=2, hooks=hooks, install_signal_handlers=False, **options)
    worker.work(burst=True)
    return worker


def _of(events: list[dict], event: str, job_id: str | None = None) -> list[dict]:
    return [e for e in events if e["event"] == event and (job_id is None or e.get("id") == job_id)]


@pytest.mark.parametrize("mode", MODES)
def test_headers_set_before_enqueue_reach_the_perform_hooks_and_the_job(url: str, qname: str, mode: str,
                                                                        tmp_path: Path) -> None:
    path = str(tmp_path / "events")
    rec = Recorder(path)
    q = _queue(url, qname, mode, [rec])
    job = q.enqueue("jobs.current_headers")
    coro = q.enqueue("jobs.async_current_headers")
    worker = _burst(url, q, mode, [rec])
    events = read(path)
    for handle in (job, coro):
        expected = {"traceparent": f"00-{handle.id}-01"}
        assert handle.get_status() == JobStatus.FINISHED, handle.exc_info
        assert handle.return_value() == expected, "get_current_job().headers in the running job"
        assert handle.headers == expected, "Job.headers reads them from the record"
        [before] = _of(events, "before_perform", handle.id)
        assert before["headers"] == expected and before["attempt"] == 1
        assert len(_of(events, "around_ok", handle.id)) == 1
        if mode in FORKED:
            assert before["pid"] != os.getpid(), "perform hooks run in the child that runs the job"
    if worker is not None:
        assert [e["name"] for e in _of(events, "on_worker_start")] == [worker.name]
        assert [e["name"] for e in _of(events, "on_worker_stop")] == [worker.name]
        assert all(e["pid"] == os.getpid() for e in _of(events, "on_worker_start") + _of(events, "on_worker_stop"))
    if mode in FORKED:
        starts, exits = _of(events, "on_child_start"), _of(events, "on_child_exit")
        assert starts and all(e["pid"] != os.getpid() for e in starts)
        assert sorted(e["pid"] for e in exits) == sorted(e["pid"] for e in starts), "every child says goodbye"
    else:
        assert not _of(events, "on_child_start"), "no forked child in this mode"


def test_every_script_that_creates_a_job_stores_its_headers_under_its_signature(url: str, qname: str,
                                                                              tmp_path: Path) -> None:
    # enqueue, schedule, defer, debounce and cron_tick each take the job's values as a group; headers is
    # the last of them, so a script reading the group at the old width would drop or misplace it.
    signer = Signer(b"k")
    q = Queue(qname, url, hooks=[Recorder(str(tmp_path / "events"))], signing_key=signer)
    parent = q.enqueue("jobs.add", 1, 2)
    jobs = {"enqueue": parent, "schedule": q.enqueue_in(60, "jobs.add", 1, 2),
            "defer": q.enqueue("jobs.add", 1, 2, depends_on=parent),
            "debounce": q.enqueue("jobs.add", 1, 2, debounce=("k", 60))}
    new = q._new_job(EnqueueData("jobs.add", (1, 2), job_id="via-cron"))
    q.store.run(T.cron_tick_call(q.keys, "tick", 1000, "fire", 5, new))
    jobs["cron_tick"] = Job.fetch("via-cron", url, queue=q.name)
    for script, job in jobs.items():
        assert job.headers == {"traceparent": f"00-{job.id}-01"}, script
        f, p, o, sg, hd = q.connection.hmget(job.key, ["f", "p", "o", "sg", "hd"])
        assert signer.problem(q.name, job.id, f.decode(), p or b"", o or b"", sg, hd) is None, script


def test_a_job_enqueued_without_hooks_has_no_headers_stored(url: str, qname: str) -> None:
    q = Queue(qname, url)
    job = q.enqueue("jobs.add", 1, 2)
    assert not q.connection.hexists(job.key, "hd") and job.headers == {}


@pytest.mark.parametrize("mode", MODES)
def test_retries_and_the_final_failure_are_told_apart(url: str, qname: str, mode: str, tmp_path: Path) -> None:
    path = str(tmp_path / "events")
    rec = Recorder(path)
    q = _queue(url, qname, mode, [rec])
    # Inline runs a retry only once a worker takes it: there the job has no retries.
    retry = Retry(max=2) if mode != "inline" else None
    bad = q.enqueue("jobs.fail", "nope", retry=retry)
    good = q.enqueue("jobs.add", 1, 2, retry=retry)
    _burst(url, q, mode, [rec])
    events = read(path)
    runs = 3 if retry else 1
    assert bad.get_status() == JobStatus.FAILED and "ValueError: nope" in bad.exc_info
    assert [e["error"] for e in _of(events, "around_error", bad.id)] == ["ValueError"] * runs
    assert [e["error"] for e in _of(events, "after_perform", bad.id)] == ["ValueError"] * runs
    assert [e["retries"] for e in _of(events, "on_retry", bad.id)] == list(range(runs - 1))
    [final] = _of(events, "on_failure", bad.id)
    assert final["error"] == "ValueError" and final["reason"] == "ValueError: nope"
    assert good.return_value() == 3
    assert _of(events, "after_perform", good.id) == [e for e in events if e["event"] == "after_perform"
                                                     and e["id"] == good.id and e["error"] is None]
    assert not _of(events, "on_failure", good.id) and not _of(events, "on_retry", good.id)


@pytest.mark.parametrize("mode", MODES)
def test_a_raising_hook_never_fails_the_job(url: str, qname: str, mode: str, tmp_path: Path) -> None:
    path = str(tmp_path / "events")
    rec = Recorder(path)
    hooks = [Raising(), rec]
    q = _queue(url, qname, mode, hooks)
    ok = q.enqueue("jobs.add", 2, 3)
    bad = q.enqueue("jobs.fail", "still mine")
    _burst(url, q, mode, hooks)
    assert ok.get_status() == JobStatus.FINISHED and ok.return_value() == 5
    assert bad.get_status() == JobStatus.FAILED and bad.exc_info.startswith("ValueError: still mine")
    assert bad.callback_error is None, "a hook's failure is not noted on the job"
    events = read(path)
    assert len(_of(events, "on_failure", bad.id)) == 1, "the hooks after a broken one still run"


def test_a_raising_hook_is_logged_once_with_its_reason(url: str, qname: str, tmp_path: Path,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    q = Queue(qname, url)
    for i in range(3):
        q.enqueue("jobs.add", i, i)
    Worker(q, url, pool="solo", hooks=[Raising()], install_signal_handlers=False).work(burst=True)
    broken = [r for r in caplog.records if "before_perform is broken" in r.getMessage()]
    assert len(broken) == 1 and "raised in before_perform" in broken[0].getMessage()


def test_a_raising_before_enqueue_refuses_the_enqueue_with_its_error(url: str, qname: str) -> None:
    q = Queue(qname, url, hooks=[Refusing()])
    with pytest.raises(PermissionError, match=r"tenant header missing for jobs\.add"):
        q.enqueue("jobs.add", 1, 2)
    with pytest.raises(PermissionError):
        q.enqueue_many([q.prepare_data("jobs.add", (1, 2)), q.prepare_data("jobs.add", (3, 4))])
    assert q.count == 0, "nothing of the batch was written"


def test_abandonment_fires_in_the_worker_for_a_job_whose_worker_died(url: str, qname: str, tmp_path: Path) -> None:
    path = str(tmp_path / "events")
    rec = Recorder(path)
    q = Queue(qname, url)
    doomed = q.enqueue("jobs.add", 1, 1, max_attempts=1)
    # A worker leases it for 1 ms and dies: nobody extends the lease.
    [leased] = T.parse_lease_reply(q.name, q.store.run(T.lease_call(q.keys, 1, 1, "dead-worker", 60_000))).jobs
    assert leased.id == doomed.id
    time.sleep(0.05)  # past the 1 ms lease (server time), so maintenance finds it expired
    worker = Worker(q, url, pool="thread", hooks=[rec], install_signal_handlers=False)
    worker.work(burst=True)
    assert doomed.get_status() == JobStatus.FAILED and doomed.exc_info.startswith("abandoned")
    [event] = _of(read(path), "on_abandoned")
    assert event == {"event": "on_abandoned", "id": doomed.id, "queue": qname, "pid": os.getpid()}


def test_a_hook_published_by_an_installed_distribution_is_found_through_its_entry_point(
        url: str, qname: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    site = tmp_path / "site"
    info = site / "clusterq_test_hooks-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: clusterq-test-hooks\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[clusterq.hooks]\nrecorder = hook_recorder:from_entry_point\n")
    path = str(tmp_path / "events")
    monkeypatch.setenv(ENTRY_POINT_PATH_ENV, path)
    monkeypatch.syspath_prepend(str(site))
    try:
        assert [type(h).__name__ for h in discover(refresh=True)] == ["Recorder"]
        q = Queue(qname, url)  # no hooks given: the installed one applies
        job = q.enqueue("jobs.add", 1, 2)
        assert job.headers == {"traceparent": f"00-{job.id}-01"}
        Worker(q, url, pool="solo", install_signal_handlers=False).work(burst=True)
        assert job.return_value() == 3
        assert [e["id"] for e in _of(read(path), "before_perform")] == [job.id]
    finally:
        sys.path.remove(str(site))
        discover(refresh=True)
    assert discover() == []


def test_the_asyncio_producer_runs_before_enqueue_hooks(url: str, qname: str, tmp_path: Path) -> None:
    path = str(tmp_path / "events")
    rec = Recorder(path)

    async def enqueue() -> tuple[str, dict[str, str]]:
        async with AsyncQueue(qname, url, hooks=[rec]) as aq:
            job = await aq.enqueue("jobs.current_headers")
            await job.refresh()
            return job.id, job.headers

    job_id, headers = asyncio.run(enqueue())
    assert headers == {"traceparent": f"00-{job_id}-01"}
    assert [e["id"] for e in _of(read(path), "before_enqueue")] == [job_id]
    Worker(Queue(qname, url), url, pool="solo", install_signal_handlers=False).work(burst=True)
    assert Job(qname, job_id, url).return_value() == headers


def test_headers_are_covered_by_the_signature(url: str, qname: str, tmp_path: Path) -> None:
    rec = Recorder(str(tmp_path / "events"))
    q = Queue(qname, url, signing_key=b"k" * 32, hooks=[rec])
    kept = q.enqueue("jobs.current_headers")
    forged = q.enqueue("jobs.current_headers")
    q.connection.hset(forged.key, "hd", '{"traceparent":"00-someone-else-01"}')
    Worker(q, url, pool="solo", signing_key=b"k" * 32, install_signal_handlers=False).work(burst=True)
    assert kept.return_value() == {"traceparent": f"00-{kept.id}-01"}
    assert forged.get_status() == JobStatus.FAILED and forged.exc_info.startswith("SignatureError")


@pytest.mark.parametrize("kind", POOL_KINDS)
def test_reports_from_wherever_jobs_run_reach_the_worker_once_each(url: str, qname: str, tmp_path: Path,
                                                                   kind: str) -> None:
    """What a metrics hook relies on: counted where the job runs, added up in the worker, exactly once per
    run even when the pool recycles its child after every job."""
    path = str(tmp_path / "events")
    q = Queue(qname, url)
    jobs = [q.enqueue("jobs.add", i, 1) for i in range(10)]
    options = {"max_jobs_per_child": 1} if kind == "process" else {}
    Worker(q, url, pool=kind, concurrency=2, hooks=[Counting(path)], install_signal_handlers=False,
           **options).work(burst=True)
    reports = _of(read(path), "on_report")
    assert all(e["pid"] == os.getpid() for e in reports), "on_report runs in the worker process"
    ran = Counter(e["data"][1] for e in reports if e["data"][0] == "ran")
    assert ran == Counter({j.id: 1 for j in jobs})
    where = {e["data"][2] for e in reports if e["data"][0] == "ran"}
    goodbyes = {e["data"][2] for e in reports if e["data"][0] == "bye"}
    if kind in FORKED:
        assert os.getpid() not in where and where <= goodbyes, "each child reported before it left"
    else:
        assert where == {os.getpid()} and not goodbyes


@pytest.mark.parametrize(("kind", "func"), [("process", "jobs.spin_forever"), ("fork", "jobs.spin_forever"),
                                            ("process", "jobs.spin_forever_deaf"), ("thread", "jobs.spin_forever"),
                                            ("solo", "jobs.spin_forever")])
def test_a_job_past_its_time_limit_is_reported_once(url: str, qname: str, tmp_path: Path, kind: str,
                                                    func: str) -> None:
    """Soft limit (the job's own process tells), hard limit (the supervisor tells, its child killed), and
    the thread pool (both could: only the supervisor does)."""
    path = str(tmp_path / "events")
    rec = Recorder(path)
    q = Queue(qname, url)
    job = q.enqueue(func, job_timeout=0.5)
    pool = {"process": ProcessPool(1, hard_grace_s=0.5)}.get(kind, kind)
    Worker(q, url, pool=pool, hooks=[rec], install_signal_handlers=False).work(burst=True)
    assert job.get_status() == JobStatus.FAILED and "time limit exceeded" in job.exc_info
    events = read(path)
    [final] = _of(events, "on_failure", job.id)
    assert "time limit exceeded" in final["reason"]
    assert not _of(events, "on_retry", job.id)


def test_the_worker_command_takes_hooks_and_refuses_one_it_cannot_load(url: str, qname: str, tmp_path: Path,
                                                                       subprocess_env: dict[str, str]) -> None:
    path = str(tmp_path / "events")
    env = {**subprocess_env, ENTRY_POINT_PATH_ENV: path}
    job = Queue(qname, url).enqueue("jobs.add", 1, 2)
    cli = [sys.executable, "-m", "clusterq.cli", "worker", "--burst", "-P", "solo", "-u", url]
    done = subprocess.run([*cli, "--hook", "hook_recorder:from_entry_point", qname], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == EXIT_OK, done.stderr
    assert job.return_value() == 3
    assert [e["id"] for e in _of(read(path), "before_perform")] == [job.id]
    bad = subprocess.run([*cli, "--hook", "hook_recorder:nothing_here", qname], env=env,
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == EXIT_USAGE
    assert "cannot load hook 'hook_recorder:nothing_here'" in bad.stderr
