"""``manage.py clusterq_cron``: ``clusterq cron`` on the ``CLUSTERQ`` deployment."""

from clusterq.contrib.django.management.base import ClusterQCommand


class Command(ClusterQCommand):
    cli_command = "cron"
    help = "clusterq cron, on the CLUSTERQ setting's deployment (arguments as for `clusterq cron`)."


__all__ = ["Command"]
