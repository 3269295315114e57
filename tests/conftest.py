"""Shared fixtures. Servers come from the clusterq.testing pytest plugin (real processes on loopback);
``clusterq_url`` runs a test once per topology: standalone, sentinel, cluster."""

from __future__ import annotations

import os
import sys
import uuid

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)  # so workers (and subprocesses given PYTHONPATH) import `jobs`


@pytest.fixture
def url(clusterq_url: str) -> str:
    return clusterq_url


@pytest.fixture
def qname() -> str:
    """A fresh queue name per test, with characters that would break a careless hash tag."""
    return f"q-{{x}}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def subprocess_env() -> dict[str, str]:
    env = dict(os.environ)
    src = os.path.join(os.path.dirname(HERE), "src")
    env["PYTHONPATH"] = os.pathsep.join([HERE, src, env.get("PYTHONPATH", "")])
    return env
