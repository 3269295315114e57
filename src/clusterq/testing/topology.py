"""The life cycle shared by every topology, and the data-node settings they share.

A topology starts once per test session, is flushed between tests, and is stopped at the end; the
subclasses only say how to build themselves and how to reach and empty them.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import quote

from clusterq.testing.binaries import ServerBinary, find_server
from clusterq.testing.common import DEFAULT_STARTUP_TIMEOUT, TopologyError
from clusterq.testing.servers import ServerProcess, make_temp_dir, remove_temp_dir, stop_all

TopologyT = TypeVar("TopologyT", bound="Topology")

LEAST_PRIVILEGE_RULES: tuple[str, ...] = ("~cq:*", "&cq:*", "+@all", "-@dangerous", "+info")
"""ACL rules of a user that can do everything clusterq does and nothing more: only keys and channels
starting with ``cq:``; no ``@dangerous`` command (``KEYS``, ``FLUSHALL``, ``FLUSHDB``, ``CONFIG``,
``DEBUG``, ``SHUTDOWN``, ``MONITOR``...) except ``INFO``, which clusterq reads the eviction policy with."""

SENTINEL_CLIENT_RULES: tuple[str, ...] = ("-@all", "+sentinel|masters")
"""ACL rules, on the sentinels, of a user that may only ask where the primary is (what redis-py asks).
On servers that have ``CLIENT SETINFO`` (Redis 7.2+, Valkey), :meth:`Topology.create_user` adds
``+client|setinfo``, which redis-py sends on every new connection."""


class Topology(ABC):
    """Common life cycle of the test topologies: start once, flush between tests, stop at the end.

    Subclasses implement :meth:`_start`, :attr:`url`, :meth:`flush` and :meth:`client`.
    """

    kind: str = "topology"

    def __init__(self, binary: ServerBinary | None = None, *, startup_timeout: float = DEFAULT_STARTUP_TIMEOUT) -> None:
        self.binary = binary if binary is not None else find_server()
        self.startup_timeout = startup_timeout
        self.root: Path | None = None
        self.startup_seconds: float | None = None
        self._processes: list[ServerProcess] = []

    def __repr__(self) -> str:
        state = "running" if self.started else "stopped"
        return f"<{type(self).__name__} {self.binary.engine} {self.binary.version_string} {state}>"

    @property
    def started(self) -> bool:
        return self.root is not None

    @property
    def processes(self) -> list[ServerProcess]:
        """Every server process of this topology, data nodes and sentinels alike."""
        return list(self._processes)

    def _new_process(self, name: str, config: Sequence[str] = (), **kwargs: Any) -> ServerProcess:
        """Create (not start) a server with its own sub-directory of the topology's directory."""
        if self.root is None:
            raise TopologyError(f"{type(self).__name__} is not started")
        process = ServerProcess(self.binary, self.root / name, name, config, **kwargs)
        self._processes.append(process)
        return process

    def start(self: TopologyT) -> TopologyT:
        """Start every server and wait until the topology is fully formed; returns ``self``."""
        if self.started:
            return self
        began = time.monotonic()
        self.root = make_temp_dir(self.kind)
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - began
        return self

    def stop(self) -> None:
        """Stop every server (terminate, then kill after a grace period) and delete the directory."""
        stop_all(self._processes)
        self._processes.clear()
        if self.root is not None:
            remove_temp_dir(self.root)
            self.root = None

    def __enter__(self: TopologyT) -> TopologyT:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _require_started(self) -> None:
        if not self.started:
            raise TopologyError(f"{type(self).__name__} is not started; call start() first")

    def create_user(self, username: str, password: str, rules: Sequence[str] = LEAST_PRIVILEGE_RULES,
                    sentinel_rules: Sequence[str] | None = SENTINEL_CLIENT_RULES) -> str:
        """Create (or reset) an ACL user on every data node, and on every sentinel with
        ``sentinel_rules`` (sentinels have their own users; None: leave the sentinels alone); return
        this topology's URL logged in as it.

        Users live in the servers' memory only: a node restarted by a test forgets them, and
        :meth:`drop_user` removes them. ``FLUSHALL`` between tests leaves them in place.
        """
        self._require_started()
        for node in self._processes:
            node_rules = sentinel_rules if node.sentinel else rules
            if node_rules is None:
                continue
            if node.sentinel and self._has_client_setinfo():
                node_rules = [*node_rules, "+client|setinfo"]
            node.admin.execute_command("ACL", "SETUSER", username, "reset", "on", f">{password}", *node_rules)
        return url_with_credentials(self.url, username, password)

    def _has_client_setinfo(self) -> bool:
        return self.binary.engine == "valkey" or tuple(self.binary.version) >= (7, 2)

    def drop_user(self, username: str) -> None:
        """Delete an ACL user from every server that is running."""
        for node in self._processes:
            if node.is_responsive():
                node.admin.execute_command("ACL", "DELUSER", username)

    @abstractmethod
    def _start(self) -> None:
        """Create and start the servers, then wait until the topology is usable."""

    @property
    @abstractmethod
    def url(self) -> str:
        """The clusterq connection URL of this topology."""

    @abstractmethod
    def flush(self) -> None:
        """Empty every database and wait until replicas have applied it too."""

    @abstractmethod
    def client(self, **kwargs: Any) -> Any:
        """A redis-py client of the kind this topology needs (Redis, Sentinel master, RedisCluster)."""


def url_with_credentials(url: str, username: str, password: str) -> str:
    """``url`` with ``username:password@`` after the scheme (both percent-encoded)."""
    scheme, sep, rest = url.partition("://")
    return f"{scheme}{sep}{quote(username, safe='')}:{quote(password, safe='')}@{rest}"


def base_data_config() -> list[str]:
    """Settings shared by every data node: fast replication, debuggable, quick to shut down.

    ``repl-diskless-sync-delay`` defaults to 5 s, which would add 5 s to every replica start;
    ``shutdown-timeout`` (7.0+) would make SIGTERM wait for lagging replicas.
    """
    return [
        "repl-diskless-sync yes",
        "repl-diskless-sync-delay 0",
        "shutdown-timeout 0",
        "enable-debug-command local",
        "protected-mode no",
    ]


def flush_primary(node: ServerProcess, wait_timeout_ms: int = 2000) -> None:
    """``FLUSHALL`` on a primary, then ``WAIT`` until its connected replicas have applied it.

    Counting connected replicas first (``ROLE``) keeps WAIT from stalling when a test killed one.
    """
    pipe = node.admin.pipeline(transaction=False)
    pipe.execute_command("FLUSHALL")
    pipe.execute_command("ROLE")
    _, role = pipe.execute()
    replicas = len(role[2]) if role and role[0] == "master" else 0
    if replicas:
        acked = int(node.admin.execute_command("WAIT", replicas, wait_timeout_ms))
        if acked < replicas:
            raise TopologyError(f"only {acked} of {replicas} replicas of {node.name} acknowledged FLUSHALL")
