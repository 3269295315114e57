"""One test body, both APIs: every test here runs on the synchronous API and on the asyncio API (the
``api`` fixture), on every topology, so the two cannot drift apart again.

The asyncio flavour runs the real ``AsyncQueue``/``AsyncJob``/``AsyncRegistry``/``AsyncGroup`` through an
event loop the test owns (:class:`Through`): a coroutine a method returns is run to its end, and the
reads that are properties on the sync API (``q.count``, ``registry.count``, ``q.is_suspended``...) are
awaited for the test. An ``AsyncJob`` not read yet is read before a field of it is, as a sync ``Job``
reads itself on first use. Nothing else is adapted: the arguments, results and errors are the APIs' own.
Jobs are run by the ordinary sync ``Worker`` in burst mode, as a worker process would.
"""

from __future__ import annotations

import asyncio
import inspect
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import clusterq
from clusterq import (
    AsyncGroup,
    AsyncQueue,
    Group,
    InvalidJobId,
    InvalidJobOperation,
    JobStatus,
    NoSuchJobError,
    Queue,
    ReplicationTimeout,
    ServerError,
    Worker,
    connect_async,
    disconnect_async,
)
from clusterq.api.aio_job import AsyncJob
from clusterq.api.aio_queue import AsyncRegistry
from clusterq.api.group import GroupCore
from clusterq.api.hooks import EnqueueInfo, Hook
from clusterq.testing import Topology
from clusterq.worker import registration
from test_misconfig import full  # fills a queue's primary until it refuses writes

# Reads that are properties on the sync API and coroutine methods on the asyncio one.
AWAITED_PROPERTIES = frozenset({"count", "is_suspended", "rate_limit", "concurrency_limits", "dependency_handles",
                                "retried_count"})


class Through:
    """An asyncio API object used as if it were synchronous (see the module's docstring)."""

    def __init__(self, target: Any, loop: asyncio.AbstractEventLoop) -> None:
        object.__setattr__(self, "_target", target)
        object.__setattr__(self, "_loop", loop)

    def _wrap(self, value: Any) -> Any:
        if isinstance(value, (AsyncQueue, AsyncJob, AsyncRegistry, GroupCore)):
            return Through(value, self._loop)
        if isinstance(value, list):
            return [self._wrap(v) for v in value]
        return value

    def _call(self, method: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        result = method(*[_unwrap(a) for a in args], **{k: _unwrap(v) for k, v in kwargs.items()})
        if inspect.isawaitable(result):
            result = self._loop.run_until_complete(result)
        return self._wrap(result)

    def __getattr__(self, name: str) -> Any:
        target = self._target
        if (isinstance(target, AsyncJob) and target._fields is None and name not in ("handle", "key")
                and isinstance(getattr(type(target), name, None), property)):
            self._loop.run_until_complete(target.refresh())  # a sync Job reads itself on first use
        value = getattr(target, name)
        if name in AWAITED_PROPERTIES and callable(value):
            return self._call(value, (), {})
        if callable(value):
            return lambda *args, **kwargs: self._call(value, args, kwargs)
        return self._wrap(value)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._target, name, value)

    def __eq__(self, other: object) -> bool:
        return bool(self._target == _unwrap(other))

    def __hash__(self) -> int:
        return hash(self._target)


def _unwrap(value: Any) -> Any:
    if isinstance(value, Through):
        return object.__getattribute__(value, "_target")
    if isinstance(value, list):
        return [_unwrap(v) for v in value]
    return value


