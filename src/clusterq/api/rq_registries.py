"""RQ's registry classes (``rq.registry``): ``FailedJobRegistry(queue=q)`` and its siblings.

Each is a :class:`~clusterq.api.registry.Registry` of one state, built the way RQ builds it: from a
queue, or from a queue name and a connection. ``from clusterq.registry import FailedJobRegistry`` is the
import an RQ application changes ``rq.registry`` to.
"""

from __future__ import annotations

from typing import Any, ClassVar

from clusterq.api.queue import Queue
from clusterq.api.registry import Registry
from clusterq.connection.sync import ConnectionLike
from clusterq.serializers import Serializer


class _StateRegistry(Registry):
    state: ClassVar[str]

    def __init__(self, name: str = "default", connection: ConnectionLike = None, job_class: None = None,
                 queue: Queue | None = None, serializer: Serializer | str | None = None) -> None:
        if job_class is not None:
            raise TypeError(f"{type(self).__name__}(job_class=...) is not supported: clusterq has one Job class")
        if queue is None:
            queue = Queue(name, connection, serializer=serializer)
        super().__init__(queue, self.state)

    def requeue(self, *jobs: Any, at_front: bool = False) -> int:
        """Put jobs back on the queue (RQ takes a job or an id; both work); returns how many."""
        return super().requeue(*(getattr(job, "id", job) for job in jobs), at_front=at_front)


class StartedJobRegistry(_StateRegistry):
    """Jobs leased by workers, by lease deadline (``q.started_job_registry``)."""

    state = "started"


class FinishedJobRegistry(_StateRegistry):
    """Finished jobs whose record is kept (``q.finished_job_registry``)."""

    state = "finished"


class FailedJobRegistry(_StateRegistry):
    """Failed (and stopped) jobs (``q.failed_job_registry``)."""

    state = "failed"


class CanceledJobRegistry(_StateRegistry):
    """Canceled jobs (``q.canceled_job_registry``)."""

    state = "canceled"


class DeferredJobRegistry(_StateRegistry):
    """Jobs waiting for their dependencies (``q.deferred_job_registry``)."""

    state = "deferred"


class ScheduledJobRegistry(_StateRegistry):
    """Jobs waiting for their run-at time (``q.scheduled_job_registry``)."""

    state = "scheduled"


__all__ = [
    "CanceledJobRegistry",
    "DeferredJobRegistry",
    "FailedJobRegistry",
    "FinishedJobRegistry",
    "ScheduledJobRegistry",
    "StartedJobRegistry",
]
