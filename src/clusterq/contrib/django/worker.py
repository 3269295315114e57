"""Running Django code in ``clusterq worker``: :class:`DjangoHook` sets Django up before the worker forks
its pool and treats every job as Django treats a request (stale database connections are closed before
and after it). ``manage.py clusterq_worker`` adds it by itself; with the plain CLI:

    DJANGO_SETTINGS_MODULE=mysite.settings clusterq worker --hook clusterq.contrib.django.worker:DjangoHook
"""

from __future__ import annotations

import os
from typing import Any

from django.core.exceptions import ImproperlyConfigured


def ensure_setup() -> None:
    """``django.setup()`` once, from ``$DJANGO_SETTINGS_MODULE``, unless Django is set up already."""
    from django.apps import apps

    if apps.ready:
        return
    from django.conf import settings

    if not settings.configured and not os.environ.get("DJANGO_SETTINGS_MODULE"):
        raise ImproperlyConfigured("clusterq runs a Django job but Django is not configured: set "
                                   "DJANGO_SETTINGS_MODULE (or start the worker with manage.py clusterq_worker)")
    import django

    django.setup()


class DjangoHook:
    """A clusterq hook (see :mod:`clusterq.hooks`) for workers that run Django code.

    ``close_connections=False`` (the in-process burst worker of the test helpers) leaves database
    connections alone: a test's transaction must survive the jobs it runs."""

    def __init__(self, close_connections: bool = True) -> None:
        self.close_connections = close_connections

    def on_worker_start(self, worker: Any) -> None:
        ensure_setup()
        if self.close_connections:
            from django.db import connections

            connections.close_all()  # nothing open is inherited by the forked children

    def before_perform(self, job: Any) -> None:
        if self.close_connections:
            from django.db import close_old_connections

            close_old_connections()

    def after_perform(self, job: Any, result: Any, error: BaseException | None) -> None:
        if self.close_connections:
            from django.db import close_old_connections

            close_old_connections()
