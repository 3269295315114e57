"""The producer API on every topology: enqueue, fetch, status, meta, cancel, delete, requeue, counts,
paging, registries, and clear errors for input that cannot work."""

from __future__ import annotations

import time

import pytest

import jobs
from clusterq import (
    InvalidJobId,
    InvalidJobOperation,
    InvalidQueueName,
    Job,
    JobStatus,
    NoSuchJobError,
    Queue,
    SerializationError,
    Worker,
    connect,
)
from clusterq.exceptions import FunctionNotFound

pytestmark = pytest.mark.compat  # also run against the second server engine


def _work(*queues: Queue) -> int:
    return Worker(list(queues), queues[0].connection, install_signal_handlers=False).work(burst=True)


def test_an_enqueued_job_can_be_found_and_read_back(url: str, qname: str) -> None:
    q = Queue(qname, url)
    job = q.enqueue(jobs.add, 1, b=2, description="adds", meta={"owner": "me"}, job_timeout="2m")
    fetched = q.fetch_job(job.id)
    assert fetched is not None
    assert fetched.func_name == "jobs.add"
    assert (fetched.args, fetched.kwargs) == ([1], {"b": 2})
    assert fetched.get_status() == JobStatus.QUEUED
    assert fetched.description == "adds"
    assert fetched.meta == {"owner": "me"}
    assert fetched.timeout == 120.0
    assert fetched.enqueued_at is not None and fetched.started_at is None
    assert q.count == 1 and len(q) == 1 and q.get_job_ids() == [job.id]


def test_a_job_handle_finds_the_job_from_the_string_alone(url: str, qname: str) -> None:
    job = Queue(qname, url).enqueue("jobs.add", 2, 3)
    found = Job.fetch(job.handle, url)
    assert found == job and found.args == [2, 3]
    assert Job.fetch(job.id, url, queue=qname) == job
    with pytest.raises(NoSuchJobError):
        Job.fetch(f"{job.handle}-nope", url)
    with pytest.raises(NoSuchJobError, match="known queues"):  # an id alone is looked up (RQ's form)
        Job.fetch("no-slash-here", url)


def test_a_finished_job_exposes_its_return_value_and_registries(url: str, qname: str) -> None:
    q = Queue(qname, url)
    ok, bad = q.enqueue("jobs.add", 20, 22), q.enqueue("jobs.fail", "nope")
    assert _work(q) == 2
    assert ok.get_status() == JobStatus.FINISHED and ok.return_value() == 42
    assert ok.started_at is not None and ok.ended_at is not None and ok.attempts == 1
    assert bad.get_status() == JobStatus.FAILED and bad.return_value() is None
    assert "ValueError: nope" in bad.exc_info and "Traceback" in bad.exc_info
    assert q.finished_job_registry.get_job_ids() == [ok.id] and ok.id in q.finished_job_registry
    assert q.failed_job_registry.get_job_ids() == [bad.id]
    assert q.started_job_registry.count == 0 and q.count == 0


def test_result_ttl_zero_drops_the_record_and_minus_one_keeps_it(url: str, qname: str) -> None:
    q = Queue(qname, url)
    gone, kept, default = q.enqueue("jobs.noop", result_ttl=0), q.enqueue("jobs.noop", result_ttl=-1), \
        q.enqueue("jobs.noop")
    _work(q)
    assert q.fetch_job(gone.id) is None
    assert q.connection.ttl(kept.key) == -1 and kept.get_status() == JobStatus.FINISHED
    assert 0 < q.connection.ttl(default.key) <= 500
    assert q.finished_job_registry.count == 2


def test_meta_is_saved_without_touching_other_fields(url: str, qname: str) -> None:
    q = Queue(qname, url)
    job = q.enqueue("jobs.noop")
    job.meta["progress"] = 50
    job.save_meta()
    again = q.fetch_job(job.id)
    assert again.get_meta() == {"progress": 50} and again.get_status() == JobStatus.QUEUED
    job.delete()
    with pytest.raises(NoSuchJobError):
        job.save_meta()
    assert q.fetch_job(job.id) is None, "saving meta must not resurrect a deleted job"


def test_enqueueing_an_existing_job_id_creates_no_second_job(url: str, qname: str) -> None:
    q = Queue(qname, url)
    first = q.enqueue("jobs.add", 1, 1, job_id="order-42")
    again = q.enqueue("jobs.add", 9, 9, job_id="order-42")
    assert again.id == first.id and q.count == 1
    assert q.fetch_job("order-42").args == [1, 1]


