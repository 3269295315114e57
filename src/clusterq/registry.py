"""RQ's ``rq.registry`` path: ``from clusterq.registry import FailedJobRegistry`` (the classes live in
:mod:`clusterq.api.rq_registries`, the generic :class:`Registry` in :mod:`clusterq.api.registry`)."""

from clusterq.api.registry import Registry
from clusterq.api.rq_registries import (
    CanceledJobRegistry,
    DeferredJobRegistry,
    FailedJobRegistry,
    FinishedJobRegistry,
    ScheduledJobRegistry,
    StartedJobRegistry,
)

__all__ = [
    "CanceledJobRegistry",
    "DeferredJobRegistry",
    "FailedJobRegistry",
    "FinishedJobRegistry",
    "Registry",
    "ScheduledJobRegistry",
    "StartedJobRegistry",
]
