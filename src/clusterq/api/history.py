"""A queue's history: how many jobs were enqueued, finished, failed and retried, minute by minute.

The scripts that make those transitions count them in the queue's own slot (``QueueKeys.counts``: one
small hash per queue per half hour, fields ``<minute>:<kind>``, kept
:data:`~clusterq.state.keys.HISTORY_RETENTION_S`), so the history covers every worker and survives any
process. Reading a window costs one HGETALL per half hour of the window and queue (at most 120 fields
each), sent in one pipeline (per node in a cluster): bounded by the retention, never by the number of
jobs. The minutes are the server's clock.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from clusterq.connection.aio import AsyncConnectionLike, connect_async, disconnect_async
from clusterq.connection.sync import ConnectionLike, connect
from clusterq.state import keys as K

KINDS = ("enqueued", "finished", "failed", "retried")
"""The counts of a minute, as the scripts name them."""
_KIND_INDEX = {kind: i for i, kind in enumerate(KINDS)}
MAX_WINDOW_S = K.HISTORY_RETENTION_S


@dataclass(frozen=True)
class Bucket:
    """The counts of ``[start, start + width)``, ``start`` in seconds since the epoch."""

    start: float
    enqueued: int = 0
    finished: int = 0
    failed: int = 0
    retried: int = 0

    @property
    def ended(self) -> int:
        """Jobs that ended in the bucket (finished or failed): the throughput."""
        return self.finished + self.failed

    @property
    def failure_rate(self) -> float | None:
        """Failed over ended, or None when nothing ended."""
        return self.failed / self.ended if self.ended else None


def _text(value: object) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


@dataclass(frozen=True)
class _Plan:
    """Which hashes a window reads and how their fields fold into buckets (shared by both APIs)."""

    keys: list[str]
    first_minute: int
    last_minute: int
    per: int  # minutes per bucket
    first: int  # the first bucket's start, in minutes

    def fold(self, replies: Sequence[dict[object, object]]) -> list[Bucket]:
        sums = {start: [0, 0, 0, 0] for start in range(self.first, self.last_minute + 1, self.per)}
        for fields in replies:
            for field, value in fields.items():
                minute_text, _, kind = _text(field).partition(":")
                index = _KIND_INDEX.get(kind)
                if index is None or not minute_text.isdigit():
                    continue
                minute = int(minute_text)
                if self.first_minute <= minute <= self.last_minute:
                    sums[minute - minute % self.per][index] += int(_text(value))
        step = K.HISTORY_STEP_S
        return [Bucket(float(start * step), *total) for start, total in sorted(sums.items())]


def _plan(queues: Sequence[str], window_s: int, bucket_s: int, now: float | None) -> _Plan:
    step = K.HISTORY_STEP_S
    if bucket_s < step or bucket_s % step:
        raise ValueError(f"bucket_s must be a multiple of {step} s, got {bucket_s}")
    window_s = max(step, min(int(window_s), MAX_WINDOW_S))
    now_s = int(now if now is not None else time.time())
    last = now_s // step
    first_minute = last - window_s // step + 1
    per = bucket_s // step
    # The half hour in the key is the writer's clock, the minute in the field the server's: one span more
    # on each side catches a writer a little ahead or behind; fields outside the window are dropped.
    spans = range(first_minute * step // K.HISTORY_KEY_S - 1, now_s // K.HISTORY_KEY_S + 2)
    keys = [K.QueueKeys(name).counts(span) for name in queues for span in spans]
    # buckets aligned on the clock, so a page reload keeps them
    return _Plan(keys, first_minute, last, per, first_minute - first_minute % per)


def queue_history(connection: ConnectionLike, queues: Sequence[str], window_s: int, bucket_s: int = 60,
                  now: float | None = None) -> list[Bucket]:
    """The summed counts of ``queues`` over the last ``window_s`` seconds (at most the retention), in
    buckets of ``bucket_s`` seconds (a multiple of a minute) aligned on the clock, oldest first. Reads only."""
    plan = _plan(queues, window_s, bucket_s, now)
    if not plan.keys:
        return plan.fold([])
    pipe = connect(connection).pipeline(transaction=False)
    for key in plan.keys:
        pipe.hgetall(key)
    return plan.fold(pipe.execute())


async def queue_history_async(connection: AsyncConnectionLike, queues: Sequence[str], window_s: int,
                              bucket_s: int = 60, now: float | None = None) -> list[Bucket]:
    """:func:`queue_history` for asyncio: ``connection`` an asyncio client (or a URL: a client is opened
    and closed for this call)."""
    plan = _plan(queues, window_s, bucket_s, now)
    if not plan.keys:
        return plan.fold([])
    client = await connect_async(connection)
    try:
        pipe = client.pipeline(transaction=False)
        for key in plan.keys:
            pipe.hgetall(key)
        return plan.fold(await pipe.execute())
    finally:
        if client is not connection:
            await disconnect_async(client)