def test_canceled_jobs_never_run_and_leave_the_count(url: str, qname: str, tmp_path) -> None:
    q = Queue(qname, url)
    marker = tmp_path / "ran"
    keep = q.enqueue("jobs.record", str(marker), "kept")
    drop = q.enqueue("jobs.record", str(marker), "dropped")
    drop.cancel()
    assert q.count == 1 and drop.get_status() == JobStatus.CANCELED
    assert drop.id in q.canceled_job_registry
    with pytest.raises(InvalidJobOperation):
        drop.cancel()
    _work(q)
    assert marker.read_text().split() == ["kept"] and keep.is_finished
    assert q.count == 0


def test_deleted_jobs_disappear_everywhere(url: str, qname: str) -> None:
    q = Queue(qname, url)
    waiting, done = q.enqueue("jobs.noop"), q.enqueue("jobs.fail")
    _work(q)
    done.delete()
    assert q.fetch_job(done.id) is None and q.failed_job_registry.count == 0
    waiting = q.enqueue("jobs.noop")
    waiting.delete()
    assert q.count == 0 and _work(q) == 0
    waiting.delete()  # deleting twice is fine


def test_a_failed_job_can_be_requeued_and_then_succeed(url: str, qname: str) -> None:
    q = Queue(qname, url)
    job = q.enqueue("jobs.add", 1)  # wrong arguments: fails
    _work(q)
    assert job.is_failed and "wrong arguments" in job.exc_info
    with pytest.raises(InvalidJobOperation):
        q.enqueue("jobs.noop", job_id="fresh").requeue()  # a queued job cannot be requeued
    job.requeue()
    assert job.get_status() == JobStatus.QUEUED and q.failed_job_registry.count == 0
    assert q.failed_job_registry.requeue("not-there") == 0


def test_enqueue_many_keeps_order_and_at_front_jumps_the_line(url: str, qname: str, tmp_path) -> None:
    q = Queue(qname, url)
    out = tmp_path / "order"
    q.enqueue_many([q.prepare_data("jobs.record", (str(out), i)) for i in range(1200)])
    q.enqueue("jobs.record", str(out), "first", at_front=True)
    assert q.count == 1201
    ids = q.get_job_ids(0, 3)
    assert q.fetch_job(ids[0]).args == [str(out), "first"]
    assert [q.fetch_job(i).args[1] for i in ids[1:]] == [0, 1]
    assert len(list(q.iter_job_ids(page=500))) == 1201
    Worker([q], url, pool="solo", install_signal_handlers=False, max_batch=1).work(burst=True)
    lines = out.read_text().split()
    assert lines[0] == "first" and lines[1:] == [str(i) for i in range(1200)]


def test_paging_is_bounded(url: str, qname: str) -> None:
    q = Queue(qname, url)
    q.enqueue_many([q.prepare_data("jobs.noop") for _ in range(30)])
    assert len(q.get_job_ids(10, 15)) == 15 and len(q.get_job_ids(25, 100)) == 5
    with pytest.raises(ValueError):
        q.get_job_ids(0, 1_000_000)
    with pytest.raises(ValueError):
        q.finished_job_registry.get_job_ids(0, -1)


def test_empty_and_delete_remove_jobs_in_batches(url: str, qname: str) -> None:
    q = Queue(qname, url)
    q.enqueue_many([q.prepare_data("jobs.noop") for _ in range(2500)])
    Worker([q], url, install_signal_handlers=False, max_batch=1).work(max_jobs=1)  # runs one noop
    waiting = q.enqueue("jobs.fail")
    assert q.empty() == 2500 and q.count == 0
    assert q.fetch_job(waiting.id) is None, "emptying deletes the waiting jobs' records"
    assert q.finished_job_registry.count == 1
    assert qname in [x.name for x in Queue.all(url)]
    q.delete()
    assert qname not in [x.name for x in Queue.all(url)]
    assert q.finished_job_registry.count == 0


def test_ttl_discards_a_job_that_waited_too_long(url: str, qname: str) -> None:
    q = Queue(qname, url)
    stale = q.enqueue("jobs.noop", ttl=1)
    fresh = q.enqueue("jobs.noop", ttl=60)
    deadline = time.monotonic() + 10
    while q.fetch_job(stale.id) is not None:  # the server expires it one second in
        assert time.monotonic() < deadline, "the job outlived its ttl"
        time.sleep(0.05)
    assert _work(q) == 1 and fresh.is_finished
    assert q.connection.ttl(fresh.key) > 60, "once run, a job's record follows result_ttl, not ttl"


def test_arguments_json_cannot_carry_are_refused_at_enqueue(url: str, qname: str) -> None:
    q = Queue(qname, url)
    with pytest.raises(SerializationError, match=r"type set at \[0\]\[1\]"):
        q.enqueue("jobs.echo", 1, {2, 3})
    with pytest.raises(SerializationError, match="dict key of type int"):
        q.enqueue("jobs.echo", {1: "a"})
    assert q.count == 0