class Api:
    """The entry points a test needs, for one flavour: ``sync`` or ``async``."""

    def __init__(self, flavour: str, url: str) -> None:
        self.flavour = flavour
        self.url = url
        self.loop: asyncio.AbstractEventLoop | None = None
        self.client: Any = None
        if flavour == "async":
            self.loop = asyncio.new_event_loop()
            self.client = self.loop.run_until_complete(connect_async(url))

    def close(self) -> None:
        if self.loop is not None:
            self.loop.run_until_complete(disconnect_async(self.client))
            self.loop.close()

    def _through(self, value: Any) -> Any:
        assert self.loop is not None
        return Through(value, self.loop)

    def _run(self, coro: Any) -> Any:
        assert self.loop is not None
        return self.loop.run_until_complete(coro)

    def queue(self, name: str, **options: Any) -> Any:
        if self.flavour == "sync":
            return Queue(name, self.url, **options)
        return self._through(AsyncQueue(name, self.client, **options))

    def fetch_job(self, handle: str) -> Any:
        if self.flavour == "sync":
            return clusterq.Job.fetch(handle, self.url)
        return self._through(self._run(AsyncJob.fetch(handle, self.client)))

    def fetch_many(self, ids: list[str]) -> list[Any]:
        if self.flavour == "sync":
            return clusterq.Job.fetch_many(ids, self.url)
        return [None if job is None else self._through(job)
                for job in self._run(AsyncJob.fetch_many(ids, self.client))]

    def job_class(self) -> Any:
        return clusterq.Job if self.flavour == "sync" else AsyncJob

    def set_retries_left(self, job: Any, value: int) -> None:
        """``job.retries_left = value`` (sync), ``await job.set_retries_left(value)`` (asyncio)."""
        if self.flavour == "sync":
            job.retries_left = value
        else:
            self._run(_unwrap(job).set_retries_left(value))

    def create_group(self, queue: Any) -> Any:
        if self.flavour == "sync":
            return Group.create(queue)
        return self._through(self._run(AsyncGroup.create(_unwrap(queue))))

    def suspend_all(self, suspended: bool) -> None:
        if self.flavour == "sync":
            (clusterq.suspend if suspended else clusterq.resume)(self.url)
        else:
            self._run((clusterq.suspend_async if suspended else clusterq.resume_async)(self.client))

    def all_suspended(self) -> bool:
        if self.flavour == "sync":
            return clusterq.is_suspended(self.url)
        return bool(self._run(clusterq.is_suspended_async(self.client)))

    def all_queues(self) -> list[str]:
        if self.flavour == "sync":
            return [q.name for q in Queue.all(self.url)]
        return [q.name for q in self._run(AsyncQueue.all(self.client))]

    def workers(self) -> list[registration.WorkerInfo]:
        if self.flavour == "sync":
            return clusterq.list_workers(self.url)
        return self._run(clusterq.list_workers_async(self.client))


@pytest.fixture(params=["sync", "async"])
def api(request: pytest.FixtureRequest, url: str) -> Iterator[Api]:
    flavour = Api(request.param, url)
    try:
        yield flavour
    finally:
        flavour.close()


def work(url: str, *queues: str) -> int:
    return Worker(list(queues), url, install_signal_handlers=False).work(burst=True)


def replicas_of(url: str) -> int:
    """Our test topologies: standalone has no replica, Sentinel and Cluster one per primary."""
    return 0 if url.startswith("redis://") else 1


# --- enqueue options ---------------------------------------------------------------------------------

def test_timeout_is_rqs_name_for_job_timeout_in_every_enqueue_spelling(api: Api, qname: str) -> None:
    q = api.queue(qname)
    called = q.enqueue_call("jobs.add", (1, 2), timeout="2m")
    many = q.enqueue_many([q.prepare_data("jobs.add", (1, 2), timeout=30)])
    direct = q.enqueue("jobs.add", 1, 2, timeout=45)
    assert (called.timeout, many[0].timeout, direct.timeout) == (120.0, 30.0, 45.0)


def test_bad_options_are_refused_before_anything_is_written(api: Api, qname: str) -> None:
    q = api.queue(qname)
    with pytest.raises(ValueError, match="priority"):
        q.enqueue("jobs.noop", priority=42)
    with pytest.raises(TypeError, match="not supported"):
        q.enqueue("jobs.noop", pipeline=object())
    with pytest.raises(ValueError, match="wait_replicas"):
        api.queue(qname, wait_replicas=-1)
    assert q.count == 0


