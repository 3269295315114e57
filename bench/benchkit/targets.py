"""The deployments under test: one fresh standalone server, and a local 3-primary cluster.

Servers are started with ``clusterq.testing`` (free loopback ports, no persistence, own temp dirs).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import redis

from clusterq.state.keys import QueueKeys, queue_slot
from clusterq.testing import Cluster, Standalone

from .proxy import CountingProxy
from .redisstats import Monitor

HOST = "127.0.0.1"


@dataclass
class Target:
    """A running deployment: where drivers connect, which queues they use, and its accounting."""

    kind: str
    url: str
    ports: list[int]
    queues: list[str]
    topology: Any
    monitor: Monitor = field(init=False)

    def __post_init__(self) -> None:
        self.monitor = Monitor(self.ports)

    def flush(self) -> None:
        self.monitor.flushall()

    @contextmanager
    def proxied(self) -> Iterator[tuple[str, list[CountingProxy]]]:
        """A URL that reaches this deployment through counting proxies (one per node)."""
        proxies = [CountingProxy(port).start() for port in self.ports]
        try:
            if self.kind == "cluster":
                seeds = ",".join(f"{HOST}:{p.port}" for p in proxies)
                remap = ";".join(f"{HOST}:{p.target_port}>{HOST}:{p.port}" for p in proxies)
                yield f"redis+cluster://{seeds}?remap={remap}", proxies
            else:
                yield f"redis://{HOST}:{proxies[0].port}/0", proxies
        finally:
            for proxy in proxies:
                proxy.stop()

    def server_version(self) -> str:
        info = self.monitor.clients[0].info("server")
        return f"{'valkey' if 'valkey_version' in info else 'redis'} {info.get('redis_version')}"

    def stop(self) -> None:
        self.monitor.close()
        if self.topology is not None:  # None: a view of a node another target owns
            self.topology.stop()


def start_standalone() -> Target:
    server = Standalone().start()
    return Target("standalone", server.url, [server.port], ["bench"], server)


def spread_queues(count: int, primaries: int = 3) -> list[str]:
    """``count`` queue names whose slots fall evenly on ``primaries`` equal slot ranges."""
    per_node = -(-count // primaries)
    bounds = [round(i * 16384 / primaries) for i in range(primaries + 1)]
    taken: dict[int, list[str]] = {i: [] for i in range(primaries)}
    candidate = 0
    while sum(len(v) for v in taken.values()) < count:
        name = f"bench-{candidate}"
        candidate += 1
        slot = queue_slot(name)
        node = next(i for i in range(primaries) if bounds[i] <= slot < bounds[i + 1])
        if len(taken[node]) < per_node:
            taken[node].append(name)
    names = [name for i in range(primaries) for name in taken[i]]
    return sorted(names, key=lambda n: int(n.rsplit("-", 1)[1]))[:count]


def start_cluster(queue_count: int) -> Target:
    cluster = Cluster(primaries=3, replicas_per_primary=0).start()
    ports = [node.port for node in cluster.primaries()]
    return Target("cluster", cluster.url, ports, spread_queues(queue_count), cluster)


def primary_of(cluster: Target, queue: str) -> tuple[Target, str]:
    """The primary that holds ``queue``'s slot, as a target of its own (stopping it leaves the node to the
    cluster), and a key of that slot: where a bare loop measures the round trip a clusterq producer's
    enqueue to ``queue`` makes (it goes straight to that primary)."""
    key = QueueKeys(queue).pending + ":redis-py-baseline"  # the queue's hash tag: its slot
    client = redis.RedisCluster(host=HOST, port=cluster.ports[0])
    try:
        node = client.get_node_from_key(key)
        port = int(node.port)
    finally:
        client.close()
    return Target("node", f"redis://{HOST}:{port}/0", [port], [queue], None), key
