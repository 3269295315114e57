"""clusterq through a sharding proxy: three standalone servers behind twemproxy (Debian's nutcracker, hash
tag "{}"), opened with a ``redis+proxy://`` URL. Every queue's keys share one tag, so each script lands
whole on one backend; what a proxy does not relay (pub/sub, INFO, WAIT, MULTI) is never sent: idle
workers poll, result waits poll, and ``wait_replicas`` is refused with a clear error."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

import jobs
from clusterq import AsyncQueue, Buffer, Dependency, InvalidURL, JobStatus, Queue, Retry, ServerError, Worker
from clusterq.connection.sync import connect, describe, parse_url, topology_of
from clusterq.state import keys as K
from clusterq.testing import Twemproxy
from test_dependencies import lines, wait_for
from worker_thread import running


@pytest.fixture(scope="session")
def proxy_topology(clusterq_server_binary) -> Iterator[Twemproxy]:  # type: ignore[no-untyped-def]
    with Twemproxy(clusterq_server_binary) as topology:
        yield topology


@pytest.fixture
def purl(proxy_topology: Twemproxy) -> Iterator[str]:
    proxy_topology.flush()
    yield proxy_topology.url


def backend_of(topology: Twemproxy, queue: str) -> int:
    """Which backend holds ``queue``'s keys (the one whose server has its pending list)."""
    owners = [i for i, b in enumerate(topology.backends) if b.admin.exists(K.QueueKeys(queue).pending)]
    assert len(owners) == 1, f"{queue}'s keys are on backends {owners}"
    return owners[0]


def thread_worker(queues: list[Queue]) -> Worker:
    return Worker(queues, queues[0].connection, pool="thread", concurrency=4, install_signal_handlers=False)


def test_a_proxy_url_is_parsed_and_opened_as_a_proxy(purl: str) -> None:
    parsed = parse_url(purl)
    assert (parsed.topology, parsed.describe()) == ("proxy", f"proxy at {purl.split('//')[1]}")
    client = connect(purl)
    assert topology_of(client) == "proxy" and describe(client).startswith("proxy at ")
    with pytest.raises(InvalidURL, match="one proxy address and database 0"):
        parse_url("redis+proxy://127.0.0.1:1,127.0.0.1:2")
    with pytest.raises(InvalidURL, match="one proxy address and database 0"):
        parse_url("redis+proxy://127.0.0.1:1/3")


