"""RQ's names that need more than an alias: finding a job from its id alone.

RQ keeps every job under ``rq:job:<id>``, so an id is enough to find it. A clusterq job lives in its
queue's slot (that is what makes a queue cluster-safe), so an id alone has to be looked up through the
known queues: one EXISTS per queue, in one pipeline. That is bounded by the number of queues, never by the
number of jobs, and refused past :data:`MAX_LOOKUP_QUEUES` (store ``job.handle`` instead: it needs no
lookup).
"""

from __future__ import annotations

from clusterq.connection.sync import Client
from clusterq.exceptions import InvalidJobId, NoSuchJobError
from clusterq.state import keys as K

MAX_LOOKUP_QUEUES = 1000
"""Known queues an id-only ``Job.fetch`` looks through at most (one EXISTS each)."""


def known_queue_names(client: Client, limit: int = MAX_LOOKUP_QUEUES) -> list[str]:
    """The registered queue names (SSCAN, so the server is never blocked), at most ``limit`` + 1."""
    names: list[str] = []
    for raw in client.sscan_iter(K.QUEUES, count=500):
        names.append(raw.decode() if isinstance(raw, bytes) else raw)
        if len(names) > limit:
            break
    return sorted(names)


def queue_of_job(client: Client, job_id: str) -> str:
    """The name of the one known queue holding a job with this id.

    Raises :class:`NoSuchJobError` if no queue has it, and :class:`InvalidJobId` if several do (ids are
    unique per queue only) or if there are too many queues to look through.
    """
    names = known_queue_names(client)
    if len(names) > MAX_LOOKUP_QUEUES:
        raise InvalidJobId(f"finding job {job_id!r} by id alone would look through more than "
                           f"{MAX_LOOKUP_QUEUES} queues: pass queue='name' or fetch by job.handle")
    pipe = client.pipeline(transaction=False)
    for name in names:
        pipe.exists(K.QueueKeys(name).job(job_id))
    found = [name for name, hit in zip(names, pipe.execute()) if int(hit)]
    if not found:
        raise NoSuchJobError(f"no job {job_id!r} in any of the {len(names)} known queues (deleted or expired)")
    if len(found) > 1:
        raise InvalidJobId(f"job id {job_id!r} exists in queues {found}: pass queue='name' or fetch by job.handle")
    return found[0]