def test_debounce_keeps_one_job_per_window_with_the_latest_arguments(api: Api, qname: str, url: str) -> None:
    q = api.queue(qname)
    handles = {q.enqueue("jobs.add", i, i, debounce=("key", 60)).handle for i in range(5)}
    assert len(handles) == 1
    job = api.fetch_job(handles.pop())
    assert (job.get_status(), job.args) == (JobStatus.SCHEDULED, [4, 4])


def test_a_durable_enqueue_waits_for_the_replicas_or_says_it_did_not(api: Api, qname: str, url: str) -> None:
    wanted = replicas_of(url) + 1
    q = api.queue(qname, wait_replicas=wanted, wait_timeout_s=0.2)
    with pytest.raises(ReplicationTimeout, match=rf"only {wanted - 1} of {wanted} replica"):
        q.enqueue("jobs.noop", job_id="durable")
    assert q.count == 1  # written to the primary all the same
    if replicas_of(url):
        enough = api.queue(qname, wait_replicas=1, wait_timeout_s=5.0)
        assert enough.enqueue("jobs.noop", job_id="durable-2").id == "durable-2"


def test_enqueue_many_keeps_order_and_at_front_jumps_the_line(api: Api, qname: str, url: str) -> None:
    q = api.queue(qname)
    many = q.enqueue_many([q.prepare_data("jobs.echo", (i,)) for i in range(1200)])  # 3 script calls
    first = q.enqueue("jobs.echo", "first", at_front=True)
    assert q.count == 1201
    expected = [first.id, *(job.id for job in many)]
    assert Queue(qname, url).get_job_ids(0, 2000) == q.get_job_ids(0, 2000) == expected
    assert [q.fetch_job(job_id).args for job_id in expected[:3]] == [["first"], [0], [1]]


def test_emptying_a_queue_removes_its_waiting_jobs_in_batches(api: Api, qname: str) -> None:
    q = api.queue(qname)
    waiting = q.enqueue_many([q.prepare_data("jobs.noop") for _ in range(2500)])
    assert q.empty() == 2500
    assert q.count == 0 and q.is_empty()
    assert q.fetch_job(waiting[0].id) is None, "emptying deletes the waiting jobs' records"
    assert q.get_job_ids() == []


def test_args_and_kwargs_keywords_pass_names_that_collide_with_options(api: Api, qname: str, url: str) -> None:
    job = api.queue(qname).enqueue("jobs.echo", args=(1,), kwargs={"job_id": "not an option", "ttl": 5})
    work(url, qname)
    assert job.return_value() == {"args": [1], "kwargs": {"job_id": "not an option", "ttl": 5}}


def test_bad_input_is_refused_before_anything_is_written(api: Api, qname: str) -> None:
    q = api.queue(qname)
    with pytest.raises(InvalidJobId):
        q.enqueue("jobs.noop", job_id="")
    with pytest.raises(ValueError, match="job_timeout"):
        q.enqueue("jobs.noop", job_timeout="soon")
    with pytest.raises(ValueError, match="max_attempts"):
        q.enqueue("jobs.noop", max_attempts=0)
    with pytest.raises(TypeError, match="not both"):
        q.enqueue("jobs.echo", 1, args=(2,))
    with pytest.raises(ValueError):
        q.get_job_ids(0, 1_000_000)
    assert q.count == 0


def test_enqueueing_an_existing_job_id_creates_no_second_job(api: Api, qname: str, url: str) -> None:
    q = api.queue(qname)
    first = q.enqueue("jobs.add", 1, 1, job_id="order-42")
    again = q.enqueue("jobs.add", 9, 9, job_id="order-42")  # a retried request
    assert again == first and q.count == 1
    assert q.fetch_job("order-42").args == [1, 1]
    assert Queue(qname, url).count == 1


# --- changing jobs -----------------------------------------------------------------------------------

