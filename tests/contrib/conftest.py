"""Django for the tests of this directory only: settings are configured here, when pytest first collects
this folder, so pytest-django stays inert for the rest of the suite (``pytest tests/test_queue.py`` never
loads Django). The database is a real PostgreSQL (see djproject/settings.py); pytest-django creates and
drops ``test_<NAME>``."""

from __future__ import annotations

import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import django  # noqa: E402
from django.conf import settings  # noqa: E402

if not settings.configured:
    import djproject.settings as project

    settings.configure(**{name: getattr(project, name) for name in dir(project) if name.isupper()})
    django.setup()

from clusterq.contrib.django.testing import clusterq_burst_worker, clusterq_sync  # noqa: E402

__all__ = ["clusterq_burst_worker", "clusterq_sync"]


@pytest.fixture
def django_env(subprocess_env: dict[str, str]) -> dict[str, str]:
    """The environment of a subprocess (a worker, a server) running the test project."""
    env = dict(subprocess_env, DJANGO_SETTINGS_MODULE="djproject.settings")
    env["PYTHONPATH"] = os.pathsep.join([HERE, env.get("PYTHONPATH", "")])
    return env
