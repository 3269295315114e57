"""Leases: the jobs a worker holds, and the calls that extend, release or end their leases.

Every leased job carries a fencing token; a lease call (extend, release, complete) names it, and the
server refuses one whose token is no longer the job's (the lease expired and the job was handed to
another worker, or it was canceled or deleted). The heartbeat thread extends the leases of the held jobs,
the supervisor's thread adds and drops them: one lock guards the table.

Each queue's call is judged on its own reply: a queue whose server is down or whose keys are broken does
not stop the leases of the other queues from being extended.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any

from clusterq.connection.sync import REDIS_ERRORS
from clusterq.state import keys as K
from clusterq.state import store as T
from clusterq.state import transitions as TR

log = logging.getLogger(__name__)

EXTEND_JOBS = 64
"""Leases per ``extend`` script call (5-10 us each): a worker holding many jobs sends several calls."""
WRITE_JOBS = 20
"""Jobs per write of a worker's round trip (:attr:`~clusterq.state.transitions.Call.jobs` added up; a
heavier call goes alone): Redis runs all it has read from one connection before it serves another client,
so the calls go in writes of this many jobs, two ahead (:func:`~clusterq.connection.packed.exchange`),
and another client's command waits for about one write's work, not the whole round trip's, while the
worker keeps its throughput."""

StopRequest = Callable[[str, str, str], None]
"""(queue, id, reason): a stop request for a job this worker holds."""


def run_each(store: T.Store, calls: list[T.Call], *, packed: bool = False,
             while_waiting: Callable[[], None] | None = None) -> list[Any]:
    """Run ``calls`` in one round trip (per server); every call's reply, or the exception in its place.
    A pipeline that fails as a whole (its server cannot be reached) puts its error in each place.

    ``packed``: each call is packed whole (:mod:`clusterq.connection.packed`, no per-argument encoding by
    redis-py): the worker's lease and complete pipelines, ~9 arguments per job. Sent again on a retried
    connection error exactly as redis-py's pipeline sends them again (the connection's ``Retry``).
    ``while_waiting``: see :meth:`~clusterq.state.store.Store.run_many`. The calls go in writes of at
    most :data:`WRITE_JOBS` jobs each (the round trip is still one wait: the writes are pipelined)."""
    try:
        return store.run_many(calls, raise_on_error=False, packed=packed, while_waiting=while_waiting,
                              write_jobs=WRITE_JOBS)
    except REDIS_ERRORS as exc:
        return [exc] * len(calls)


def by_queue(jobs: Iterable[T.LeasedJob]) -> dict[str, list[tuple[str, int]]]:
    grouped: dict[str, list[tuple[str, int]]] = {}
    for job in jobs:
        grouped.setdefault(job.queue, []).append((job.id, job.token))
    return grouped


class Leases:
    """The held jobs: (queue, id) -> fencing token."""

    def __init__(self, store: T.Store, queue_keys: dict[str, K.QueueKeys], lease_ms: int) -> None:
        self.store = store
        self.queue_keys = queue_keys
        self.lease_ms = lease_ms
        self.lock = threading.RLock()  # re-entrant: a stop request checks a hold under it
        self._held: dict[tuple[str, str], int] = {}
        self._ran: set[tuple[str, str]] = set()  # held jobs that ended here: their outcome is on its way

    def __contains__(self, key: tuple[str, str]) -> bool:
        with self.lock:
            return key in self._held

    def hold(self, leased: Iterable[T.LeasedJob]) -> None:
        with self.lock:
            for job in leased:
                self._held[(job.queue, job.id)] = job.token

    def ran(self, queue: str, job_id: str) -> None:
        """The job ended here; its outcome is buffered or on its way (the server may end its lease any time)."""
        self.ran_many(((queue, job_id),))

    def ran_many(self, keys: Iterable[tuple[str, str]]) -> None:
        """:meth:`ran` for (queue, id) pairs, under one hold of the lock."""
        with self.lock:
            held = self._held
            self._ran.update(key for key in keys if key in held)

    def drop(self, keys: Iterable[tuple[str, str]]) -> None:
        """No longer held (recorded, handed back or expired)."""
        with self.lock:
            for key in keys:
                self._held.pop(key, None)
                self._ran.discard(key)

    def forget(self, jobs: Iterable[T.LeasedJob]) -> None:
        self.drop((job.queue, job.id) for job in jobs)

    def first(self) -> tuple[str, str] | None:
        with self.lock:
            return next(iter(self._held), None)

    def release(self, jobs: list[T.LeasedJob]) -> None:
        """Give jobs that did not run (to the end) back to the head of their queues, uncounted. A queue whose
        call fails keeps its jobs held: their leases expire and they come back by the lease rules."""
        grouped = by_queue(jobs)
        calls = [T.release_call(self.queue_keys[q], leases) for q, leases in grouped.items()]
        handed = 0
        for (queue, leases), result in zip(grouped.items(), run_each(self.store, calls)):
            self.drop((queue, job_id) for job_id, _ in leases)
            if isinstance(result, BaseException):
                log.warning("%s: could not hand back %d job(s) (%s); they return when their lease expires",
                            queue, len(leases), result)
                continue
            handed += len(leases)
        if handed:
            log.info("handed %d job(s) back to their queue(s)", handed)

    def expire_now(self, jobs: list[T.LeasedJob]) -> None:
        """End the leases of jobs whose process died: maintenance then requeues them (attempt counted) or
        fails them as abandoned past the limit, exactly as for a worker that died."""
        calls = [T.extend_call(self.queue_keys[q], leases, 0) for q, leases in by_queue(jobs).items()]
        self.forget(jobs)
        for result in run_each(self.store, calls):
            if isinstance(result, BaseException):
                log.warning("could not expire lease(s) now (%s); they expire on their own", result)

    def release_all(self, keep: set[tuple[str, str]]) -> None:
        """On exit: hand back every held job except those in ``keep`` (they ran; their outcome is buffered)."""
        with self.lock:
            held = [(q, i, t) for (q, i), t in self._held.items() if (q, i) not in keep]
        if held:
            self.release([T.LeasedJob(q, i, t, "", b"", b"") for q, i, t in held])

    def extend(self, on_stop: StopRequest, stopping: Callable[[str, str], bool]) -> None:
        """Extend every held lease by ``lease_ms`` (the heartbeat). A reply saying a stop was requested (whose
        message this worker missed, across a reconnect) is passed to ``on_stop``."""
        with self.lock:
            grouped: dict[str, list[tuple[str, int]]] = {}
            for (queue, job_id), token in self._held.items():
                grouped.setdefault(queue, []).append((job_id, token))
        if not grouped:
            return
        # Calls of at most EXTEND_JOBS leases each, pipelined: a worker holding many jobs does not hold the
        # server for one long script.
        parts = [(q, leases[i : i + EXTEND_JOBS]) for q, leases in grouped.items()
                 for i in range(0, len(leases), EXTEND_JOBS)]
        calls = [T.extend_call(self.queue_keys[q], leases, self.lease_ms) for q, leases in parts]
        results = run_each(self.store, calls)
        stops: list[tuple[str, str]] = []
        failures: list[tuple[str, Any]] = []
        with self.lock:
            for (queue, leases), codes in zip(parts, results):
                if isinstance(codes, BaseException):
                    if all(queue != q for q, _ in failures):
                        failures.append((queue, codes))
                    continue
                for (job_id, token), code in zip(leases, TR.parse_extend(codes)):
                    # A job completed while the heartbeat was in flight is no longer held: not a loss.
                    # So is one whose outcome is on its way (recorded by the server, not yet by us).
                    if (code is TR.ExtendCode.LEASE_LOST and self._held.get((queue, job_id)) == token
                            and (queue, job_id) not in self._ran):
                        log.warning("%s: lease of job %s was lost (canceled, deleted or taken over)", queue, job_id)
                    elif code is TR.ExtendCode.STOP_REQUESTED and not stopping(queue, job_id):
                        stops.append((queue, job_id))
        for queue, exc in failures:
            log.error("%s: extending %d lease(s) failed: %s: %s", queue, len(grouped[queue]), type(exc).__name__, exc)
        for queue, job_id in stops:
            fields = self.store.read_job(self.queue_keys[queue], job_id) or {}
            on_stop(queue, job_id, fields.get("sp", b"stop requested").decode("utf-8", "replace"))
        if failures and len(failures) == len(grouped):
            raise failures[0][1]  # nothing went through: the heartbeat reports it as before


__all__ = ["Leases", "by_queue", "run_each"]
