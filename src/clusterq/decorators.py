"""RQ's ``rq.decorators`` path: ``from clusterq.decorators import job`` (the decorator lives in
:mod:`clusterq.api.decorators`)."""

from clusterq.api.decorators import job

__all__ = ["job"]
