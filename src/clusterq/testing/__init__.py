"""Real Redis/Valkey topologies on loopback, for clusterq's tests and for users' tests.

``Standalone``, ``SentinelGroup`` (primary, replica, three sentinels) and ``Cluster`` (three
primaries with a replica each) start real server processes from a ``redis-server`` or
``valkey-server`` binary, hand out a clusterq URL, flush between tests and let a test crash, pause
or restart any node. The pytest plugin (:mod:`clusterq.testing.plugin`) wraps them in fixtures.

The topology classes are imported lazily: this package is loaded by the pytest plugin in every
test run of a project that has clusterq installed, and must stay cheap and independent of the rest
of clusterq.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from clusterq.testing.binaries import ENGINES, ServerBinary, ServerNotFound, available_servers, find_server

if TYPE_CHECKING:
    from clusterq.testing.cluster import Cluster
    from clusterq.testing.common import PortClash, TopologyError, allocate_port
    from clusterq.testing.proxy import Twemproxy
    from clusterq.testing.sentinel import SentinelGroup
    from clusterq.testing.servers import ServerProcess, running_processes
    from clusterq.testing.standalone import Standalone
    from clusterq.testing.tls import TLSFiles, make_tls_files, tls_unsupported_reason
    from clusterq.testing.topology import Topology

_LAZY: dict[str, str] = {
    "Cluster": ".cluster",
    "SentinelGroup": ".sentinel",
    "Standalone": ".standalone",
    "Twemproxy": ".proxy",
    "PortClash": ".common",
    "ServerProcess": ".servers",
    "Topology": ".topology",
    "TopologyError": ".common",
    "TLSFiles": ".tls",
    "make_tls_files": ".tls",
    "tls_unsupported_reason": ".tls",
    "allocate_port": ".common",
    "running_processes": ".servers",
}

__all__ = [
    "ENGINES",
    "Cluster",
    "PortClash",
    "SentinelGroup",
    "ServerBinary",
    "ServerNotFound",
    "ServerProcess",
    "Standalone",
    "TLSFiles",
    "Topology",
    "TopologyError",
    "Twemproxy",
    "allocate_port",
    "available_servers",
    "find_server",
    "make_tls_files",
    "running_processes",
    "tls_unsupported_reason",
]


def __getattr__(name: str) -> Any:
    """Import a topology module on first use of one of its names (PEP 562)."""
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module_name, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
