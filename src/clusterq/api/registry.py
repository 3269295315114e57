"""Per-queue registries of jobs by state: started (leased), finished, failed, canceled, scheduled,
deferred.

Each is a sorted set in the queue's slot. For finished, failed and canceled the score is the time the
job's record expires, so counts and listings skip expired entries without writing anything (reads never
write); workers trim expired entries in bounded batches. For started the score is the lease deadline;
for scheduled it is the time the job is due to run (workers promote due jobs to the queue); for
deferred (jobs waiting for their dependencies) it is when the job was created.
"""

from __future__ import annotations

import time

from clusterq.api.job import Job
from clusterq.api.queue_view import QueueView
from clusterq.state import store as T
from clusterq.state import transitions as TR
from clusterq.utils import decode_all

PURGE_BATCH = 1000
PAGE_LIMIT = 10_000


class Registry:
    """Jobs of one queue in one state. ``name``: ``started``, ``finished``, ``failed``, ``canceled``
    ``scheduled`` or ``deferred``."""

    def __init__(self, queue: QueueView, name: str) -> None:
        self.queue = queue
        self.name = name
        self.key = queue.keys.registry(name)
        self._client = queue.connection

    def __repr__(self) -> str:
        return f"Registry({self.queue.name!r}, {self.name!r})"

    def _live_from(self) -> str:
        # started: every entry counts (an expired lease is still a started job until recovered);
        # scheduled: every entry counts (a due job is still scheduled until a worker promotes it)
        # deferred: scored by creation time, and every entry counts
        return "-inf" if self.name in ("started", "scheduled", "deferred") else str(int(time.time() * 1000))

    @property
    def count(self) -> int:
        """Entries whose record has not expired. O(log N)."""
        return int(self._client.zcount(self.key, self._live_from(), "+inf"))

    def __len__(self) -> int:
        return self.count

    def overdue_count(self) -> int:
        """Entries whose score has passed: for ``started``, jobs whose lease expired without a heartbeat
        (their worker is gone; the next lease recovery puts them back); for ``scheduled``, jobs due now.
        O(log N), no write."""
        return int(self._client.zcount(self.key, "-inf", str(int(time.time() * 1000))))

    def score_time(self, job_id: str) -> float | None:
        """The entry's score as Unix seconds (lease deadline, run-at time or expiry), or None."""
        score = self._client.zscore(self.key, job_id)
        return None if score is None or score == float("inf") else float(score) / 1000

    def __contains__(self, item: object) -> bool:
        job_id = item.id if isinstance(item, Job) else item
        if not isinstance(job_id, str):
            return False  # a registry holds job ids: nothing else is in it
        return self._client.zscore(self.key, job_id) is not None

    def get_job_ids(self, offset: int = 0, length: int = 100) -> list[str]:
        """A page of ids, oldest first (by expiry; by lease deadline for ``started``; by run-at time for
        ``scheduled``)."""
        if length < 0 or length > PAGE_LIMIT:
            raise ValueError(f"length must be between 0 and {PAGE_LIMIT}; page through larger registries")
        if length == 0:
            return []
        return decode_all(self._client.zrangebyscore(self.key, self._live_from(), "+inf", start=offset, num=length))

    def get_jobs(self, offset: int = 0, length: int = 100) -> list[Job]:
        q = self.queue
        return [Job.trusted(q.name, job_id, q.keys, q.store, q.serializer)
                for job_id in self.get_job_ids(offset, length)]

    def requeue(self, *job_ids: str, at_front: bool = False) -> int:
        """Put jobs of this registry back on the queue; returns how many were requeued."""
        done = 0
        for job_id in job_ids:
            code = TR.REQUEUE.code(self.queue.store.run(T.requeue_call(self.queue.keys, job_id, at_front)))
            if code is TR.RequeueCode.REQUEUED:
                done += 1
        return done

    def cleanup(self) -> int:
        """Drop entries whose record expired (bounded batches). Workers do this for you."""
        if self.name in ("scheduled", "deferred"):
            return 0  # scores are run-at times, not expiries: due jobs are promoted, never trimmed
        removed = 0
        while True:
            n = TR.parse_count(self.queue.store.run(T.trim_call(self.key, PURGE_BATCH)))
            removed += n
            if n < PURGE_BATCH:
                return removed

    def clear(self) -> int:
        """Remove every entry and delete the job records, in bounded batches. Returns how many."""
        removed = 0
        while True:
            n = TR.parse_count(self.queue.store.run(T.purge_registry_call(self.queue.keys, self.key, PURGE_BATCH)))
            removed += n
            if n == 0:
                return removed