def test_functions_a_worker_cannot_import_are_refused_at_enqueue(url: str, qname: str) -> None:
    q = Queue(qname, url)
    with pytest.raises(FunctionNotFound, match="module-level"):
        q.enqueue(lambda: 1)

    def local() -> None:
        return None

    with pytest.raises(FunctionNotFound):
        q.enqueue(local)


@pytest.mark.parametrize("bad", ["", "x" * 1025])
def test_bad_queue_names_are_refused(url: str, bad: str) -> None:
    with pytest.raises(InvalidQueueName):
        Queue(bad, url)


def test_bad_job_ids_and_options_are_refused(url: str, qname: str) -> None:
    q = Queue(qname, url)
    with pytest.raises(InvalidJobId):
        q.enqueue("jobs.noop", job_id="")
    with pytest.raises(InvalidJobId):
        q.enqueue("jobs.noop", job_id="x" * 300)
    with pytest.raises(ValueError, match="job_timeout"):
        q.enqueue("jobs.noop", job_timeout="soon")
    with pytest.raises(ValueError, match="max_attempts"):
        q.enqueue("jobs.noop", max_attempts=0)
    with pytest.raises(TypeError, match="not both"):
        q.enqueue("jobs.echo", 1, args=(2,))
    assert q.count == 0


def test_hostile_queue_names_work_end_to_end(url: str) -> None:
    names = ["{", "}", "}{", "{}", "队列", "a" * 1024]
    queues = [Queue(n, url) for n in names]
    handles = [q.enqueue("jobs.add", 1, 1).handle for q in queues]
    Worker(queues, url, install_signal_handlers=False).work(burst=True)
    assert [Job.fetch(h, url).return_value() for h in handles] == [2] * len(names)


def test_args_and_kwargs_keywords_pass_colliding_names(url: str, qname: str) -> None:
    q = Queue(qname, url)
    job = q.enqueue("jobs.echo", args=(1,), kwargs={"job_id": "not an option", "ttl": 5})
    _work(q)
    assert job.return_value() == {"args": [1], "kwargs": {"job_id": "not an option", "ttl": 5}}


class Tasks:
    @staticmethod
    def double(x):
        return 2 * x


def test_a_run_of_canceled_jobs_at_the_head_does_not_stall_the_queue(url: str, qname: str) -> None:
    q = Queue(qname, url)
    doomed = q.enqueue_many([q.prepare_data("jobs.noop") for _ in range(1500)])
    for job in doomed:
        job.cancel()
    real = q.enqueue("jobs.add", 1, 2)
    assert q.count == 1
    assert _work(q) == 1 and real.return_value() == 3
    assert q.count == 0 and q.connection.llen(q.keys.pending) == 0


def test_requeueing_a_job_canceled_while_queued_runs_it_once(url: str, qname: str, tmp_path) -> None:
    q = Queue(qname, url)
    out = tmp_path / "ran"
    job = q.enqueue("jobs.record", str(out), "once")
    job.cancel()
    job.requeue()
    assert q.count == 1 and job.get_status() == JobStatus.QUEUED
    assert _work(q) == 1
    assert out.read_text().split() == ["once"] and q.count == 0


def test_rq_options_clusterq_lacks_are_refused_not_passed_to_the_job(url: str, qname: str) -> None:
    q = Queue(qname, url)
    for option in ("pipeline", "group_id"):
        with pytest.raises(TypeError, match="not supported"):
            q.enqueue("jobs.echo", **{option: 1})
    job = q.enqueue("jobs.echo", kwargs={"retry": 1})
    assert job.kwargs == {"retry": 1}
    assert q.enqueue_call("jobs.noop", timeout=30).timeout == 30


def test_a_client_with_decoded_responses_reads_jobs_too(url: str, qname: str) -> None:
    decoded = connect(url, decode_responses=True)
    q = Queue(qname, decoded)
    job = q.enqueue("jobs.add", 2, 2)
    assert job.get_status() == JobStatus.QUEUED and job.args == [2, 2]
    _work(Queue(qname, url))
    assert job.return_value() == 4


def test_static_methods_are_enqueued_by_an_importable_path(url: str, qname: str) -> None:
    q = Queue(qname, url)
    job = q.enqueue(Tasks.double, 21)
    assert job.func_name.endswith(":Tasks.double")
    _work(q)
    assert job.return_value() == 42


def test_a_job_record_with_an_unknown_status_fails_with_the_reason(url: str, qname: str) -> None:
    q = Queue(qname, url)
    bad, good = q.enqueue("jobs.noop"), q.enqueue("jobs.add", 1, 1)
    q.connection.hset(bad.key, "s", "weird")
    assert _work(q) == 1 and good.return_value() == 2
    assert bad.get_status() == JobStatus.FAILED and "unknown status 'weird'" in bad.exc_info
