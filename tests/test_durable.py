"""Durable enqueue: ``Queue(..., wait_replicas=N)`` returns only once N replicas have the jobs (Redis WAIT
on the connection that wrote them), and says clearly when they did not."""

from __future__ import annotations

import pytest

from clusterq import Queue, ReplicationTimeout, Worker


def replicas_of(url: str) -> int:
    """Our test topologies: standalone has no replica, Sentinel and Cluster one per primary."""
    return 0 if url.startswith("redis://") else 1


def test_a_durable_enqueue_returns_once_the_replicas_have_the_job(url: str, qname: str) -> None:
    q = Queue(qname, url, wait_replicas=1, wait_timeout_s=2.0)
    if replicas_of(url) == 0:
        with pytest.raises(ReplicationTimeout, match=r"only 0 of 1 replica\(s\).*may or may not survive a failover"):
            q.enqueue("jobs.add", 1, 2, job_id="j1")
    else:
        q.enqueue("jobs.add", 1, 2, job_id="j1")
    # Either way the job was written to the primary and runs.
    assert q.count == 1
    assert Worker(q, pool="solo", install_signal_handlers=False).work(burst=True) == 1
    job = q.fetch_job("j1")
    assert job is not None and job.return_value() == 3


def test_a_durable_enqueue_that_asks_for_more_replicas_than_exist_raises_and_keeps_the_jobs(
    url: str, qname: str
) -> None:
    wanted = replicas_of(url) + 1
    q = Queue(qname, url, wait_replicas=wanted, wait_timeout_s=0.2)
    with pytest.raises(ReplicationTimeout) as caught:
        q.enqueue_many([q.prepare_data("jobs.add", (i, i), job_id=f"m{i}") for i in range(3)])
    assert caught.value.job_ids == ["m0", "m1", "m2"]
    assert caught.value.acknowledged == replicas_of(url) and caught.value.wanted == wanted
    assert "m0, m1, m2" in str(caught.value)
    # Retrying the same ids creates nothing twice, and waits again (here: the same answer).
    with pytest.raises(ReplicationTimeout):
        q.enqueue_many([q.prepare_data("jobs.add", (i, i), job_id=f"m{i}") for i in range(3)])
    assert q.count == 3


@pytest.mark.compat  # Valkey 8 answers WAIT at once on a connection that never wrote: the case the marker is for
def test_a_retried_durable_enqueue_of_an_existing_job_still_waits_for_the_replicas(
    clusterq_sentinel, qname: str
) -> None:
    """The retry writes no job (the id exists), and WAIT on a connection that never wrote returns at once.
    The marker write gives WAIT an offset at or after the first attempt's write, so a retry cannot report
    a job durable while the replica does not have it yet."""
    group = clusterq_sentinel
    replica = group.replicas[0]
    replica.pause()  # it stops acknowledging: nothing written from now on is durable
    try:
        Queue(qname, group.url).enqueue("jobs.add", 1, 1, job_id="again")
        fresh = Queue(qname, group.client(), wait_replicas=1, wait_timeout_s=0.2)  # a connection of its own
        with pytest.raises(ReplicationTimeout, match="only 0 of 1"):
            fresh.enqueue("jobs.add", 1, 1, job_id="again")
    finally:
        replica.resume()
    assert Queue(qname, group.client(), wait_replicas=1, wait_timeout_s=5.0).enqueue(
        "jobs.add", 1, 1, job_id="again").id == "again"


def test_a_durable_schedule_waits_too(url: str, qname: str) -> None:
    q = Queue(qname, url, wait_replicas=replicas_of(url) + 1, wait_timeout_s=0.2)
    with pytest.raises(ReplicationTimeout):
        q.enqueue_in(60, "jobs.add", 1, 1)
    assert q.scheduled_job_registry.count == 1


