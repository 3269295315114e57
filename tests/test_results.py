"""Results on every topology: the latest result and a bounded history per job (RQ's ``Job.results()``),
kept exactly as long as the record, and ``latest_result(timeout=)`` that waits without polling."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
import redis

from clusterq import AsyncQueue, Job, JobStatus, NoSuchJobError, Queue, Result, ResultType, Retry, Worker, connect
from clusterq.state import store as T
from clusterq.state import transitions as TR


def _burst(url: str, q: Queue) -> int:
    return Worker([q], url, pool="solo", install_signal_handlers=False, maintenance_interval_s=0.2).work(burst=True)


def test_a_job_run_once_has_one_result_and_no_history_key(url: str, qname: str) -> None:
    q = Queue(qname, url)
    job = q.enqueue("jobs.add", 2, 3)
    assert job.results() == [] and job.latest_result() is None
    _burst(url, q)
    results = job.results()
    assert [(r.type, r.return_value, r.exc_string) for r in results] == [(ResultType.SUCCESSFUL, 5, None)]
    assert results[0] == job.latest_result() and results[0].is_successful
    assert results[0].created_at == job.ended_at
    client = connect(url)
    assert not client.exists(q.keys.history(job.id)), "a job that ran once must not write a history list"
    assert not client.hexists(job.key, "hk") and not client.hexists(job.key, "ht"), "nor extra fields"


def test_retried_attempts_are_recorded_newest_first(url: str, qname: str, tmp_path) -> None:
    q = Queue(qname, url)
    job = q.enqueue("jobs.fail_until", str(tmp_path / "runs"), 3, retry=Retry(max=3), result_ttl=600)
    _burst(url, q)
    results = job.results()
    assert [r.type for r in results] == [ResultType.SUCCESSFUL, ResultType.RETRIED, ResultType.RETRIED]
    assert results[0].return_value == 3
    assert "run 2 fails" in (results[1].exc_string or "") and "run 1 fails" in (results[2].exc_string or "")
    assert results[0].created_at >= results[1].created_at >= results[2].created_at
    assert job.attempts == 3 and job.retries == 2
    client = connect(url)
    record_ttl, history_ttl = client.pttl(job.key), client.pttl(q.keys.history(job.id))
    assert 0 < history_ttl <= 600_000 and abs(record_ttl - history_ttl) < 5_000, "history lives as long as the record"


def test_the_history_is_capped_by_result_history(url: str, qname: str, tmp_path) -> None:
    q = Queue(qname, url, result_history=2)
    job = q.enqueue("jobs.fail_until", str(tmp_path / "runs"), 99, retry=Retry(max=4))
    _burst(url, q)
    results = job.results()
    assert [r.type for r in results] == [ResultType.FAILED, ResultType.RETRIED]
    assert "run 5 fails" in (results[0].exc_string or "") and "run 4 fails" in (results[1].exc_string or "")
    assert connect(url).llen(q.keys.history(job.id)) == 1
    with pytest.raises(ValueError, match="result_history"):
        q.enqueue("jobs.noop", result_history=0)


def test_requeue_keeps_the_results_and_delete_removes_them(url: str, qname: str) -> None:
    q = Queue(qname, url)
    job = q.enqueue("jobs.fail", "first")
    _burst(url, q)
    job.requeue()
    assert [r.type for r in job.results()] == [ResultType.FAILED]
    _burst(url, q)
    results = job.results()
    assert [r.type for r in results] == [ResultType.FAILED, ResultType.FAILED]
    client = connect(url)
    assert client.exists(q.keys.history(job.id))
    job.delete()
    assert not client.exists(q.keys.history(job.id)) and job.results() == []


def test_a_failure_after_a_success_clears_the_return_value(url: str, qname: str) -> None:
    q = Queue(qname, url)
    job = q.enqueue("jobs.add", 1, 1)
    _burst(url, q)
    connect(url).hset(job.key, "f", "jobs.fail")  # the same record, now a failing function
    job.requeue()
    _burst(url, q)
    assert job.return_value() is None and job.get_status() == JobStatus.FAILED
    assert [(r.type, r.return_value) for r in job.results()] == [(ResultType.FAILED, None),
                                                                 (ResultType.SUCCESSFUL, 2)]


def test_latest_result_waits_for_a_result_recorded_after_it_started_waiting(url: str, qname: str) -> None:
    q = Queue(qname, url)
    job = q.enqueue("jobs.add", 20, 22)
    worker = Worker([q], url, pool="solo", install_signal_handlers=False)
    waiting = threading.Event()

    def work_once_waiting() -> None:
        waiting.wait(30)
        # hw set means the waiter subscribed and looked: the result can only reach it by the channel.
        deadline = time.monotonic() + 30
        while not connect(url).hexists(job.key, "hw") and time.monotonic() < deadline:
            time.sleep(0.01)
        worker.work(burst=True)

    thread = threading.Thread(target=work_once_waiting, daemon=True)
    thread.start()
    waiting.set()
    result = job.latest_result(timeout=30)
    thread.join(30)
    assert isinstance(result, Result) and result.type is ResultType.SUCCESSFUL and result.return_value == 42
    assert not connect(url).hexists(job.key, "hw"), "the waiter mark is cleared once it was served"


def test_latest_result_returns_none_when_nothing_comes_and_refuses_a_missing_job(url: str, qname: str) -> None:
    q = Queue(qname, url)
    job = q.enqueue("jobs.add", 1, 2)
    assert job.latest_result(timeout=0.3) is None
    with pytest.raises(NoSuchJobError):
        Job(qname, "no-such-job", url).latest_result(timeout=0.3)


def test_a_job_nobody_waits_for_publishes_nothing(url: str, qname: str) -> None:
    q = Queue(qname, url)
    client = connect(url)
    channel = q.keys.results_channel
    if isinstance(client, redis.RedisCluster):
        node = client.get_node_from_key(channel)
        client = node.redis_connection or client.get_redis_connection(node)
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    pubsub.ssubscribe(channel)
    try:
        job = q.enqueue("jobs.add", 1, 2)
        _burst(url, q)
        assert job.return_value() == 3
        assert pubsub.get_message(timeout=0.3) is None
    finally:
        pubsub.close()


def test_the_asyncio_api_reads_and_waits_for_results(url: str, qname: str) -> None:
    async def scenario() -> None:
        async with AsyncQueue(qname, url) as q:
            job = await q.enqueue("jobs.add", 4, 5)
            assert await job.latest_result() is None
            runner = asyncio.get_running_loop().run_in_executor(None, _delayed_burst, url, qname, job.key)
            result = await job.latest_result(timeout=30)
            await runner
            assert result is not None and result.return_value == 9
            assert [r.type for r in await job.results()] == [ResultType.SUCCESSFUL]

    asyncio.run(scenario())


def _delayed_burst(url: str, qname: str, key: str) -> None:
    deadline = time.monotonic() + 30
    while not connect(url).hexists(key, "hw") and time.monotonic() < deadline:
        time.sleep(0.01)
    _burst(url, Queue(qname, url))


def test_an_attempt_lost_with_its_worker_is_recorded_as_retried(url: str, qname: str) -> None:
    q = Queue(qname, url)
    job = q.enqueue("jobs.add", 1, 1)
    q.store.run(T.lease_call(q.keys, 1, 1, "gone-worker", 60_000))  # a 1 ms lease: as if the worker died
    time.sleep(0.01)
    recovered = TR.parse_recover(q.store.run(T.requeue_expired_call(q.keys, 10, 3, 60_000)))
    assert (recovered.requeued, recovered.abandoned) == (1, 0)
    lost = job.latest_result()
    assert lost is not None and lost.type is ResultType.RETRIED and "lease expired (worker: gone-worker" in (
        lost.exc_string or "")
    assert job.get_status() == JobStatus.QUEUED
    _burst(url, q)
    assert [(r.type, r.return_value) for r in job.results()] == [(ResultType.SUCCESSFUL, 2), (ResultType.RETRIED, None)]
    assert job.return_value() == 2 and job.exc_info is None  # return_value() reads the record again
