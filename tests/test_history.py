"""A queue's per-minute history on every topology: counted by the scripts (enqueue, complete,
requeue_expired) in the queue's own slot, one hash per minute with the retention as its expiry, and read
back through clusterq.api.history in bounded buckets."""

from __future__ import annotations

import asyncio
import time

import pytest

from clusterq import Queue, Retry, Worker, connect
from clusterq.api.history import queue_history, queue_history_async
from clusterq.state import keys as K
from clusterq.state import store as T
from clusterq.state import transitions as TR


def _totals(url: str, names: list[str]) -> dict[str, int]:
    """The last hour's totals, read through both APIs (which must agree)."""
    now = time.time()
    buckets = queue_history(url, names, 3600, now=now)
    assert asyncio.run(queue_history_async(url, names, 3600, now=now)) == buckets, "the asyncio API agrees"
    return {kind: sum(getattr(b, kind) for b in buckets) for kind in ("enqueued", "finished", "failed", "retried")}


def test_the_scripts_count_enqueued_finished_failed_and_retried_jobs_per_minute(url: str, qname: str) -> None:
    q = Queue(qname, url)
    q.enqueue_many([q.prepare_data("jobs.add", (i, 1)) for i in range(3)])
    q.enqueue("jobs.fail", "once", retry=Retry(max=1))
    q.enqueue("jobs.add", 1, 2, priority=3)
    Worker([q], url, pool="thread", install_signal_handlers=False).work(burst=True)
    assert _totals(url, [qname]) == {"enqueued": 5, "finished": 4, "failed": 1, "retried": 1}
    assert _totals(url, [qname + "-other"]) == {"enqueued": 0, "finished": 0, "failed": 0, "retried": 0}

    client = connect(url)
    span = int(time.time()) // K.HISTORY_KEY_S
    keys = [K.QueueKeys(qname).counts(s) for s in (span - 1, span) if client.exists(K.QueueKeys(qname).counts(s))]
    assert keys, "this half hour's (or the last one's) counts are in Redis"
    fields = {}
    for key in keys:
        assert K.key_slot(key) == K.queue_slot(qname)
        assert 0 < client.ttl(key) <= K.HISTORY_RETENTION_S
        fields.update(client.hgetall(key))
    server_minute = client.time()[0] // 60
    assert {f.decode().split(":")[0] for f in fields} <= {str(server_minute - 1), str(server_minute)}


def test_lost_leases_count_as_retried_and_abandoned_ones_as_failed(url: str, qname: str) -> None:
    q = Queue(qname, url)
    q.enqueue("jobs.add", 1, 2)
    q.enqueue("jobs.add", 3, 4, max_attempts=1)
    q.store.run(T.lease_call(q.keys, 2, 1, "w-test", 60_000))  # a 1 ms lease: expired at once
    time.sleep(0.01)
    recovered = TR.parse_recover(q.store.run(T.requeue_expired_call(q.keys, 10, 3, 60_000)))
    assert (recovered.requeued, recovered.abandoned) == (1, 1)
    assert _totals(url, [qname]) == {"enqueued": 2, "finished": 0, "failed": 1, "retried": 1}


def test_buckets_are_aligned_and_bounded_by_the_retention(url: str, qname: str) -> None:
    now = 1_700_000_000.0
    buckets = queue_history(url, [qname], 86_400, 900, now=now)
    assert all(b.start % 900 == 0 for b in buckets) and 96 <= len(buckets) <= 97
    week = queue_history(url, [qname], 10 * 86_400, 3600, now=now)  # asked for more: the retention is read
    assert len(week) <= K.HISTORY_RETENTION_S // 3600 + 1
    with pytest.raises(ValueError, match="multiple of 60"):
        queue_history(url, [qname], 3600, 90)


def test_the_charts_are_plain_svg_with_gaps_where_nothing_ended() -> None:
    from clusterq.api.history import Bucket
    from clusterq.dashboard.charts import failure_chart, throughput_chart

    buckets = [Bucket(0.0, 5, 4, 1, 0), Bucket(60.0), Bucket(120.0, 2, 1, 1, 1)]
    rate = str(failure_chart(buckets, 60))
    assert rate.startswith('<svg class="chart"') and "<script" not in rate
    assert rate.count("<circle") == 2 and "<polyline" not in rate  # the empty minute breaks the line
    throughput = str(throughput_chart(buckets, 60))
    assert throughput.count("<polyline") == 2 and ">5<" in throughput  # the top of the axis: the largest count
    assert str(throughput_chart([], 60)).startswith("<svg")


def test_a_jobs_dependents_and_groups_read_the_same_from_both_apis(url: str, qname: str) -> None:
    from clusterq import Group
    from clusterq.api.aio_queue import AsyncJob, connect_async, disconnect_async

    q = Queue(qname, url)
    parent = q.enqueue("jobs.add", 1, 1)
    children = [q.enqueue("jobs.add", i, 1, depends_on=parent) for i in range(3)]
    group = Group.create(q)
    member = group.enqueue(q, "jobs.add", 2, 2)
    expected = (sorted(c.handle for c in children), [])
    jobs, groups = parent.dependents()
    assert (sorted(jobs), groups) == expected
    assert member.dependents() == ([], [group.handle])
    assert len(parent.dependents(limit=2)[0]) == 2

    async def read() -> tuple[tuple[list[str], list[str]], tuple[list[str], list[str]]]:
        client = await connect_async(url)
        try:
            return (await (await AsyncJob.fetch(parent.handle, client)).dependents(),
                    await (await AsyncJob.fetch(member.handle, client)).dependents())
        finally:
            await disconnect_async(client)

    (a_jobs, a_groups), of_member = asyncio.run(read())
    assert (sorted(a_jobs), a_groups) == expected and of_member == ([], [group.handle])
