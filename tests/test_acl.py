"""Least privilege: everything clusterq does works as a Redis ACL user limited to keys and channels
``cq:*`` and denied every ``@dangerous`` command (``KEYS``, ``FLUSH*``, ``CONFIG``, ``DEBUG``...), on every
topology. The proof is the servers' own ``ACL LOG``: after a whole producer/worker/CLI flow as that user,
no server has logged a single denied command for it, including ones whose errors a client might swallow.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pytest
import redis

from clusterq import Job, JobStatus, Queue, ServerError, Worker
from clusterq.testing import ServerProcess, Topology
from clusterq.testing.topology import LEAST_PRIVILEGE_RULES, url_with_credentials

pytestmark = pytest.mark.compat  # ACLs and maxmemory are the engine's: also run on Valkey

PASSWORD = "s3cret:/@pw"  # characters that must survive percent-encoding in the URL
DEADLINE_S = 60


def acl_denials(topology: Topology, username: str) -> list[str]:
    """What the servers (data nodes and sentinels) refused this user, from their ACL LOG."""
    found = []
    for node in topology.processes:
        for entry in node.admin.execute_command("ACL", "LOG"):
            fields = dict(zip(entry[::2], entry[1::2])) if isinstance(entry, list) else entry
            if fields.get("username") == username:
                found.append(f"{node.name}: {fields.get('reason')} {fields.get('object')}")
    return found


@pytest.fixture
def user(clusterq_topology: Topology, url: str) -> Iterator[str]:
    """A fresh ACL user name; dropped (and the ACL logs cleared) afterwards."""
    name = f"cq-{uuid.uuid4().hex[:8]}"
    for node in clusterq_topology.processes:
        node.admin.execute_command("ACL", "LOG", "RESET")
    yield name
    clusterq_topology.drop_user(name)


def data_node(topology: Topology) -> ServerProcess:
    return next(p for p in topology.processes if not p.sentinel)


def cli(*args: str, env: dict[str, str]) -> str:
    result = subprocess.run([sys.executable, "-m", "clusterq.cli", *args], env=env, capture_output=True,
                            text=True, timeout=DEADLINE_S)
    assert result.returncode == 0, f"clusterq {args[0]} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


def test_the_recommended_acl_user_runs_everything_and_is_refused_nothing(
    clusterq_topology: Topology, user: str, qname: str, subprocess_env: dict[str, str]
) -> None:
    restricted = clusterq_topology.create_user(user, PASSWORD)
    as_user = data_node(clusterq_topology).client(username=user, password=PASSWORD)
    for forbidden in (("KEYS", "*"), ("FLUSHALL",), ("FLUSHDB",), ("CONFIG", "GET", "maxmemory"),
                      ("DEBUG", "SLEEP", "0")):
        with pytest.raises(redis.exceptions.NoPermissionError):
            as_user.execute_command(*forbidden)
    for node in clusterq_topology.processes:  # the log now holds exactly those five refusals: start afresh
        node.admin.execute_command("ACL", "LOG", "RESET")

    queue = Queue(qname, restricted)
    other = Queue(f"{qname}-other", restricted)
    done = queue.enqueue("jobs.add", 1, 2)
    failing = queue.enqueue("jobs.fail", "as planned")
    many = other.enqueue_many([other.prepare_data("jobs.add", (i, i)) for i in range(5)])
    due = queue.enqueue_in(0, "jobs.add", 10, 10)
    later = queue.enqueue_at(datetime.now(timezone.utc) + timedelta(hours=1), "jobs.noop")
    canceled = queue.enqueue("jobs.noop")
    canceled.cancel()

    out = cli("worker", "--burst", "-c", "1", "-u", restricted, qname, other.name, env=subprocess_env)
    assert "maxmemory-policy" not in out, "the eviction check works with INFO allowed"

    assert done.return_value() == 3 and due.return_value() == 20
    assert [job.return_value() for job in many] == [0, 2, 4, 6, 8]
    assert failing.get_status() == JobStatus.FAILED and "as planned" in (failing.exc_info or "")
    assert later.get_status() == JobStatus.SCHEDULED and queue.scheduled_job_registry.get_job_ids() == [later.id]
    assert canceled.get_status() == JobStatus.CANCELED and queue.canceled_job_registry.count == 1
    assert set(queue.finished_job_registry.get_job_ids()) == {done.id, due.id}
    assert queue.failed_job_registry.requeue(failing.id) == 1
    later.cancel()
    Job.fetch(done.handle, restricted).delete()
    assert {q.name for q in Queue.all(restricted)} == {qname, other.name}

    info = cli("info", "-u", restricted, env=subprocess_env)
    assert qname in info and "WARNING" not in info
    assert queue.empty() == 1 and other.finished_job_registry.count == 5
    other.delete()

    assert acl_denials(clusterq_topology, user) == []


def test_without_info_everything_works_and_the_eviction_check_says_it_could_not_look(
    clusterq_topology: Topology, user: str, qname: str, caplog: pytest.LogCaptureFixture
) -> None:
    rules = [rule for rule in LEAST_PRIVILEGE_RULES if rule != "+info"]  # INFO is @dangerous in Redis 7
    restricted = clusterq_topology.create_user(user, PASSWORD, rules)
    queue = Queue(qname, restricted)
    job = queue.enqueue("jobs.add", 2, 2)

    with caplog.at_level(logging.WARNING, "clusterq.worker"):
        Worker(qname, restricted, pool="solo", install_signal_handlers=False).work(burst=True)

    assert job.return_value() == 4
    warnings = [r.getMessage() for r in caplog.records if "maxmemory-policy" in r.getMessage()]
    assert len(warnings) == 1 and "cannot check maxmemory-policy (INFO memory refused" in warnings[0]
    assert {d.split(": ", 1)[1] for d in acl_denials(clusterq_topology, user)} == {"command info"}


@pytest.mark.parametrize("clusterq_topology", ["cluster"], indirect=True)
def test_a_plain_redis_url_finds_a_cluster_without_info(clusterq_topology: Topology, user: str, qname: str) -> None:
    clusterq_topology.create_user(user, PASSWORD, [r for r in LEAST_PRIVILEGE_RULES if r != "+info"])
    node = data_node(clusterq_topology)
    plain = url_with_credentials(f"redis://{node.address}/0", user, PASSWORD)
    queue = Queue(qname, plain)
    assert type(queue.connection).__name__ == "RedisCluster"
    assert queue.enqueue("jobs.add", 1, 1).get_status() == JobStatus.QUEUED


def test_a_user_without_clusterqs_keys_gets_an_error_naming_the_missing_permission(
    clusterq_topology: Topology, user: str, qname: str
) -> None:
    restricted = clusterq_topology.create_user(user, PASSWORD, ["~app:*", "&app:*", "+@all", "-@dangerous"])
    with pytest.raises(ServerError, match="lacks a permission clusterq needs"):
        Queue(qname, restricted).enqueue("jobs.noop")



@pytest.mark.parametrize("clusterq_topology", ["sentinel"], indirect=True)
def test_sentinels_without_users_are_reached_without_a_login_when_the_url_says_so(
    clusterq_topology: Topology, user: str, qname: str
) -> None:
    restricted = clusterq_topology.create_user(user, PASSWORD, sentinel_rules=None)  # data nodes only
    job = Queue(qname, f"{restricted}?sentinel_username=&sentinel_password=").enqueue("jobs.add", 3, 4)
    Worker(qname, f"{restricted}?sentinel_username=&sentinel_password=", pool="solo",
           install_signal_handlers=False).work(burst=True)
    assert job.return_value() == 7


def test_a_worker_whose_user_lacks_scripting_exits_3_naming_the_missing_permission(
    clusterq_topology: Topology, user: str, qname: str, subprocess_env: dict[str, str]
) -> None:
    restricted = clusterq_topology.create_user(user, PASSWORD, [*LEAST_PRIVILEGE_RULES, "-@scripting"])
    job = Queue(qname, clusterq_topology.url).enqueue("jobs.noop")
    result = subprocess.run([sys.executable, "-m", "clusterq.cli", "worker", "--burst", "-c", "1", "-u", restricted,
                             qname], env=subprocess_env, capture_output=True, text=True, timeout=DEADLINE_S)
    assert result.returncode == 3, result.stdout + result.stderr
    assert "lacks a permission clusterq needs" in result.stderr and "@scripting" in result.stderr
    assert "Traceback" not in result.stderr
    assert job.get_status() == JobStatus.QUEUED  # nothing was taken
