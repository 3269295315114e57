"""clusterq in a Django project (``pip install 'clusterq[django]'``).

    # settings.py
    INSTALLED_APPS = ["clusterq.contrib.django", "django.contrib.admin", ...]
    CLUSTERQ = {"URL": "redis+cluster://10.0.0.1:6379", "QUEUES": ["default", "emails"]}
    TASKS = {"default": {"BACKEND": "clusterq.contrib.django.ClusterQBackend"}}   # Django's task framework

    # anywhere
    from clusterq.contrib.django import get_queue, job
    get_queue("emails").enqueue(send_welcome, user.pk, on_commit=True)

    $ python manage.py clusterq_worker          # also clusterq_cron, clusterq_info, clusterq_suspend, clusterq_resume

See docs/django.md. :class:`ClusterQBackend` is loaded on first use (it needs ``django-tasks`` before
Django 6).
"""

from __future__ import annotations

from typing import Any

from clusterq.contrib.django.conf import Config, load
from clusterq.contrib.django.queues import DjangoQueue, enqueue, get_connection, get_queue, job

__all__ = ["ClusterQBackend", "Config", "DjangoQueue", "enqueue", "get_connection", "get_queue", "job", "load"]


def __getattr__(name: str) -> Any:
    if name == "ClusterQBackend":
        from clusterq.contrib.django.tasks import ClusterQBackend

        return ClusterQBackend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