def test_queues_spread_over_the_backends_and_a_polling_worker_runs_them_all(
        proxy_topology: Twemproxy, purl: str, qname: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    queues = [Queue(f"{qname}-{i}", purl) for i in range(60)]
    out = tmp_path / "ran"
    for i, queue in enumerate(queues):
        queue.enqueue(jobs.record, str(out), f"{i}")
    # Ketama over 3 backends: every backend holds some of 60 queues (all on two: p < 1e-5).
    assert len({backend_of(proxy_topology, q.name) for q in queues}) == 3
    caplog.set_level(logging.INFO)
    with running(thread_worker(queues)):
        wait_for(lambda: len(lines(out)) == 60, "60 jobs")
        # An idle worker polls (no pub/sub through a proxy): a job enqueued now still starts.
        late = queues[5].enqueue(jobs.add, 2, 3)
        wait_for(lambda: late.get_status() == JobStatus.FINISHED, "the job enqueued to an idle worker")
    assert late.return_value() == 5
    assert sorted(lines(out)) == sorted(f"{i}" for i in range(60))
    assert "cannot subscribe" not in caplog.text  # nothing was tried that a proxy would refuse


def test_results_waits_retries_delays_and_dependencies_work_through_the_proxy(purl: str, qname: str,
                                                                               tmp_path: Path) -> None:
    queue, other = Queue(qname, purl), Queue(f"{qname}-other", purl)
    parent = queue.enqueue(jobs.add, 1, 1)
    child = other.enqueue(jobs.add, 2, 2, depends_on=Dependency([parent]))
    flaky = queue.enqueue(jobs.fail, "again", retry=Retry(max=2, interval=0))
    later = queue.enqueue_in(timedelta(milliseconds=300), jobs.add, 3, 3)
    assert child.get_status() == JobStatus.DEFERRED
    with running(thread_worker([queue, other])):
        result = later.latest_result(timeout=30)  # polled through the proxy, not subscribed
        assert result is not None and result.return_value == 6
        wait_for(lambda: child.get_status() == JobStatus.FINISHED, "the dependent job in another queue")
        wait_for(lambda: flaky.get_status() == JobStatus.FAILED, "the retried job to fail for good")
    assert child.return_value() == 4 and flaky.retries_left == 0


def test_the_asyncio_api_works_through_the_proxy(purl: str, qname: str) -> None:
    async def main() -> tuple[int, object]:
        async with AsyncQueue(qname, purl) as queue:
            job = await queue.enqueue(jobs.add, 20, 22)
            Worker([Queue(qname, purl)], purl, pool="thread", install_signal_handlers=False).work(burst=True)
            result = await job.latest_result(timeout=5)
            return await queue.count(), result.return_value if result else None

    assert asyncio.run(main()) == (0, 42)


def test_wait_replicas_is_refused_with_a_clear_error(purl: str, qname: str) -> None:
    with pytest.raises(ServerError, match="WAIT, which a proxy does not relay"):
        Queue(qname, purl, wait_replicas=1).enqueue(jobs.add, 1, 2)
    assert Queue(qname, purl).count == 0


def test_an_idle_worker_sends_a_few_commands_a_second(proxy_topology: Twemproxy, purl: str, qname: str) -> None:
    queues = [Queue(f"{qname}-{i}", purl) for i in range(5)]

    def calls() -> int:
        return sum(sum(int(v["calls"]) for v in b.admin.info("commandstats").values())
                   for b in proxy_topology.backends)

    with running(thread_worker(queues)):
        time.sleep(1.5)  # past start-up
        before, began = calls(), time.monotonic()
        time.sleep(4)
        rate = (calls() - before) / (time.monotonic() - began)
    # One pipelined lease call per queue per second, plus the heartbeat: far from a busy loop.
    assert rate < 5 * len(queues) + 5, f"{rate:.1f} commands/s from an idle worker on {len(queues)} queues"


def test_a_counter_buffer_flushes_through_the_proxy(purl: str, qname: str, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "applied.jsonl"
    monkeypatch.setenv("CLUSTERQ_TEST_BUFFER_OUT", str(out))
    buffer = Buffer(f"{qname}-b", purl, partitions=6, flush_to="buffer_jobs.apply", queue=qname)
    buffer.incr_many([(f"k{i % 7}", {"n": 1}) for i in range(70)])
    assert buffer.flush().records == 7
    Worker([Queue(qname, purl)], purl, pool="thread", install_signal_handlers=False).work(burst=True)
    assert len(lines(out)) == 7 and buffer.pending() == 0


def test_suspend_and_resume_reach_polling_workers(purl: str, qname: str, caplog: pytest.LogCaptureFixture) -> None:
    from clusterq import resume, suspend

    caplog.set_level(logging.INFO, logger="clusterq")
    queue = Queue(qname, purl)
    with running(thread_worker([queue])):
        suspend(purl)  # no control channel through a proxy: the worker reads the flag once a second
        wait_for(lambda: "all queues are suspended" in caplog.text, "the worker to read the suspend flag")
        held = queue.enqueue(jobs.add, 1, 1)
        time.sleep(1.5)  # a worker that missed the flag would have run it by now
        assert held.get_status() == JobStatus.QUEUED
        resume(purl)
        wait_for(lambda: held.get_status() == JobStatus.FINISHED, "the job once resumed")


def test_the_dashboards_overview_and_clusterq_info_read_through_the_proxy(purl: str, qname: str,
                                                                         subprocess_env: dict[str, str]) -> None:
    import subprocess
    import sys

    from clusterq.dashboard.data import overview

    Queue(qname, purl).enqueue_many([Queue(qname, purl).prepare_data(jobs.add, (i, i)) for i in range(3)])
    view = overview(connect(purl))
    assert view.topology == "proxy" and view.nodes == []
    assert any("cannot read the backends' maxmemory-policy" in w for w in view.warnings)
    assert [(row.name, row.counts["waiting"]) for row in view.queues if row.name == qname] == [(qname, 3)]
    shown = subprocess.run([sys.executable, "-m", "clusterq.cli", "info", "-u", purl], env=subprocess_env,
                           capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert "proxy at " in shown.stdout and qname in shown.stdout


def test_a_partitioned_queue_spreads_over_the_proxys_backends(proxy_topology: Twemproxy, purl: str, qname: str,
                                                               tmp_path: Path) -> None:
    queue = Queue(qname, purl, partitions=12)
    out = tmp_path / "ran"
    queue.enqueue_many([queue.prepare_data(jobs.record, (str(out), str(i))) for i in range(120)])
    holding = {i for i, b in enumerate(proxy_topology.backends) for name in queue.partition_names
               if b.admin.exists(K.QueueKeys(name).pending)}
    assert len(holding) >= 2  # 12 partitions' tags hashed over 3 backends
    assert queue.count == 120
    Worker([queue], purl, pool="thread", concurrency=4, install_signal_handlers=False).work(burst=True)
    assert sorted(lines(out), key=int) == [str(i) for i in range(120)] and queue.count == 0


def test_notifications_through_a_proxy_are_refused_at_start_and_jobs_still_run(
        purl: str, qname: str, caplog: pytest.LogCaptureFixture) -> None:
    from clusterq.observability.notify import Notifications

    notes = Notifications({"notifiers": {"chat": {"type": "chat", "url": "http://127.0.0.1:9/"}},
                           "rules": [{"events": ["job_failed"], "notify": ["chat"]}]})
    queue = Queue(qname, purl)
    job = queue.enqueue(jobs.add, 1, 2)
    caplog.set_level(logging.ERROR)
    Worker([queue], purl, pool="thread", install_signal_handlers=False, hooks=[notes]).work(burst=True)
    assert "notifications need MULTI/EXEC, which a proxy (redis+proxy://) does not relay" in caplog.text
    assert job.return_value() == 3
