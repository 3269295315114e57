"""``manage.py clusterq_worker``: ``clusterq worker`` on the ``CLUSTERQ`` deployment."""

from clusterq.contrib.django.management.base import WorkerCommand as Command

__all__ = ["Command"]
