"""get_current_job() inside jobs, in every pool, on every topology: the job sees itself and
can use its own connection (forked children open theirs), the value is per job (threads, asyncio tasks),
and nothing leaks outside a job."""

from __future__ import annotations

import pytest

import control_jobs
from clusterq import JobStatus, Queue, Worker, connect, get_current_job, set_progress
from clusterq.worker.pools.factory import POOL_KINDS


def _burst(connection, queue: Queue, kind: str, concurrency: int = 2) -> Worker:
    worker = Worker([queue], connection, pool=kind, concurrency=concurrency, install_signal_handlers=False)
    worker.work(burst=True)
    return worker


@pytest.mark.parametrize("kind", POOL_KINDS)
def test_every_pool_gives_each_job_its_own_current_job_with_a_usable_connection(url: str, qname: str,
                                                                                 kind: str) -> None:
    q = Queue(qname, url)
    plain = [q.enqueue(control_jobs.whoami, i) for i in range(6)]
    coros = [q.enqueue(control_jobs.whoami_async, i) for i in range(4)]
    _burst(url, q, kind, concurrency=3)
    for job in plain + coros:
        seen = job.return_value()
        assert job.get_status() == JobStatus.FINISHED, job.exc_info
        assert (seen["id"], seen["queue"], seen["handle"]) == (job.id, qname, job.handle)
        assert seen["status"] == "started", "the job read its own record while it ran"
        assert seen["args"] == job.args
    assert {j.return_value()["func"] for j in plain} == {"control_jobs.whoami"}


@pytest.mark.parametrize("kind", ["process", "fork"])
def test_a_child_reuses_a_client_object_when_the_worker_was_given_no_url(url: str, qname: str, kind: str) -> None:
    client = connect(url)
    q = Queue(qname, client)
    jobs = [q.enqueue(control_jobs.whoami) for _ in range(3)]
    _burst(None, q, kind)  # the worker takes the queue's client
    assert all(j.return_value()["status"] == "started" for j in jobs)


def test_get_current_job_is_none_outside_a_job_and_set_progress_refuses(url: str, qname: str) -> None:
    assert get_current_job() is None
    with pytest.raises(RuntimeError, match="outside a running job"):
        set_progress(0.5)
    q = Queue(qname, url)
    job = q.enqueue(control_jobs.current_job_is_none_here)
    assert control_jobs.current_job_is_none_here() is True
    _burst(url, q, "solo")
    assert job.return_value() is False, "inside the job it is set"
    assert get_current_job() is None, "and it is reset after the job, in the worker's own thread"
