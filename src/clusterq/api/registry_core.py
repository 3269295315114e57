"""Registries as plans: :class:`RegistryCore` is what :class:`~clusterq.api.registry.Registry` and
:class:`~clusterq.api.aio_queue.AsyncRegistry` share (see :mod:`clusterq.api.registry` for what each
registry holds and how it is scored)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Generic, Protocol, TypeVar

from clusterq.state import keys as K
from clusterq.state import store as T
from clusterq.state import transitions as TR
from clusterq.state.plan import Plan, client_step, store_step
from clusterq.utils import decode_all

PURGE_BATCH = 1000
PAGE_LIMIT = 10_000
"""The longest page a listing (of a queue or a registry) returns."""

J = TypeVar("J")


class RegistryOwner(Protocol):
    """What a registry needs of its queue (a ``Queue``, an ``AsyncQueue`` or a ``QueueView``)."""

    name: str
    keys: K.QueueKeys


def live_from(name: str) -> str:
    """The lowest score of a live entry of registry ``name``."""
    # started: every entry counts (an expired lease is still a started job until recovered);
    # scheduled: every entry counts (a due job is still scheduled until a worker promotes it)
    # deferred: scored by creation time, and every entry counts
    return "-inf" if name in ("started", "scheduled", "deferred") else str(int(time.time() * 1000))


def purge_registry_plan(qk: K.QueueKeys, registry_key: str) -> Plan[int]:
    """Remove every entry of a registry and delete the job records, in bounded batches."""
    removed = 0
    while True:
        n = TR.parse_count((yield store_step("run", T.purge_registry_call(qk, registry_key, PURGE_BATCH))))
        removed += n
        if n == 0:
            return removed


class RegistryCore(Generic[J]):
    """Jobs of one queue in one state, as plans (see :class:`clusterq.api.registry.Registry`)."""

    def __init__(self, queue: RegistryOwner, name: str) -> None:
        self.queue = queue
        self.name = name
        self.key = queue.keys.registry(name)  # refuses an unknown name

    def _job(self, job_id: str) -> J:
        """The front end's handle on a job of this registry's queue."""
        raise NotImplementedError

    def _count_plan(self) -> Plan[int]:
        return int((yield client_step("zcount", self.key, live_from(self.name), "+inf")))

    def _overdue_count_plan(self) -> Plan[int]:
        return int((yield client_step("zcount", self.key, "-inf", str(int(time.time() * 1000)))))

    def _score_time_plan(self, job_id: str) -> Plan[float | None]:
        score = yield client_step("zscore", self.key, job_id)
        return None if score is None or score == float("inf") else float(score) / 1000

    def _contains_plan(self, item: object) -> Plan[bool]:
        job_id = getattr(item, "id", item)
        if not isinstance(job_id, str):
            return False  # a registry holds job ids: nothing else is in it
        return (yield client_step("zscore", self.key, job_id)) is not None

    def _job_ids_plan(self, offset: int, length: int) -> Plan[list[str]]:
        if length < 0 or length > PAGE_LIMIT:
            raise ValueError(f"length must be between 0 and {PAGE_LIMIT}; page through larger registries")
        if length == 0:
            return []
        raw = yield client_step("zrangebyscore", self.key, live_from(self.name), "+inf", start=offset, num=length)
        return decode_all(raw)

    def _jobs_plan(self, offset: int, length: int) -> Plan[list[J]]:
        return [self._job(job_id) for job_id in (yield from self._job_ids_plan(offset, length))]

    def _requeue_plan(self, job_ids: Sequence[str], at_front: bool) -> Plan[int]:
        done = 0
        for job_id in job_ids:
            code = TR.REQUEUE.code((yield store_step("run", T.requeue_call(self.queue.keys, job_id, at_front))))
            if code is TR.RequeueCode.REQUEUED:
                done += 1
        return done

    def _cleanup_plan(self) -> Plan[int]:
        if self.name in ("scheduled", "deferred"):
            return 0  # scores are run-at times, not expiries: due jobs are promoted, never trimmed
        removed = 0
        while True:
            n = TR.parse_count((yield store_step("run", T.trim_call(self.key, PURGE_BATCH))))
            removed += n
            if n < PURGE_BATCH:
                return removed

    def _clear_plan(self) -> Plan[int]:
        return (yield from purge_registry_plan(self.queue.keys, self.key))
