"""``Dependency`` and the ``depends_on=`` forms: which jobs a new job waits for (RQ's names)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Union

from clusterq.state import keys as K
from clusterq.state.outbox import make_handle, split_handle

MAX_PARENTS = 10_000
"""Parents of one job: its record holds one field per parent. Wait on more jobs with a Group."""


@dataclass(frozen=True)
class Dependency:
    """Jobs a job waits for: ``Job`` objects, handles (``"queue/id"``, see ``Job.handle``) or ids of jobs
    in the child's own queue.

    ``allow_failure``: the child also runs if these jobs fail, are canceled or deleted (by default it is
    canceled, with a reason naming the parent). ``enqueue_at_front``: once released, the child goes to
    the front of its queue.
    """

    jobs: Sequence[Any]
    allow_failure: bool = False
    enqueue_at_front: bool = False

    def __post_init__(self) -> None:
        jobs = self.jobs
        if isinstance(jobs, (str, bytes)) or not isinstance(jobs, Sequence):
            jobs = [jobs]
        if not jobs:
            raise ValueError("Dependency(jobs=...) needs at least one job")
        object.__setattr__(self, "jobs", list(jobs))


DependsOn = Union[Dependency, Any, Sequence[Any]]


def _handle_of(item: Any, queue: str) -> str:
    handle = getattr(item, "handle", None)
    if isinstance(handle, str) and hasattr(item, "queue_name"):
        return handle
    if isinstance(item, bytes):
        item = item.decode()
    if not isinstance(item, str) or not item:
        raise TypeError(f"depends_on takes jobs, handles ('queue/id'), ids or Dependency objects, "
                        f"not {item!r}")
    if "/" in item:  # a handle: the parent may live in another queue
        parent_queue, _ = split_handle(item)
        K.validate_queue_name(parent_queue)
        return item
    return make_handle(queue, item)


def parse_depends_on(depends_on: DependsOn, queue: str) -> tuple[list[tuple[str, bool]], bool]:
    """``depends_on`` as ``([(parent handle, allow_failure), ...], release at front)``; a parent named
    twice counts once (and must finish if any mention says so)."""
    items = depends_on if isinstance(depends_on, (list, tuple)) else [depends_on]
    parents: dict[str, bool] = {}
    at_front = False
    for item in items:
        if isinstance(item, Dependency):
            at_front = at_front or item.enqueue_at_front
            for job in item.jobs:
                handle = _handle_of(job, queue)
                parents[handle] = parents.get(handle, True) and item.allow_failure
        else:
            handle = _handle_of(item, queue)
            parents[handle] = False
    if len(parents) > MAX_PARENTS:
        raise ValueError(f"a job may wait for at most {MAX_PARENTS} jobs (got {len(parents)}); "
                         "use a Group to wait for more")
    return list(parents.items()), at_front