def test_cancel_tells_dependents_and_enqueue_dependents_releases_them(api: Api, qname: str, url: str) -> None:
    q = api.queue(qname)
    parent = q.enqueue("jobs.noop", job_id="parent")
    canceled_child = q.enqueue("jobs.noop", job_id="child-1", depends_on=parent)
    other = q.enqueue("jobs.noop", job_id="parent-2")
    released_child = q.enqueue("jobs.noop", job_id="child-2", depends_on=other)
    assert canceled_child.get_status() == released_child.get_status() == JobStatus.DEFERRED
    parent.cancel()
    other.cancel(enqueue_dependents=True)
    assert canceled_child.get_status() == JobStatus.CANCELED
    assert released_child.get_status() == JobStatus.QUEUED
    with pytest.raises(InvalidJobOperation, match="already canceled"):
        parent.cancel()
    gone = q.enqueue("jobs.noop", job_id="gone")
    gone.delete()
    with pytest.raises(NoSuchJobError):
        gone.cancel()


def test_delete_cancels_dependents_or_deletes_them_too(api: Api, qname: str) -> None:
    q = api.queue(qname)
    parent = q.enqueue("jobs.noop", job_id="p1")
    child = q.enqueue("jobs.noop", job_id="c1", depends_on=parent)
    parent.delete()
    assert child.get_status() == JobStatus.CANCELED
    parent = q.enqueue("jobs.noop", job_id="p2")
    child = q.enqueue("jobs.noop", job_id="c2", depends_on=parent)
    parent.delete(delete_dependents=True)
    assert child.get_status() is None and q.fetch_job("c2") is None
    parent.delete()  # a missing job: no error


def test_meta_is_saved_and_read_back(api: Api, qname: str) -> None:
    q = api.queue(qname)
    job = q.enqueue("jobs.noop", meta={"owner": "me"})
    assert job.meta == {"owner": "me"}
    job.meta["step"] = 2
    job.save_meta()
    assert api.fetch_job(job.handle).get_meta() == {"owner": "me", "step": 2}


def test_progress_and_dependencies_are_read_back(api: Api, qname: str) -> None:
    q = api.queue(qname)
    parent = q.enqueue("jobs.noop", job_id="parent")
    child = q.enqueue("jobs.noop", job_id="child", depends_on=parent)
    assert child.dependency_handles == [parent.handle] and child.dependencies_are_met() is False
    parent.set_progress(0.5, "half")
    progress = api.fetch_job(parent.handle).progress
    assert (progress.value, progress.message) == (0.5, "half")
    with pytest.raises(TypeError, match="message"):
        parent.set_progress(1, message=3)


def test_every_queue_is_listed_once_it_has_had_a_job(api: Api, qname: str) -> None:
    api.queue(qname).enqueue("jobs.noop")
    assert qname in api.all_queues()


def test_failed_jobs_are_listed_requeued_and_cleared_through_the_registries(api: Api, qname: str,
                                                                            url: str) -> None:
    q = api.queue(qname)
    bad = q.enqueue("jobs.fail", "nope", job_id="bad")
    q.enqueue("jobs.add", 1, 2, job_id="good")
    work(url, qname)
    failed, finished = q.failed_job_registry, q.finished_job_registry
    assert (failed.count, failed.get_job_ids(), finished.get_job_ids()) == (1, ["bad"], ["good"])
    assert [job.id for job in failed.get_jobs()] == ["bad"]
    assert "nope" in (bad.get_status() and bad.exc_info)
    bad.requeue()
    assert bad.get_status() == JobStatus.QUEUED and failed.count == 0
    with pytest.raises(InvalidJobOperation, match="only ended jobs"):
        bad.requeue()
    work(url, qname)
    assert failed.requeue("bad") == 1 and q.count == 1
    work(url, qname)
    assert failed.clear() == 1 and failed.count == 0 and q.fetch_job("bad") is None
    assert q.registry("finished").count == 1


def test_deleting_a_queue_removes_its_jobs_and_registries(api: Api, qname: str, url: str) -> None:
    q = api.queue(qname)
    q.enqueue("jobs.add", 1, 2, job_id="done")
    work(url, qname)
    q.enqueue("jobs.noop", job_id="waiting")
    q.enqueue_in(60, "jobs.noop", job_id="later")
    q.delete()
    assert (q.count, q.finished_job_registry.count, q.scheduled_job_registry.count) == (0, 0, 0)
    assert [q.fetch_job(i) for i in ("done", "waiting", "later")] == [None, None, None]


