"""``manage.py clusterq_suspend``: ``clusterq suspend`` on the ``CLUSTERQ`` deployment."""

from clusterq.contrib.django.management.base import ClusterQCommand


class Command(ClusterQCommand):
    cli_command = "suspend"
    help = "clusterq suspend, on the CLUSTERQ setting's deployment (arguments as for `clusterq suspend`)."


__all__ = ["Command"]
