"""Per-queue registries of jobs by state: started (leased), finished, failed, canceled, scheduled,
deferred.

Each is a sorted set in the queue's slot. For finished, failed and canceled the score is the time the
job's record expires, so counts and listings skip expired entries without writing anything (reads never
write); workers trim expired entries in bounded batches. For started the score is the lease deadline;
for scheduled it is the time the job is due to run (workers promote due jobs to the queue); for
deferred (jobs waiting for their dependencies) it is when the job was created.
"""

from __future__ import annotations

from clusterq.api.job import Job
from clusterq.api.queue_view import QueueView
from clusterq.api.registry_core import PAGE_LIMIT, PURGE_BATCH, RegistryCore  # noqa: F401 - re-exported
from clusterq.state.plan import Plan, R, run_plan


class Registry(RegistryCore[Job]):
    """Jobs of one queue in one state. ``name``: ``started``, ``finished``, ``failed``, ``canceled``
    ``scheduled`` or ``deferred``. (The asyncio twin is :class:`~clusterq.api.aio_queue.AsyncRegistry`.)"""

    queue: QueueView

    def __init__(self, queue: QueueView, name: str) -> None:
        super().__init__(queue, name)

    def _run(self, plan: Plan[R]) -> R:
        return run_plan(plan, self.queue.store)

    def _job(self, job_id: str) -> Job:
        q = self.queue
        return Job.trusted(q.name, job_id, q.keys, q.store, q.serializer)

    def __repr__(self) -> str:
        return f"Registry({self.queue.name!r}, {self.name!r})"

    @property
    def count(self) -> int:
        """Entries whose record has not expired. O(log N)."""
        return self._run(self._count_plan())

    def __len__(self) -> int:
        return self.count

    def overdue_count(self) -> int:
        """Entries whose score has passed: for ``started``, jobs whose lease expired without a heartbeat
        (their worker is gone; the next lease recovery puts them back); for ``scheduled``, jobs due now.
        O(log N), no write."""
        return self._run(self._overdue_count_plan())

    def score_time(self, job_id: str) -> float | None:
        """The entry's score as Unix seconds (lease deadline, run-at time or expiry), or None."""
        return self._run(self._score_time_plan(job_id))

    def __contains__(self, item: object) -> bool:
        return self._run(self._contains_plan(item))

    def get_job_ids(self, offset: int = 0, length: int = 100) -> list[str]:
        """A page of ids, oldest first (by expiry; by lease deadline for ``started``; by run-at time for
        ``scheduled``)."""
        return self._run(self._job_ids_plan(offset, length))

    def get_jobs(self, offset: int = 0, length: int = 100) -> list[Job]:
        return self._run(self._jobs_plan(offset, length))

    def requeue(self, *job_ids: str, at_front: bool = False) -> int:
        """Put jobs of this registry back on the queue; returns how many were requeued."""
        return self._run(self._requeue_plan(job_ids, at_front))

    def cleanup(self) -> int:
        """Drop entries whose record expired (bounded batches). Workers do this for you."""
        return self._run(self._cleanup_plan())

    def clear(self) -> int:
        """Remove every entry and delete the job records, in bounded batches. Returns how many."""
        return self._run(self._clear_plan())
