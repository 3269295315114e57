"""``manage.py clusterq_resume``: ``clusterq resume`` on the ``CLUSTERQ`` deployment."""

from clusterq.contrib.django.management.base import ClusterQCommand


class Command(ClusterQCommand):
    cli_command = "resume"
    help = "clusterq resume, on the CLUSTERQ setting's deployment (arguments as for `clusterq resume`)."


__all__ = ["Command"]
