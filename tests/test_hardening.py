"""What an adversarial run broke (issue 16, items 4, 5, 6, 8 and 9), on real servers.

Bad numbers and options are refused at the call, with the option named, by the sync and asyncio APIs
alike and before anything is written; a record that still carries one (older or forged) fails that job
with a reason on every pool; the allowlist cannot be walked around through attributes; and an enqueue
that redis-py resends after a lost reply creates nothing twice.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Callable
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import redis

import jobs
from clusterq import Job, JobStatus, Queue, Worker
from clusterq.api.aio_queue import AsyncQueue
from clusterq.api.callbacks import Callback
from clusterq.api.decorators import job
from clusterq.api.options import MAX_DURATION_S
from clusterq.api.retry import Backoff, Repeat, Retry, RetryJob
from clusterq.exceptions import InvalidJobId, InvalidQueueName, SerializationError
from clusterq.state import store as T
from clusterq.testing.standalone import Standalone

KEY = b"k" * 32
SCRIPTS_DIR = Path(T.__file__).parent / "scripts"


def burst(url: str, queue: str, **options: Any) -> Worker:
    worker = Worker(queue, url, install_signal_handlers=False, **{"pool": "solo", **options})
    worker.work(burst=True)
    return worker


def nested(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


def enqueue_with(api: str, url: str, qname: str, *args: Any, **kwargs: Any) -> Any:
    """``enqueue`` through the sync Queue or the AsyncQueue: one test body for both APIs."""
    if api == "sync":
        return Queue(qname, url).enqueue(*args, **kwargs)

    async def go() -> Any:
        async with AsyncQueue(qname, url) as queue:
            return await queue.enqueue(*args, **kwargs)
    return asyncio.run(go())


# --- item 4/5: every number and option checked at enqueue ----------------------------------------------

BAD_OPTIONS = [
    ({"result_ttl": math.inf}, ValueError, "result_ttl"),
    ({"result_ttl": "inf"}, ValueError, "result_ttl"),
    ({"result_ttl": "1e999"}, ValueError, "result_ttl"),
    ({"result_ttl": 1e308}, ValueError, "result_ttl"),
    ({"failure_ttl": math.nan}, ValueError, "failure_ttl"),
    ({"failure_ttl": float("-inf")}, ValueError, "failure_ttl"),
    ({"ttl": 9.3e15}, ValueError, "ttl"),
    ({"ttl": math.nan}, ValueError, "ttl"),
    ({"job_timeout": math.inf}, ValueError, "job_timeout"),
    ({"job_timeout": 1e300}, ValueError, "job_timeout"),
    ({"timeout": math.nan}, ValueError, "job_timeout"),
    ({"max_attempts": 10**30}, ValueError, "max_attempts"),
    ({"max_attempts": True}, ValueError, "max_attempts"),
    ({"max_attempts": 2.0}, ValueError, "max_attempts"),
    ({"priority": True}, ValueError, "priority"),
    ({"job_id": "a\ud800b"}, InvalidJobId, "job_id is not valid text"),
    ({"concurrency_key": "k\udfff"}, ValueError, "concurrency_key"),
    ({"description": "d\ud800"}, ValueError, "description"),
    ({"args": (math.nan,)}, SerializationError, "NaN"),
    ({"kwargs": {"x": [1, math.inf]}}, SerializationError, r"float inf at .*\['x'\]\[1\]"),
    ({"args": (nested(10_000),)}, SerializationError, "nested more than"),
    ({"args": ("a\ud800",)}, SerializationError, "surrogate"),
    ({"meta": {"deep": nested(10_000)}}, SerializationError, "nested more than"),
]


@pytest.mark.parametrize("api", ["sync", "asyncio"])
@pytest.mark.parametrize("options,error,match", BAD_OPTIONS, ids=[str(i) for i in range(len(BAD_OPTIONS))])
def test_a_bad_number_or_option_is_refused_at_enqueue_naming_it_and_nothing_is_written(
        api: str, options: dict[str, Any], error: type[Exception], match: str, url: str, qname: str) -> None:
    with pytest.raises(error, match=match):
        enqueue_with(api, url, qname, "jobs.add", **options)
    queue = Queue(qname, url)
    assert queue.count == 0 and queue.scheduled_job_registry.count == 0


@pytest.mark.parametrize("api", ["sync", "asyncio"])
def test_an_empty_function_path_and_a_lone_surrogate_in_a_queue_name_are_refused(api: str, url: str,
                                                                                 qname: str) -> None:
    with pytest.raises(ValueError, match="function path"):
        enqueue_with(api, url, qname, "")
    with pytest.raises(ValueError, match="function path"):
        enqueue_with(api, url, qname, "nodots")
    with pytest.raises(InvalidQueueName, match="not valid text"):
        enqueue_with(api, url, qname + "\ud800", "jobs.add", 1, 2)
    assert Queue(qname, url).count == 0


def test_retry_repeat_and_retryjob_refuse_numbers_a_worker_could_not_use() -> None:
    for make, match in [
        (lambda: Retry(1, interval=math.nan), "Retry interval"),
        (lambda: Retry(1, interval=[1, math.inf]), "Retry interval"),
        (lambda: Retry(10**30), r"Retry\(max=...\)"),
        (lambda: Retry(True), r"Retry\(max=...\)"),
        (lambda: Backoff(base=math.inf), "base"),
        (lambda: Backoff(factor=math.nan), "factor"),
        (lambda: Repeat(1, interval=1e300), "Repeat interval"),
        (lambda: RetryJob(delay=math.inf), "delay"),
        (lambda: Callback("jobs.noop", timeout=math.inf), "Callback timeout"),
    ]:
        with pytest.raises(ValueError, match=match):
            make()


@pytest.mark.parametrize("api", ["sync", "asyncio"])
def test_enqueue_in_and_at_refuse_nan_and_garbage_and_accept_a_date_or_an_iso_string(api: str, url: str,
                                                                                       qname: str) -> None:
    async def run(call: Callable[[Any], Any]) -> Any:
        async with AsyncQueue(qname, url) as aq:
            return await call(aq)

    def both(name: str, when: Any) -> Any:
        if api == "sync":
            return getattr(Queue(qname, url), name)(when, "jobs.add", 1, 2)
        return asyncio.run(run(lambda aq: getattr(aq, name)(when, "jobs.add", 1, 2)))

    for bad in (math.nan, math.inf, 1e300, "soon"):
        with pytest.raises(ValueError, match="time_delta"):
            both("enqueue_in", bad)
    for bad in ("tomorrow", 12345, None):
        with pytest.raises(ValueError, match="scheduled_time"):
            both("enqueue_at", bad)
    assert Queue(qname, url).scheduled_job_registry.count == 0
    later = datetime.now(timezone.utc) + timedelta(days=400)
    by_date = both("enqueue_at", later.date())
    by_text = both("enqueue_at", later.isoformat())
    for handle in (by_date, by_text):
        assert Job.fetch(handle.id, Queue(qname, url).connection, queue=qname).get_status() == JobStatus.SCHEDULED
    assert isinstance(later.date(), date)


def test_the_debounce_window_queue_defaults_enqueue_many_and_the_job_decorator_check_the_same_rules(
        url: str, qname: str) -> None:
    queue = Queue(qname, url)
    with pytest.raises(ValueError, match="debounce window"):
        queue.enqueue("jobs.add", 1, 2, debounce=("k", math.nan))
    with pytest.raises(ValueError, match="result_ttl"):
        Queue(qname, url, result_ttl=math.inf)
    with pytest.raises(ValueError, match="max_attempts"):
        AsyncQueue(qname, url, max_attempts=True)
    with pytest.raises(ValueError, match="failure_ttl"):
        queue.enqueue_many([queue.prepare_data("jobs.add", (1, 2), failure_ttl="1e999")])
    with pytest.raises(ValueError, match="job_timeout"):
        AsyncQueue(qname, url).prepare_data("jobs.add", (1, 2), timeout=math.nan)
    assert AsyncQueue(qname, url).prepare_data("jobs.add", (1, 2), timeout=5).job_timeout == 5
    with pytest.raises(ValueError, match="ttl"):
        job(qname, url, ttl=math.nan)
    with pytest.raises(ValueError, match="description"):
        job(qname, url, description="\ud800")
    decorated = job(qname, url)(jobs.add)
    with pytest.raises(InvalidJobId, match="not valid text"):
        decorated.delay(1, 2, job_id="\udc80")
    assert queue.count == 0


def test_the_enqueue_script_refuses_a_ttl_redis_cannot_hold_before_writing_the_record(url: str, qname: str) -> None:
    # A client that skips the checks (an older version): the script itself must not leave a queued
    # record outside the pending list when EXPIRE refuses the ttl.
    queue = Queue(qname, url)
    good = T.NewJob(id="good", func="jobs.add")
    bad = T.NewJob(id="huge-ttl", func="jobs.add", ttl_s=10**16)
    with pytest.raises(redis.ResponseError, match="ttl"):
        queue.store.run(T.enqueue_call(queue.keys, [good, bad]))
    assert queue.connection.exists(queue.keys.job("huge-ttl"), queue.keys.job("good")) == 0
    assert queue.count == 0
    assert f"0, {MAX_DURATION_S})" in (SCRIPTS_DIR / "enqueue.lua").read_text()  # the two bounds agree


def test_a_retried_enqueue_with_the_same_job_id_after_a_refused_ttl_finds_no_stale_record(url: str,
                                                                                            qname: str) -> None:
    queue = Queue(qname, url)
    with pytest.raises(ValueError, match="ttl"):
        queue.enqueue("jobs.add", 1, 2, job_id="same", ttl=1e16)
    retried = queue.enqueue("jobs.add", 1, 2, job_id="same")
    burst(url, qname)
    assert retried.get_status() == JobStatus.FINISHED and retried.return_value() == 3


# --- item 4: a record that cannot be decoded fails its job on every pool ----------------------------------

FORGED_OPTIONS = [
    '{"result_ttl":1e999}',
    '{"failure_ttl":1e999}',
    '{"timeout":NaN}',
    '{"timeout":-Infinity}',
    '{"hist":1e999}',
    '{"retry":[1e999,[0]]}',
    '{"retry":[1,[1e999]]}',
    '{"cb":{"s":["jobs.noop",1e999]}}',
    "[" * 5000 + "]" * 5000,
]


@pytest.mark.parametrize("clusterq_topology", ["standalone"], indirect=True)
@pytest.mark.parametrize("pool", ["solo", "thread", "process", "fork", "asyncio"])
def test_a_record_whose_options_cannot_be_decoded_fails_that_job_with_a_reason_on_every_pool(
        pool: str, url: str, qname: str) -> None:
    queue = Queue(qname, url)
    ids = []
    for index, options in enumerate(FORGED_OPTIONS):
        job_id = f"forged-{index}"
        queue.connection.hset(queue.keys.job(job_id), mapping={"s": "queued", "c": "0", "f": "jobs.add",
                                                              "p": "[[1,2],{}]", "o": options})
        queue.connection.rpush(queue.keys.pending, job_id)
        ids.append(job_id)
    good = queue.enqueue("jobs.add", 2, 3)
    burst(url, qname, pool=pool, concurrency=2)  # returns: the pool survived every forged record
    assert good.get_status() == JobStatus.FINISHED and good.return_value() == 5
    for job_id in ids:
        forged = Job.fetch(job_id, queue.connection, queue=qname)
        assert forged.get_status() == JobStatus.FAILED, job_id
        assert "malformed job record" in (forged.exc_info or ""), (job_id, forged.exc_info)
    assert queue.started_job_registry.count == 0


# --- item 6: the allowlist cannot be walked around -----------------------------------------------------

def test_a_job_path_cannot_reach_through_attributes_of_an_allowed_function(url: str, qname: str) -> None:
    queue = Queue(qname, url)
    attacker = {"target": "https://attacker.invalid/"}
    walks = {
        queue.enqueue("jobs:notify.__globals__.update", {"SETTINGS": attacker}): "underscore",
        queue.enqueue("jobs:notify.__builtins__.get", "eval"): "underscore",
        queue.enqueue("jobs:Jobs.__class__", "x"): "underscore",
        queue.enqueue("jobs:SETTINGS.update", attacker): "only functions of a module or of its classes",
        queue.enqueue("jobs._private_name"): "underscore",
    }
    legit = queue.enqueue("jobs.notify")
    for allow in (["jobs.*"], None):
        burst(url, qname, allow=allow)
        for walked, reason in walks.items():
            assert walked.get_status() == JobStatus.FAILED, walked.func_name
            assert reason in (walked.exc_info or ""), walked.exc_info
            walked.requeue()
    assert jobs.SETTINGS == {"target": "https://example.invalid/legit"}
    assert legit.return_value() == "https://example.invalid/legit"


@pytest.mark.parametrize("allow", [["jobs.*"], ["jobs:*"], ["jobs.Jobs.*"], ["jobs:Jobs.*"]])
def test_an_allowlist_pattern_matches_a_methods_path_in_either_spelling(allow: list[str], url: str,
                                                                         qname: str) -> None:
    queue = Queue(qname, url)
    static = queue.enqueue(jobs.Jobs.add, 1, 2)
    classmethod_ = queue.enqueue(jobs.Jobs.name)
    assert static.func_name == "jobs:Jobs.add"
    burst(url, qname, allow=allow)
    assert static.get_status() == JobStatus.FINISHED, static.exc_info
    assert static.return_value() == 3 and classmethod_.return_value() == "Jobs"


# --- item 8: signing proves authorship, not freshness (the documented trust model) -----------------------

def test_a_replayed_signed_job_runs_again_unchanged_as_the_security_checklist_says(url: str, qname: str) -> None:
    queue = Queue(qname, url, signing_key=KEY)
    done = queue.enqueue("jobs.add", 1, 2)
    burst(url, qname, signing_key=KEY)
    assert done.get_status() == JobStatus.FINISHED
    # Someone with write access replays it: it runs again (signing does not prove freshness)...
    queue.connection.hset(queue.keys.job(done.id), "s", "queued")
    queue.connection.rpush(queue.keys.pending, done.id)
    burst(url, qname, signing_key=KEY)
    assert done.get_status() == JobStatus.FINISHED and done.return_value() == 3
    # ...but with nothing changed: other arguments make it a forged job, refused.
    queue.connection.hset(queue.keys.job(done.id), mapping={"s": "queued", "p": "[[40,2],{}]"})
    queue.connection.rpush(queue.keys.pending, done.id)
    burst(url, qname, signing_key=KEY)
    assert done.get_status() == JobStatus.FAILED and "SignatureError" in (done.exc_info or "")


# --- item 9: a resent enqueue creates nothing twice ------------------------------------------------------

def test_an_enqueue_call_sent_twice_for_a_generated_id_pushes_it_once_and_leaves_a_finished_job_alone(
        url: str, qname: str) -> None:
    queue = Queue(qname, url)
    fresh = T.NewJob(id="generated-1", func="jobs.add", payload=b"[[1,2],{}]", fresh_id=True)
    call = T.enqueue_call(queue.keys, [fresh])
    assert [int(c) for c in queue.store.run(call)] == [1]
    assert [int(c) for c in queue.store.run(call)] == [0]  # what redis-py's retry resends
    assert queue.get_job_ids() == ["generated-1"]
    burst(url, qname)
    assert [int(c) for c in queue.store.run(call)] == [0]  # a resend landing after the job finished
    finished = Job.fetch("generated-1", queue.connection, queue=qname)
    assert finished.get_status() == JobStatus.FINISHED and queue.count == 0
    scheduled = T.schedule_call(queue.keys, [T.NewJob(id="generated-2", func="jobs.add", fresh_id=True)],
                                delay_ms=60_000)
    queue.store.run(scheduled)
    assert int(queue.store.run(scheduled)[1]) == 0
    assert queue.scheduled_job_registry.count == 1


def test_enqueues_resent_by_redis_py_during_a_server_stall_push_each_id_once() -> None:
    with Standalone() as server:
        admin = server.client()
        queue = Queue("stalled", server.url + "?socket_timeout=0.5")
        queue.enqueue("jobs.noop")  # scripts loaded, connection open
        outcomes: list[str] = []
        for _ in range(3):
            stall = threading.Thread(target=lambda: server.client().execute_command("DEBUG", "SLEEP", "1.5"))
            stall.start()
            time.sleep(0.2)  # let the stall begin: the enqueue below must time out and be resent
            try:
                queue.enqueue("jobs.noop")
                outcomes.append("acknowledged")
            except Exception as exc:  # a stall past every retry: reported, never a duplicate
                outcomes.append(type(exc).__name__)
            stall.join()
        ids = admin.lrange(queue.keys.pending, 0, -1)
        assert len(ids) == len(set(ids)), f"ids pushed twice: {len(ids) - len(set(ids))} ({outcomes})"
        assert len(ids) >= 1 + outcomes.count("acknowledged")


# --- documentation: a negative job_timeout means "no limit" in every pool (the guide says so) ----------

@pytest.mark.parametrize("clusterq_topology", ["standalone"], indirect=True)
@pytest.mark.parametrize("pool", ["thread", "process", "asyncio"])
def test_a_negative_job_timeout_means_no_limit_in_every_pool(pool: str, url: str, qname: str) -> None:
    queue = Queue(qname, url)
    unlimited = queue.enqueue("jobs.sleep", 0.5, job_timeout=-1)
    burst(url, qname, pool=pool, concurrency=1, default_timeout_s=0.2)  # the job outlives the default
    assert unlimited.get_status() == JobStatus.FINISHED, unlimited.exc_info
