"""RQ's names as RQ applications use them (issue 15), on every topology: each one works as in RQ, or is
refused with an error saying what to write instead (docs/migrating-from-rq.md lists them all)."""

from __future__ import annotations

import threading
import time

import pytest
import redis

from clusterq import (
    InvalidJobId,
    Job,
    JobStatus,
    JSONSerializer,
    NoSuchJobError,
    Queue,
    Retry,
    ServerError,
    Worker,
    connect,
    parse_url,
)
from clusterq.exceptions import explain_server_error
from clusterq.registry import (
    CanceledJobRegistry,
    DeferredJobRegistry,
    FailedJobRegistry,
    FinishedJobRegistry,
    ScheduledJobRegistry,
    StartedJobRegistry,
)


def _burst(url: str, *queues: Queue) -> int:
    return Worker(list(queues), url, pool="solo", install_signal_handlers=False,
                  maintenance_interval_s=0.2).work(burst=True)


def test_job_fetch_finds_a_job_by_its_id_alone_through_the_known_queues(url: str, qname: str) -> None:
    q = Queue(qname, url)
    Queue(qname + "-other", url).enqueue("rq_compat_tasks.add", 0, 0)  # another known queue
    job = q.enqueue("rq_compat_tasks.add", 1, 2)
    fetched = Job.fetch(job.id, connection=url)
    assert fetched == job and fetched.get_id() == job.id and fetched.args == [1, 2]
    assert Job.fetch(job.handle, url) == job and Job.fetch(job.id, url, queue=qname) == job
    with pytest.raises(NoSuchJobError, match="known queues"):
        Job.fetch("no-such-id", connection=url)


def test_an_id_in_two_queues_is_refused_with_the_queues_named(url: str, qname: str) -> None:
    Queue(qname, url).enqueue("rq_compat_tasks.add", 1, 2, job_id="same")
    Queue(qname + "-b", url).enqueue("rq_compat_tasks.add", 1, 2, job_id="same")
    with pytest.raises(InvalidJobId, match="pass queue="):
        Job.fetch("same", connection=url)


def test_fetch_many_key_for_created_at_and_get_id(url: str, qname: str) -> None:
    q = Queue(qname, url)
    a, b = q.enqueue("rq_compat_tasks.add", 1, 1), q.enqueue("rq_compat_tasks.add", 2, 2)
    assert Job.fetch_many([a.id, "missing", b.handle], connection=url) == [a, None, b]
    assert Job.key_for(a.id, queue=qname) == a.key == Job.key_for(a.handle)
    with pytest.raises(TypeError, match="needs the job's queue"):
        Job.key_for(a.id)
    assert a.created_at is not None and a.created_at == a.enqueued_at and a.get_id() == a.id


def test_prepare_data_called_on_the_class_as_rqs_docs_do(url: str, qname: str) -> None:
    q = Queue(qname, url)
    jobs = q.enqueue_many([
        Queue.prepare_data("rq_compat_tasks.add", (1, 2), job_id="first"),
        q.prepare_data("rq_compat_tasks.add", [3], {"b": 4}, timeout=30),
    ])
    _burst(url, q)
    assert [job.return_value() for job in jobs] == [3, 7] and jobs[0].id == "first"
    with pytest.raises(TypeError, match=r"unknown enqueue option\(s\) \['webhooks'\]"):
        Queue.prepare_data("rq_compat_tasks.add", (1, 2), webhooks=["x"])
    with pytest.raises(TypeError, match="at_front=True to enqueue_many"):
        Queue.prepare_data("rq_compat_tasks.add", (1, 2), at_front=True)
    with pytest.raises(TypeError, match="unknown enqueue option"):
        q.enqueue_call("rq_compat_tasks.add", (1, 2), rate_limit=3)


def test_rqs_registry_classes_from_a_queue_or_a_name(url: str, qname: str) -> None:
    q = Queue(qname, url)
    failed = q.enqueue("rq_compat_tasks.fail")
    finished = q.enqueue("rq_compat_tasks.add", 1, 1)
    canceled = q.enqueue("rq_compat_tasks.add", 2, 2)
    canceled.cancel()
    q.enqueue_in(3600, "rq_compat_tasks.add", 3, 3)
    q.enqueue("rq_compat_tasks.add", 4, 4, depends_on=q.enqueue_in(3600, "rq_compat_tasks.add", 0, 0))
    _burst(url, q)
    registry = FailedJobRegistry(queue=q)
    assert registry.get_job_ids() == [failed.id] and failed in registry
    assert FailedJobRegistry(qname, connection=url).count == 1
    assert FinishedJobRegistry(queue=q).get_job_ids() == [finished.id]
    assert CanceledJobRegistry(queue=q).get_job_ids() == [canceled.id]
    assert ScheduledJobRegistry(queue=q).count == 2 and DeferredJobRegistry(queue=q).count == 1
    assert StartedJobRegistry(queue=q).count == 0
    assert registry.requeue(failed) == 1 and failed.get_status() == JobStatus.QUEUED  # a Job, as RQ takes
    with pytest.raises(TypeError, match="one Job class"):
        FailedJobRegistry(queue=q, job_class=Job)  # type: ignore[arg-type]


