"""``manage.py clusterq_info``: ``clusterq info`` on the ``CLUSTERQ`` deployment."""

from clusterq.contrib.django.management.base import ClusterQCommand


class Command(ClusterQCommand):
    cli_command = "info"
    help = "clusterq info, on the CLUSTERQ setting's deployment (arguments as for `clusterq info`)."


__all__ = ["Command"]