# --- control -----------------------------------------------------------------------------------------

def test_suspend_rate_and_concurrency_limits_are_set_and_read(api: Api, qname: str) -> None:
    q = api.queue(qname)
    assert (q.is_suspended, q.rate_limit, q.concurrency_limits) == (False, None, {})
    q.suspend()
    q.set_rate_limit(10, "1m")
    q.set_concurrency_limit("tenant", 2)
    q.set_concurrency_limit(None, 5)
    assert (q.is_suspended, q.rate_limit, q.concurrency_limits) == (True, (10, 60.0), {"tenant": 2, None: 5})
    q.resume()
    q.remove_rate_limit()
    q.set_concurrency_limit("tenant", None)
    assert (q.is_suspended, q.rate_limit, q.concurrency_limits) == (False, None, {None: 5})
    with pytest.raises(ValueError, match="max_jobs"):
        q.set_rate_limit(0, 1)


def test_every_queue_is_suspended_and_resumed_at_once(api: Api) -> None:
    try:
        api.suspend_all(True)
        assert api.all_suspended() is True
    finally:
        api.suspend_all(False)
    assert api.all_suspended() is False


def test_running_workers_are_listed(api: Api, url: str, qname: str) -> None:
    name = f"parity-{qname}"
    registration.register(clusterq.connect(url), name, [qname], {"processed": 3, "pool": "solo"})
    try:
        listed = {w.name: w for w in api.workers()}
        assert listed[name].queues == [qname] and listed[name].processed == 3
    finally:
        registration.unregister(clusterq.connect(url), name)
    assert name not in {w.name for w in api.workers()}


# --- groups ------------------------------------------------------------------------------------------

def test_a_group_counts_its_members_and_releases_its_callback(api: Api, qname: str, url: str) -> None:
    home, other = api.queue(qname), api.queue(f"{qname}-other")  # the callback runs in home
    group = api.create_group(home)
    group.enqueue(other, "jobs.add", 1, 2)
    group.enqueue_many(other, [other.prepare_data("jobs.fail"), other.prepare_data("jobs.noop")])
    callback = group.close("jobs.noop")
    assert callback.get_status() == JobStatus.DEFERRED
    with pytest.raises(InvalidJobOperation, match="closed"):
        group.enqueue(other, "jobs.noop")
    work(url, f"{qname}-other")
    status = group.status()
    assert (status.size, status.ended, status.failed, status.closed) == (3, 3, 1, True)
    assert status.callback == callback.handle and callback.get_status() == JobStatus.QUEUED
    work(url, qname)
    assert group.wait(timeout_s=5) and group.status().done


def test_jobs_written_by_one_api_are_read_and_changed_by_the_other(api: Api, qname: str, url: str,
                                                                   tmp_path: Path) -> None:
    q = api.queue(qname)
    job = q.enqueue("jobs.add", 20, b=22, description="adds", job_id="shared")
    other = clusterq.Job.fetch(job.handle, url)  # the sync API reads what either wrote
    assert (other.func_name, other.args, other.kwargs, other.description) == ("jobs.add", [20], {"b": 22}, "adds")
    work(url, qname)
    assert job.return_value() == 42 and job.get_status() == JobStatus.FINISHED
    assert [r.return_value for r in job.results()] == [42]


def test_a_full_server_refuses_an_enqueue_with_the_same_clear_error(api: Api, qname: str,
                                                                     clusterq_topology: Topology) -> None:
    refused = rf"enqueue to queue {re.escape(repr(qname))} failed: the server reached maxmemory"
    with full(clusterq_topology, Queue(qname, api.url)), pytest.raises(ServerError, match=refused):
        api.queue(qname).enqueue("jobs.noop")


# --- merged from main: hooks, RQ names, checks at the call -----------------------------------------------

class Traceparent(Hook):
    def before_enqueue(self, job: EnqueueInfo) -> None:
        job.headers["traceparent"] = f"00-{job.id}-01"


