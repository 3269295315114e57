"""RQ's ``@job`` decorator and a queue's synchronous mode (``Queue(is_async=False)``) on every topology:
``f.delay(...)`` enqueues with the decorator's options; the function stays callable; the queue opens on
first use; in synchronous mode enqueue runs the job at once and records what a worker would."""

from __future__ import annotations

from pathlib import Path

import pytest

import control_jobs
from clusterq import ConnectionFailed, Job, JobStatus, Queue, Retry, Worker
from clusterq.api.decorators import job


def _work(q: Queue) -> int:
    return Worker([q], q.connection, pool="solo", install_signal_handlers=False).work(burst=True)


# --- @job --------------------------------------------------------------------------------------------

def test_delay_enqueues_a_call_with_the_decorators_options(url: str, qname: str) -> None:
    add = job(qname, connection=url, timeout=30, result_ttl=600, description="adds", meta={"by": "test"},
              retry=Retry(max=2))(control_jobs.plain_add)
    assert add is control_jobs.plain_add and add(2, b=3) == 5, "the function itself is returned, callable"
    queued = add.delay(20, b=22)
    assert isinstance(queued, Job) and queued.queue_name == qname
    assert queued.get_status() == JobStatus.QUEUED
    assert (queued.func_name, queued.args, queued.kwargs) == ("control_jobs.plain_add", [20], {"b": 22})
    assert (queued.timeout, queued.result_ttl, queued.description, queued.meta) == (30, 600, "adds", {"by": "test"})
    assert _work(Queue(qname, url)) == 1
    assert queued.return_value() == 42


def test_delay_takes_job_id_and_at_front_and_passes_everything_else_to_the_function(url: str, qname: str) -> None:
    q = Queue(qname, url)
    add = job(q)(control_jobs.plain_add)  # a Queue: its connection is used
    first = add.delay(1, job_id="first-one")
    front = add.delay(2, at_front=True)
    again = add.delay(99, job_id="first-one")
    assert first.id == "first-one" and again == first, "an existing id is left as it is"
    assert q.get_job_ids() == [front.id, first.id]
    _work(q)
    assert (front.return_value(), first.return_value()) == (2, 1)


def test_the_decorators_callbacks_run_and_delay_takes_depends_on(url: str, qname: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    record = job(qname, connection=url, on_success="jobs.cb_success")(control_jobs.record_order)
    first = record.delay(str(out), "first")
    second = record.delay(str(out), "second", depends_on=first, at_front=True)
    assert second.get_status() == JobStatus.DEFERRED, "depends_on is the enqueue's, not the function's"
    _work(Queue(qname, url))
    assert out.read_text().splitlines() == ["first", f"on_success {first.id} first ping=True",
                                            "second", f"on_success {second.id} second ping=True"]
    with pytest.raises(TypeError, match="queue_class"):
        job(qname, queue_class=Queue)


def test_decorating_needs_no_server_and_bad_options_are_refused_at_once(qname: str) -> None:
    unreachable = job(qname, connection="redis://127.0.0.1:1/0")(control_jobs.plain_add)
    assert unreachable(1, 2) == 3
    with pytest.raises(ConnectionFailed):
        unreachable.delay(1, 2)
    with pytest.raises(TypeError, match="queue name"):
        job(42)  # type: ignore[arg-type]
    assert hasattr(control_jobs.decorated_add, "delay"), "decorated at import time, with no server"


def test_delay_on_a_synchronous_queue_runs_the_job_at_once(url: str, qname: str) -> None:
    add = job(Queue(qname, url, is_async=False))(control_jobs.plain_add)
    done = add.delay(4, 5)
    assert done.get_status() == JobStatus.FINISHED and done.return_value() == 9


# --- Queue(is_async=False) ---------------------------------------------------------------------------

def test_a_synchronous_queue_runs_each_job_at_once_and_records_it_as_a_worker_would(url: str, qname: str) -> None:
    q = Queue(qname, url, is_async=False)
    ok = q.enqueue(control_jobs.whoami, 1)
    seen = ok.return_value()
    assert ok.get_status() == JobStatus.FINISHED
    assert (seen["id"], seen["status"], seen["args"]) == (ok.id, "started", [1]), "get_current_job() works"
    assert ok.attempts == 1 and ok.started_at is not None and ok.ended_at is not None
    assert ok.worker_name.startswith("sync:")
    bad = q.enqueue("jobs.fail", "at once")  # no exception here: the job fails, as on a worker
    assert bad.get_status() == JobStatus.FAILED and "ValueError: at once" in bad.exc_info
    assert ok.id in q.finished_job_registry and bad.id in q.failed_job_registry
    assert q.count == 0 and q.started_job_registry.count == 0
    progress = q.enqueue(control_jobs.progress_steps, 2)
    assert progress.progress is not None and progress.progress.message == "step 2 of 2"


def test_a_synchronous_queue_runs_only_its_own_jobs_and_leaves_no_trace_in_the_list(url: str, qname: str,
                                                                                    tmp_path: Path) -> None:
    path = tmp_path / "order"
    waiting = Queue(qname, url).enqueue(control_jobs.record_order, str(path), "waiting")
    sync = Queue(qname, url, is_async=False)
    ran = sync.enqueue_many([sync.prepare_data(control_jobs.record_order, (str(path), f"sync-{i}")) for i in range(3)])
    assert path.read_text().split() == ["sync-0", "sync-1", "sync-2"], "in order, and not the waiting job"
    assert all(j.get_status() == JobStatus.FINISHED for j in ran)
    assert waiting.get_status() == JobStatus.QUEUED and sync.count == 1
    again = sync.enqueue(control_jobs.record_order, str(path), "again", job_id=ran[0].id)
    assert again == ran[0] and path.read_text().split()[-1] == "sync-2", "an existing id does not run again"
    assert _work(Queue(qname, url)) == 1, "a worker finds only the waiting job; the others' ids are tombstones"
    assert path.read_text().split()[-1] == "waiting" and sync.count == 0
    assert sync.connection.hget(sync.keys.stats, "tomb") in (None, b"0", "0")
