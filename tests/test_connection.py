"""One URL (or an existing client) for standalone, Sentinel or Cluster, with clear errors."""

from __future__ import annotations

import socket

import pytest
from redis.cluster import RedisCluster

from clusterq import ConnectionFailed, Queue, connect, topology_of
from clusterq.testing import Standalone, allocate_port


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- parsing -------------------------------------------------------------------------------------


# --- opening the right client --------------------------------------------------------------------

def test_each_topologys_url_opens_the_matching_client(clusterq_topology, url: str) -> None:
    client = connect(url)
    assert topology_of(client) == clusterq_topology.kind
    assert client.ping()
    assert connect(url) is client, "clients built from one URL are shared within a process"


@pytest.mark.parametrize("clusterq_topology", ["cluster"], indirect=True)
def test_a_plain_redis_url_to_a_cluster_node_is_opened_as_a_cluster(clusterq_topology) -> None:
    node = clusterq_topology.primaries()[1]
    client = connect(f"redis://127.0.0.1:{node.port}")
    assert isinstance(client, RedisCluster)
    q = Queue("detected", client)
    job = q.enqueue("jobs.add", 1, 2)
    assert q.fetch_job(job.id) is not None


def test_an_existing_redis_py_client_is_used_as_is(clusterq_topology, url: str) -> None:
    mine = connect(url, check=False, socket_timeout=3)  # options: a fresh, uncached client
    assert connect(mine) is mine
    q = Queue("mine", mine)
    assert q.connection is mine
    assert q.enqueue("jobs.noop").get_status().value == "queued"


@pytest.mark.parametrize("clusterq_topology", ["cluster"], indirect=True)
def test_an_address_remap_is_applied_to_every_cluster_node(clusterq_topology) -> None:
    seen: set[tuple[str, int]] = set()

    def remap(address: tuple[str, int]) -> tuple[str, int]:
        seen.add(address)
        return address

    seed = clusterq_topology.primaries()[0].port
    client = connect(f"redis+cluster://127.0.0.1:{seed}", address_remap=remap)
    Queue("remapped", client).enqueue("jobs.noop")
    assert {port for _, port in seen} >= {n.port for n in clusterq_topology.primaries()}


def test_the_clusterq_url_environment_variable_is_the_default(monkeypatch, clusterq_topology, url) -> None:
    monkeypatch.setenv("CLUSTERQ_URL", url)
    assert topology_of(Queue("env").connection) == clusterq_topology.kind


# --- errors --------------------------------------------------------------------------------------

@pytest.mark.parametrize("scheme,topology", [
    ("redis", "standalone server"), ("redis+sentinel", "Sentinel"), ("redis+cluster", "Redis Cluster"),
])
def test_an_unreachable_url_names_the_host_and_the_topology(scheme: str, topology: str) -> None:
    port = _closed_port()
    path = "/mymaster" if "sentinel" in scheme else ""
    with pytest.raises(ConnectionFailed) as info:
        connect(f"{scheme}://127.0.0.1:{port}{path}", socket_connect_timeout=1)
    message = str(info.value)
    assert f"127.0.0.1:{port}" in message and topology in message


@pytest.mark.parametrize("clusterq_topology", ["standalone"], indirect=True)
def test_a_wrong_password_is_reported_as_an_authentication_failure(clusterq_topology) -> None:
    admin = clusterq_topology.client()
    admin.execute_command("ACL", "SETUSER", "alice", "on", ">right", "~cq:*", "&*", "+@all")
    try:
        port = clusterq_topology.port
        with pytest.raises(ConnectionFailed, match="authentication failed"):
            connect(f"redis://alice:wrong@127.0.0.1:{port}/0")
        good = connect(f"redis://alice:right@127.0.0.1:{port}/0")
        assert Queue("acl", good).enqueue("jobs.noop").exists()
    finally:
        admin.execute_command("ACL", "DELUSER", "alice")
        admin.close()


def test_a_cluster_with_uncovered_slots_is_refused_with_the_reason() -> None:
    # An explicit cluster bus port: the default (port + 10000) is refused when the free port drawn is > 55535.
    lonely = Standalone(extra_args=("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                                    "--cluster-port", str(allocate_port())))
    lonely.start()
    try:
        with pytest.raises(ConnectionFailed) as info:
            connect(f"redis://127.0.0.1:{lonely.port}", socket_connect_timeout=2)
        message = str(info.value)
        assert "Redis Cluster" in message and f"127.0.0.1:{lonely.port}" in message
        assert "slot" in message.lower()
    finally:
        lonely.stop()


@pytest.mark.parametrize("clusterq_topology", ["sentinel"], indirect=True)
def test_sentinels_that_do_not_know_the_service_are_reported_briefly(clusterq_topology) -> None:
    hosts = ",".join(f"{h}:{p}" for h, p in clusterq_topology.sentinel_addresses)
    with pytest.raises(ConnectionFailed) as info:
        connect(f"redis+sentinel://{hosts}/no-such-service")
    message = str(info.value)
    assert "no-such-service" in message and "none knows a primary" in message
    assert "<redis." not in message and len(message) < 400, message


def test_unreachable_sentinels_are_listed_by_address_not_by_client_repr() -> None:
    ports = [_closed_port(), _closed_port()]
    with pytest.raises(ConnectionFailed) as info:
        connect(f"redis+sentinel://127.0.0.1:{ports[0]},127.0.0.1:{ports[1]}/svc", socket_connect_timeout=1)
    message = str(info.value)
    assert all(f"127.0.0.1:{p} " in message for p in ports), message
    assert "<redis." not in message and len(message) < 400, message
