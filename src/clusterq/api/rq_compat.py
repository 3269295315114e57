"""RQ's names that need more than an alias: finding a job from its id alone.

RQ keeps every job under ``rq:job:<id>``, so an id is enough to find it. A clusterq job lives in its
queue's slot (that is what makes a queue cluster-safe), so an id alone has to be looked up through the
known queues: one EXISTS per queue, in one pipeline. That is bounded by the number of queues, never by the
number of jobs, and refused past :data:`MAX_LOOKUP_QUEUES` (store ``job.handle`` instead: it needs no
lookup).
"""

from __future__ import annotations

from typing import Any

from clusterq.connection.sync import Client
from clusterq.exceptions import InvalidJobId, NoSuchJobError
from clusterq.state import keys as K
from clusterq.state import store as T
from clusterq.state.plan import Plan, client_step, run_plan, store_step

MAX_LOOKUP_QUEUES = 1000
"""Known queues an id-only ``Job.fetch`` looks through at most (one EXISTS each)."""


def known_queue_names_plan(limit: int = MAX_LOOKUP_QUEUES) -> Plan[list[str]]:
    """The registered queue names (SSCAN, so the server is never blocked), at most ``limit`` + 1."""
    names: list[str] = []
    cursor: Any = 0
    while True:
        cursor, page = yield client_step("sscan", K.QUEUES, cursor, count=500)
        names.extend(raw.decode() if isinstance(raw, bytes) else raw for raw in page)
        if len(names) > limit or not int(cursor):
            return sorted(names[: limit + 1])


def queue_of_job_plan(job_id: str) -> Plan[str]:
    """The name of the one known queue holding a job with this id (on either API).

    Raises :class:`NoSuchJobError` if no queue has it, and :class:`InvalidJobId` if several do (ids are
    unique per queue only) or if there are too many queues to look through.
    """
    names = yield from known_queue_names_plan()
    if len(names) > MAX_LOOKUP_QUEUES:
        raise InvalidJobId(f"finding job {job_id!r} by id alone would look through more than "
                           f"{MAX_LOOKUP_QUEUES} queues: pass queue='name' or fetch by job.handle")
    hits = yield store_step("exists_many", [K.QueueKeys(name).job(job_id) for name in names])
    found = [name for name, hit in zip(names, hits) if int(hit)]
    if not found:
        raise NoSuchJobError(f"no job {job_id!r} in any of the {len(names)} known queues (deleted or expired)")
    if len(found) > 1:
        raise InvalidJobId(f"job id {job_id!r} exists in queues {found}: pass queue='name' or fetch by job.handle")
    return found[0]


def queue_of_job(client: Client, job_id: str) -> str:
    """:func:`queue_of_job_plan` on a synchronous client."""
    return run_plan(queue_of_job_plan(job_id), T.Store(client))