def test_before_enqueue_hooks_give_every_new_job_headers(api: Api, qname: str) -> None:
    q = api.queue(qname, hooks=[Traceparent()])
    jobs = [q.enqueue("jobs.noop"), q.enqueue_in(60, "jobs.noop"), q.enqueue("jobs.noop", debounce=("k", 60)),
            *q.enqueue_many([q.prepare_data("jobs.noop")])]
    for job in jobs:
        assert api.fetch_job(job.handle).headers == {"traceparent": f"00-{job.id}-01"}
    assert api.fetch_job(api.queue(qname).enqueue("jobs.noop").handle).headers == {}


def test_a_job_is_found_by_its_id_alone_as_rq_finds_it(api: Api, qname: str) -> None:
    job = api.queue(qname).enqueue("jobs.add", 1, 2)
    found = api.fetch_job(job.id)  # no queue, no handle: looked up through the known queues
    assert found.handle == job.handle and found.get_id() == job.id
    assert found.created_at == found.enqueued_at is not None
    with pytest.raises(NoSuchJobError, match="known queues"):
        api.fetch_job("never-enqueued")
    many = api.fetch_many([job.id, "never-enqueued", job.handle])
    assert [None if j is None else j.handle for j in many] == [job.handle, None, job.handle]
    Job = api.job_class()
    assert Job.key_for(job.handle) == Job.key_for(job.id, queue=qname) == job.key
    with pytest.raises(TypeError, match="needs the job's queue"):
        Job.key_for(job.id)


def test_retries_left_can_be_lowered_and_a_failure_is_then_final(api: Api, qname: str, url: str) -> None:
    job = api.queue(qname).enqueue("jobs.fail", retry=clusterq.Retry(max=3))
    assert job.retries_left == 3
    api.set_retries_left(job, 0)
    with pytest.raises(ValueError, match="retries_left"):
        api.set_retries_left(job, -1)
    work(url, qname)
    assert job.get_status() == JobStatus.FAILED and job.retries == 0


def test_rq_names_clusterq_does_not_have_are_refused_by_name(api: Api, qname: str) -> None:
    q = api.queue(qname)
    with pytest.raises(AttributeError, match="no single Redis key"):
        _ = _unwrap(q).key
    with pytest.raises(TypeError, match="job_class"):
        api.queue(qname, job_class=object)
    with pytest.raises(TypeError, match=r"unknown enqueue option\(s\) \['webhooks'\]"):
        q.prepare_data("jobs.noop", webhooks=["x"])
    with pytest.raises(TypeError, match="webhooks"):
        q.enqueue_call("jobs.noop", webhooks=["x"])
    assert q.count == 0


def test_times_and_durations_are_checked_where_they_are_written(api: Api, qname: str) -> None:
    q = api.queue(qname)
    assert q.enqueue_at("2000-01-01T00:00:00+00:00", "jobs.noop").get_status() == JobStatus.SCHEDULED
    with pytest.raises(ValueError, match="ISO 8601"):
        q.enqueue_at("tomorrow", "jobs.noop")
    with pytest.raises(ValueError, match="finite"):
        q.enqueue_in(float("inf"), "jobs.noop")
    with pytest.raises(ValueError, match="ttl"):
        q.enqueue("jobs.noop", ttl=float("nan"))
    with pytest.raises(ValueError, match="result_ttl"):
        q.prepare_data("jobs.noop", result_ttl=1e300)
    with pytest.raises(ValueError, match="max_attempts"):
        api.queue(qname, max_attempts=True)
    assert q.count == 0 and q.scheduled_job_registry.count == 1


def test_queue_and_registry_reads_the_dashboard_uses(api: Api, qname: str) -> None:
    q = api.queue(qname)
    assert not q.exists()
    job = q.enqueue_in(3600, "jobs.noop")
    assert q.exists() and q.retried_count == 0
    scheduled = q.scheduled_job_registry
    assert scheduled.overdue_count() == 0
    assert scheduled.score_time(job.id) == pytest.approx(job.enqueued_at.timestamp() + 3600, abs=5)
    assert scheduled.score_time("absent") is None
