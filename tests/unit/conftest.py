"""The fast tier: pure tests that need no server (``pytest tests/unit`` runs in seconds).

The topologies of the clusterq pytest plugin start lazily, on the first test that asks for one; a test
here that asks for one fails before anything starts, so this tier stays fast and server-free. Tests that
need a server go in tests/ next to this directory.
"""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).parent

SERVER_FIXTURES = frozenset({
    "url", "clusterq_url", "clusterq_topology", "clusterq_standalone", "clusterq_sentinel", "clusterq_cluster",
    "clusterq_server_binary",
})


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    if HERE not in item.path.parents:
        return
    wanted = SERVER_FIXTURES.intersection(getattr(item, "fixturenames", ()))
    if wanted:
        pytest.fail(f"tests/unit is the server-free tier, but this test asks for {sorted(wanted)}: "
                    "move it to tests/", pytrace=False)
