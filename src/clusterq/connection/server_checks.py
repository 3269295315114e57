"""Server settings that can make jobs vanish, read without admin commands.

Redis evicts keys when it reaches ``maxmemory`` under any policy but ``noeviction``: a waiting job's
record, a queue's pending list or a whole registry can then disappear without an error anywhere. The
policy is read with ``INFO memory`` (``maxmemory_policy``), not ``CONFIG GET``, because managed services
and least-privilege ACL users do not allow ``CONFIG``. On a cluster every primary is asked (each has its
own setting); on Sentinel, the primary.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from redis.cluster import RedisCluster

from clusterq.connection.sync import REDIS_ERRORS, ConnectionLike, connect, is_proxy, topology_of

SAFE_POLICY = "noeviction"


@dataclass(frozen=True)
class NodeMemory:
    """What one primary says about its memory (``INFO memory``)."""

    node: str
    policy: str
    used_bytes: int
    max_bytes: int  # 0: no limit

    @property
    def evicts(self) -> bool:
        return self.policy != SAFE_POLICY

    def describe(self) -> str:
        limit = _mib(self.max_bytes) if self.max_bytes else "no maxmemory"
        return f"{self.node}: {_mib(self.used_bytes)} used of {limit}, maxmemory-policy {self.policy}"


def _mib(n: int) -> str:
    return f"{n / 1048576:.1f} MiB"


def _node_memory(name: str, info: dict[str, Any]) -> NodeMemory:
    return NodeMemory(name, str(info.get("maxmemory_policy", "?")), int(info.get("used_memory", 0)),
                      int(info.get("maxmemory", 0)))


def memory_of_primaries(connection: ConnectionLike = None) -> list[NodeMemory]:
    """``INFO memory`` of every primary clusterq writes to (raises the client's error if refused); none
    through a proxy, which relays no INFO (:func:`server_warnings` says so)."""
    client = connect(connection)
    if is_proxy(client):
        return []
    if isinstance(client, RedisCluster):
        return [_node_memory(node.name, client.get_redis_connection(node).info("memory"))
                for node in sorted(client.get_primaries(), key=lambda n: n.name)]
    return [_node_memory(_address(client), client.info("memory"))]


def _address(client: Any) -> str:
    pool = client.connection_pool
    if topology_of(client) == "sentinel":
        host, port = pool.get_master_address()
        return f"{host}:{port} (primary of {pool.service_name!r})"
    kw = pool.connection_kwargs
    return f"unix:{kw['path']}" if kw.get("path") else f"{kw.get('host', '127.0.0.1')}:{kw.get('port', 6379)}"


def eviction_warning(node: NodeMemory) -> str:
    """One line naming the policy and what it does to jobs."""
    return (f"Redis at {node.node} has maxmemory-policy {node.policy}: when memory fills up it evicts keys, "
            f"and clusterq jobs, queues and results then vanish silently; set maxmemory-policy {SAFE_POLICY}")


def server_warnings(connection: ConnectionLike = None) -> list[str]:
    """Warnings about the server's settings, one line each (empty when all is well)."""
    client = connect(connection)
    if is_proxy(client):  # a proxy relays no INFO: nothing can be read of its backends' settings
        return [f"through a proxy clusterq cannot read the backends' maxmemory-policy; make sure each is "
                f"{SAFE_POLICY}, or jobs can vanish when memory fills up"]
    try:
        nodes = memory_of_primaries(connection)
    except REDIS_ERRORS as exc:
        return [f"cannot check maxmemory-policy (INFO memory refused: {type(exc).__name__}: {exc}); "
                f"make sure it is {SAFE_POLICY}, or jobs can vanish when memory fills up"]
    return [eviction_warning(node) for node in nodes if node.evicts]


__all__ = ["NodeMemory", "eviction_warning", "memory_of_primaries", "server_warnings"]