def test_the_serializer_class_is_accepted_as_rq_takes_it(url: str, qname: str) -> None:
    q = Queue(qname, url, serializer=JSONSerializer)  # type: ignore[arg-type]
    job = q.enqueue("rq_compat_tasks.add", 2, 3)
    _burst(url, q)
    assert job.return_value() == 5


def test_retries_left_zero_set_inside_the_job_makes_its_failure_final(url: str, qname: str) -> None:
    q = Queue(qname, url)
    job = q.enqueue("rq_compat_tasks.give_up", retry=Retry(max=3))
    assert job.retries_left == 3
    _burst(url, q)
    assert job.get_status() == JobStatus.FAILED and "not worth retrying" in (job.exc_info or "")
    assert job.retries == 0 and job.retries_left == 0


def test_retries_left_set_from_outside_lowers_what_the_retry_allows(url: str, qname: str) -> None:
    q = Queue(qname, url)
    job = q.enqueue("rq_compat_tasks.fail", retry=Retry(max=5))
    job.retries_left = 1
    _burst(url, q)
    assert job.get_status() == JobStatus.FAILED and job.retries == 1 and job.retries_left == 0
    with pytest.raises(ValueError, match="int >= 0"):
        job.retries_left = -1


def test_queue_key_is_refused_rather_than_silently_wrong(url: str, qname: str) -> None:
    q = Queue(qname, url)
    q.enqueue("rq_compat_tasks.add", 1, 1)
    with pytest.raises(AttributeError, match=r"Use q\.count"):
        connect(url).llen(q.key)
    assert q.count == 1


def test_job_class_is_refused_saying_what_replaces_it(url: str) -> None:
    with pytest.raises(TypeError, match="callbacks"):
        Queue("default", url, job_class=Job)  # type: ignore[arg-type]


def test_a_moved_reply_says_to_connect_as_a_cluster() -> None:
    # what a plain client on a cluster node gets when the node check could not run (INFO not allowed)
    error = explain_server_error(redis.exceptions.MovedError("6868 127.0.0.1:48653"), "enqueue to queue 'q'")
    assert isinstance(error, ServerError) and "redis+cluster://host:port" in str(error)


def test_a_url_without_a_host_means_localhost_as_in_redis_py() -> None:
    assert parse_url("redis://").hosts == [("localhost", 6379)]
    assert parse_url("redis:///2").db == 2


@pytest.mark.parametrize("clusterq_topology", ["cluster"], indirect=True)
def test_a_plain_redis_client_on_a_cluster_node_is_used_as_a_cluster_client(url: str, qname: str) -> None:
    host, port = parse_url(url).hosts[0]
    plain = redis.Redis(host=host, port=port)
    names = [f"{qname}-{i}" for i in range(8)]  # several slots: most are not served by that node
    jobs = [Queue(name, plain).enqueue("rq_compat_tasks.add", i, 1) for i, name in enumerate(names)]
    assert [Job.fetch(job.id, connection=plain).args for job in jobs] == [[i, 1] for i in range(8)]


# --- latest_result(timeout=) is woken when the job is canceled ------------------------------------

def _wait_in_thread(job: Job) -> tuple[threading.Thread, list[object]]:
    box: list[object] = []
    thread = threading.Thread(target=lambda: box.append(job.latest_result(timeout=600)), daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not connect(job._store.client).hexists(job.key, "hw") and time.monotonic() < deadline:
        time.sleep(0.01)  # "hw" set: the waiter subscribed and looked
    return thread, box


def test_latest_result_is_woken_when_the_job_is_canceled(url: str, qname: str) -> None:
    job = Queue(qname, url).enqueue("rq_compat_tasks.add", 1, 2)
    thread, box = _wait_in_thread(job)
    job.cancel()
    thread.join(60)  # without the wake-up it would wait its whole 600 s
    assert not thread.is_alive() and box == [None] and job.get_status() == JobStatus.CANCELED


def test_latest_result_is_woken_when_a_failed_parent_cancels_the_job(url: str, qname: str) -> None:
    q = Queue(qname, url)
    parent = q.enqueue("rq_compat_tasks.fail")
    child = q.enqueue("rq_compat_tasks.add", 1, 2, depends_on=parent)
    thread, box = _wait_in_thread(child)
    _burst(url, q)
    thread.join(60)
    assert not thread.is_alive() and box == [None] and child.get_status() == JobStatus.CANCELED
