"""Outcomes: what the pools finished, buffered until the next lease's round trip carries them to Redis.

A worker does not send a job's outcome on its own: it buffers it and sends it in the same pipelined round
trip as its next lease call (or in a flush of its own when there is nothing to lease), so recording costs
no round trip per job. :class:`Outcomes` is the buffer; :meth:`Outcomes.take` hands out a :class:`Batch`
(one ``complete`` call per queue) which the caller sends however it likes, then gives the replies back to
:meth:`Batch.settle`. Each queue's call is settled on its own: a call that failed (its server is down, a
key of its queue holds the wrong type) puts that queue's outcomes back at the head of the buffer, while
the queues whose calls went through are done. Nothing here talks to Redis.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from clusterq.state import keys as K
from clusterq.state import store as T
from clusterq.state import transitions as TR
from clusterq.state.outbox import ended_entry

log = logging.getLogger(__name__)


@dataclass
class Settled:
    """What a sent batch did, queue by queue."""

    recorded: list[tuple[str, str]] = field(default_factory=list)
    """(queue, id) of every outcome the server answered for (recorded, or refused as lost): no longer held."""
    lost: list[tuple[str, str]] = field(default_factory=list)
    """(queue, id) whose lease was lost before the outcome arrived: the outcome was dropped."""
    forward: list[tuple[str, str]] = field(default_factory=list)
    """(queue, outbox entry) for jobs with dependents, to be told now."""
    failed: dict[str, BaseException] = field(default_factory=dict)
    """queue -> the error its call met; its outcomes are back in the buffer."""


def _log_planned_failure(queue: str, outcome: T.Outcome, code: TR.CompleteCode) -> None:
    """A failure with a retry plan, said once the server decided: an attempt that runs again is not a final
    failure (a final failure without a plan was said when it happened)."""
    reason = outcome.data.decode("utf-8", "replace").splitlines()[0] if outcome.data else ""
    if code is TR.CompleteCode.AGAIN:
        log.info("%s: job %s attempt failed, will be retried: %s", queue, outcome.id, reason)
    elif code is not TR.CompleteCode.LEASE_LOST:
        log.warning("%s: job %s failed (no retries left): %s", queue, outcome.id, reason)


SCRIPT_JOBS = 20
"""Jobs per ``lease`` or ``complete`` script call: a call holds the server (every other client waits) for
about 25 us plus 7-20 us per job (Redis 7.0; the slower figure on a small virtual machine), so a batch is
cut into calls of this many and the longest single script stays well under a millisecond. The calls of
one round trip go in writes of at most :data:`~clusterq.worker.leases.WRITE_JOBS` jobs."""


def chunks(items: list[Any], size: int = SCRIPT_JOBS) -> list[list[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


class Batch:
    """The buffered outcomes taken for one send: ``complete`` calls of at most :data:`SCRIPT_JOBS` outcomes
    each, per queue, in :attr:`calls`."""

    def __init__(self, owner: Outcomes, outcomes: dict[str, list[T.Outcome]]) -> None:
        self._owner = owner
        self._parts = [(q, part) for q, outs in outcomes.items() for part in chunks(outs)]
        self.queues = list(outcomes)
        self.calls = [T.complete_call(owner.queue_keys[q], outs) for q, outs in self._parts]
        self._open = True
        self.since = 0.0  # when the oldest of these outcomes was buffered (monotonic)

    @property
    def parts(self) -> list[list[T.Outcome]]:
        return [outs for _, outs in self._parts]

    def __bool__(self) -> bool:
        """Outcomes to send: not yet settled (a batch rides with one round trip only)."""
        return self._open and bool(self.calls)

    def __len__(self) -> int:
        return len(self.calls)

    def settle(self, results: list[Any]) -> Settled:
        """Take the replies to :attr:`calls` (in order; an exception in the place of a call that failed).
        A failed queue's outcomes go back to the head of the buffer, to be sent again."""
        self._open = False
        settled = Settled()
        refused: list[tuple[str, list[T.Outcome]]] = []
        for (queue, outs), codes in zip(self._parts, results):
            if isinstance(codes, BaseException):
                settled.failed.setdefault(queue, codes)
                refused.append((queue, outs))
                continue
            for outcome, code in zip(outs, TR.parse_complete(codes)):
                settled.recorded.append((queue, outcome.id))
                if outcome.status == "failed" and outcome.plan and self._owner.logged:
                    _log_planned_failure(queue, outcome, code)
                if code is TR.CompleteCode.NOTIFY:  # it has dependents: its completion wrote an outbox intent
                    settled.forward.append((queue, ended_entry(outcome.status, outcome.id)))
                if code is TR.CompleteCode.LEASE_LOST:
                    settled.lost.append((queue, outcome.id))
        for queue, outs in reversed(refused):  # each put back ahead of the next: the order is kept
            self._owner.put_back(queue, outs)
        return settled

    def unsent(self) -> None:
        """Nothing was sent (or nothing is known of the replies): every outcome goes back to the buffer."""
        if self._open:
            self._open = False
            for queue, outs in reversed(self._parts):
                self._owner.put_back(queue, outs)


class Outcomes:
    """The buffer of outcomes not yet sent, by queue, in the order they finished."""

    def __init__(self, queue_keys: dict[str, K.QueueKeys]) -> None:
        self.queue_keys = queue_keys
        self.logged = True  # failures are logged (the worker's default exception handler)
        self._buffer: dict[str, list[T.Outcome]] = {}
        self._count = 0
        self.since = 0.0  # when (monotonic) the buffer last went from empty to not empty

    def __bool__(self) -> bool:
        return bool(self._buffer)

    def __len__(self) -> int:
        return self._count

    def add(self, queue: str, outcome: T.Outcome) -> None:
        if not self._buffer:
            self.since = time.monotonic()
        self._buffer.setdefault(queue, []).append(outcome)
        self._count += 1

    def put_back(self, queue: str, outcomes: list[T.Outcome]) -> None:
        """Return outcomes that were not recorded, ahead of those buffered since."""
        if not self._buffer:
            self.since = time.monotonic()
        self._buffer.setdefault(queue, [])[:0] = outcomes
        self._count += len(outcomes)

    def take(self, exclude: set[str] | frozenset[str] = frozenset(), limit: int | None = None) -> Batch:
        """Take the buffered outcomes (except those of the queues in ``exclude``, which stay) for sending:
        all of them, or the ``limit`` that finished first (queue by queue; the rest stay, in order)."""
        taken: dict[str, list[T.Outcome]] = {}
        room = self._count if limit is None else limit
        for queue in list(self._buffer):
            if room <= 0:
                break
            if queue in exclude:
                continue
            outs = self._buffer[queue]
            if len(outs) <= room:
                del self._buffer[queue]
            else:
                outs, self._buffer[queue] = outs[:room], outs[room:]
            taken[queue] = outs
            room -= len(outs)
            self._count -= len(outs)
        return Batch(self, taken)

    def buffered_ids(self) -> set[tuple[str, str]]:
        """(queue, id) of every buffered outcome: these jobs ran, they are not handed back on exit."""
        return {(q, o.id) for q, outs in self._buffer.items() for o in outs}


def log_lost(settled: Settled) -> None:
    for queue, job_id in settled.lost:
        log.warning("%s: job %s: its lease was lost (expired, canceled or deleted) before its outcome was "
                    "recorded; outcome dropped", queue, job_id)


__all__ = ["SCRIPT_JOBS", "Batch", "Outcomes", "Settled", "chunks", "log_lost"]
