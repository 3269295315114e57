"""Sentinel: a primary, one replica and three sentinels, so tests can exercise failover.

Three sentinels with quorum 2 is the smallest group that still elects a leader when one sentinel
is down. Sentinels discover each other through hello messages sent every 2 s; the harness
instead writes what they would discover (their ids, the replica, the other sentinels) into their
config files, which is exactly what sentinels write there themselves. Start-up then takes about a
second: sentinels that started before their peers retry the connection once per second, and the
group counts as ready only when every sentinel is connected to everything.
"""

from __future__ import annotations

import secrets
from typing import Any

import redis
from redis.sentinel import Sentinel

from clusterq.testing.binaries import ServerBinary
from clusterq.testing.common import DEFAULT_STARTUP_TIMEOUT, HOST, TopologyError, wait_until
from clusterq.testing.servers import ServerProcess, start_all
from clusterq.testing.topology import Topology, base_data_config, flush_primary

SENTINEL_COUNT = 3
QUORUM = 2
_BAD_FLAGS = frozenset({"s_down", "o_down", "disconnected", "failover_in_progress", "promoted"})


def _flags(entry: dict[str, Any]) -> set[str]:
    return set(str(entry.get("flags", "")).split(","))


class SentinelGroup(Topology):
    """Primary + one replica + three sentinels monitoring them as ``service_name``.

    The data nodes keep their process objects across failovers; :attr:`primary` and
    :attr:`replicas` ask the sentinels which is which right now.
    """

    kind = "sentinel"

    def __init__(
        self,
        binary: ServerBinary | None = None,
        service_name: str = "mymaster",
        *,
        down_after_ms: int = 1000,
        failover_timeout_ms: int = 5000,
        startup_timeout: float = DEFAULT_STARTUP_TIMEOUT,
    ) -> None:
        super().__init__(binary, startup_timeout=startup_timeout)
        self.service_name = service_name
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms
        self.data_nodes: list[ServerProcess] = []
        self.sentinels: list[ServerProcess] = []

    # -- start-up ---------------------------------------------------------------------------------

    def _start(self) -> None:
        primary = self._new_process("data-0", base_data_config())
        primary.start(self.startup_timeout)
        replica = self._new_process("data-1", [*base_data_config(), f"replicaof {HOST} {primary.port}"])
        replica.start(self.startup_timeout)
        self.data_nodes = [primary, replica]
        wait_until(
            lambda: replica.info("replication").get("master_link_status") == "up",
            self.startup_timeout,
            "the replica to sync with the primary",
            details=lambda: primary.log_tail() + "\n" + replica.log_tail(),
        )
        self._start_sentinels(primary, replica)
        self.wait_healthy(self.startup_timeout)

    def _start_sentinels(self, primary: ServerProcess, replica: ServerProcess) -> None:
        """Start the three sentinels, each told about the replica and the other two.

        If a sentinel has to move to another port (clash), the others find it again through its
        hello messages (same id, new address); :meth:`wait_healthy` waits for that.
        """
        self.sentinels = [self._new_process(f"sentinel-{i}", sentinel=True) for i in range(SENTINEL_COUNT)]
        ids = [secrets.token_hex(20) for _ in self.sentinels]
        for index, sentinel in enumerate(self.sentinels):
            sentinel.config_lines = self._sentinel_config(index, ids, primary, replica)
        start_all(self.sentinels, self.startup_timeout)

    def _sentinel_config(self, index: int, ids: list[str], primary: ServerProcess, replica: ServerProcess) -> list[str]:
        name = self.service_name
        lines = [
            f"sentinel myid {ids[index]}",
            f"sentinel monitor {name} {HOST} {primary.port} {QUORUM}",
            f"sentinel down-after-milliseconds {name} {self.down_after_ms}",
            f"sentinel failover-timeout {name} {self.failover_timeout_ms}",
            f"sentinel parallel-syncs {name} 1",
            f"sentinel known-replica {name} {HOST} {replica.port}",
        ]
        for other, sentinel in enumerate(self.sentinels):
            if other != index:
                lines.append(f"sentinel known-sentinel {name} {HOST} {sentinel.port} {ids[other]}")
        return lines

    # -- health -----------------------------------------------------------------------------------

    def _sentinel_is_healthy(self, sentinel: ServerProcess, primary_port: int | None) -> bool:
        """This sentinel sees a healthy primary, a connected replica and the other sentinels."""
        admin = sentinel.admin
        master = admin.execute_command("SENTINEL MASTER", self.service_name)
        if _flags(master) != {"master"} or (primary_port is not None and int(master["port"]) != primary_port):
            return False
        expected_replicas = len(self.data_nodes) - 1
        replicas = admin.execute_command("SENTINEL SLAVES", self.service_name)
        healthy_replicas = [r for r in replicas if not (_flags(r) & _BAD_FLAGS) and r.get("master-link-status") == "ok"]
        others = admin.execute_command("SENTINEL SENTINELS", self.service_name)
        connected = [s for s in others if not (_flags(s) & _BAD_FLAGS)]
        return len(healthy_replicas) >= expected_replicas and len(connected) >= len(self.sentinels) - 1

    def _replicas_in_sync(self, primary: ServerProcess) -> bool:
        """Every other data node replicates from ``primary`` with the link up."""
        for node in self.data_nodes:
            if node is primary or not node.is_responsive():
                continue
            info = node.info("replication")
            if info.get("master_port") != primary.port or info.get("master_link_status") != "up":
                return False
        return True

    def wait_healthy(self, timeout: float = DEFAULT_STARTUP_TIMEOUT) -> ServerProcess:
        """Wait until all nodes run, replicas are in sync, and every sentinel agrees on it all."""

        def healthy() -> ServerProcess | None:
            primary = self._node_on_port(self.current_primary_port())
            if primary.admin.execute_command("ROLE")[0] != "master" or not self._replicas_in_sync(primary):
                return None
            ok = all(self._sentinel_is_healthy(s, primary.port) for s in self.sentinels)
            return primary if ok else None

        return wait_until(healthy, timeout, f"sentinel group {self.service_name!r} to be healthy", details=self._logs)

    def _logs(self) -> str:
        return "\n".join(process.log_tail(15) for process in self.processes)

    # -- who is who -------------------------------------------------------------------------------

    def _node_on_port(self, port: int) -> ServerProcess:
        for node in self.data_nodes:
            if node.port == port:
                return node
        raise TopologyError(f"no data node of this group listens on port {port}")

    def current_primary_port(self) -> int:
        """The primary's port according to the first sentinel that answers."""
        self._require_started()
        errors: list[str] = []
        for sentinel in self.sentinels:
            if not sentinel.is_responsive():
                continue
            try:
                address = sentinel.admin.execute_command("SENTINEL GET-MASTER-ADDR-BY-NAME", self.service_name)
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                errors.append(f"{sentinel.name}: {exc!r}")
                continue
            if address:
                return int(address[1])
        raise TopologyError(f"no sentinel answered for {self.service_name!r}: {errors}")

    @property
    def primary(self) -> ServerProcess:
        """The data node the sentinels currently consider the primary."""
        return self._node_on_port(self.current_primary_port())

    @property
    def replicas(self) -> list[ServerProcess]:
        """The data nodes that are not the current primary."""
        primary_port = self.current_primary_port()
        return [node for node in self.data_nodes if node.port != primary_port]

    @property
    def sentinel_addresses(self) -> list[tuple[str, int]]:
        return [(HOST, sentinel.port) for sentinel in self.sentinels]

    @property
    def url(self) -> str:
        self._require_started()
        hosts = ",".join(sentinel.address for sentinel in self.sentinels)
        return f"redis+sentinel://{hosts}/{self.service_name}"

    def client(self, **kwargs: Any) -> redis.Redis:
        """A redis-py client for the current primary, found through the sentinels."""
        self._require_started()
        sentinel = Sentinel(self.sentinel_addresses, socket_timeout=5.0)
        return sentinel.master_for(self.service_name, **kwargs)

    # -- operations -------------------------------------------------------------------------------

    def flush(self) -> None:
        flush_primary(self.primary)

    def failover(self, wait: bool = True, timeout: float = 30.0) -> ServerProcess:
        """Promote the replica with ``SENTINEL FAILOVER``; return the (expected) new primary.

        With ``wait``, see :meth:`wait_for_failover`. ``SENTINEL FAILOVER`` is retried while the
        sentinels refuse it (e.g. ``NOGOODSLAVE`` right after a previous failover).
        """
        old_port = self.current_primary_port()

        def request() -> bool:
            sentinel = next(s for s in self.sentinels if s.is_responsive())
            return bool(sentinel.admin.execute_command("SENTINEL FAILOVER", self.service_name))

        wait_until(request, timeout, "SENTINEL FAILOVER to be accepted", interval=0.05)
        if not wait:
            return next(node for node in self.data_nodes if node.port != old_port)
        return self.wait_for_failover(old_port, timeout)

    def wait_for_failover(self, old_port: int, timeout: float = 30.0) -> ServerProcess:
        """Wait until the primary is no longer on ``old_port`` and the group has healed; return it.

        Also for failovers the sentinels start by themselves (after a test killed the primary).
        Returns once every running sentinel names the new primary, it answers ``ROLE`` as master,
        and the other running data nodes replicate from it. Sentinel alone converts a still-running
        old primary into a replica only ~10 s later (it waits several hello periods), so the harness
        sends it the same ``REPLICAOF`` the sentinels would send, which keeps failover tests fast.
        """
        new_primary = wait_until(
            lambda: self._promoted_primary(old_port),
            timeout,
            "the sentinels to report a new primary",
            details=self._logs,
        )
        self._reattach_old_primary(old_port, new_primary)
        wait_until(
            lambda: self._replicas_in_sync(new_primary),
            timeout,
            "replicas to follow the new primary",
            details=self._logs,
        )
        return new_primary

    def _promoted_primary(self, old_port: int) -> ServerProcess | None:
        ports = set()
        for sentinel in self.sentinels:
            if sentinel.is_responsive():
                ports.add(int(sentinel.admin.execute_command("SENTINEL GET-MASTER-ADDR-BY-NAME", self.service_name)[1]))
        if len(ports) != 1 or old_port in ports:
            return None
        node = self._node_on_port(ports.pop())
        return node if node.admin.execute_command("ROLE")[0] == "master" else None

    def _reattach_old_primary(self, old_port: int, new_primary: ServerProcess) -> None:
        old = self._node_on_port(old_port)
        if not old.is_responsive():
            return
        info = old.info("replication")
        if info.get("role") == "master":
            old.admin.execute_command("REPLICAOF", HOST, new_primary.port)

    def stop(self) -> None:
        super().stop()
        self.data_nodes = []
        self.sentinels = []
