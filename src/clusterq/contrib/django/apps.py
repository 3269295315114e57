"""``INSTALLED_APPS = ["clusterq.contrib.django", ...]``: the management commands, the admin's link to the
dashboard (list it before ``django.contrib.admin``), and a system check of the ``CLUSTERQ`` setting."""

from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.core import checks
from django.core.exceptions import ImproperlyConfigured


class ClusterQConfig(AppConfig):
    name = "clusterq.contrib.django"
    label = "clusterq"
    verbose_name = "clusterq"

    def ready(self) -> None:
        checks.register(check_settings)


def check_settings(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    from clusterq.contrib.django import conf

    try:
        conf.reset()
        conf.load()
    except ImproperlyConfigured as exc:
        return [checks.Error(str(exc), id="clusterq.E001")]
    return []
