"""A queue's history: how many jobs were enqueued, finished, failed and retried, minute by minute.

The scripts that make those transitions count them in the queue's own slot (``QueueKeys.counts``, one
small hash per queue per minute, kept :data:`~clusterq.state.keys.HISTORY_RETENTION_S`), so the history
covers every worker and survives any process. Reading a window costs one HMGET per minute of the window
and queue, sent in one pipeline (per node in a cluster): bounded by the retention, never by the number of
jobs.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from clusterq.connection.sync import ConnectionLike, connect
from clusterq.state import keys as K

KINDS = ("enqueued", "finished", "failed", "retried")
"""The counts of a minute, as the scripts name their fields."""
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


def queue_history(connection: ConnectionLike, queues: Sequence[str], window_s: int, bucket_s: int = 60,
                  now: float | None = None) -> list[Bucket]:
    """The summed counts of ``queues`` over the last ``window_s`` seconds (at most the retention), in
    buckets of ``bucket_s`` seconds (a multiple of a minute), oldest first. Reads only."""
    step = K.HISTORY_STEP_S
    if bucket_s < step or bucket_s % step:
        raise ValueError(f"bucket_s must be a multiple of {step} s, got {bucket_s}")
    window_s = max(step, min(int(window_s), MAX_WINDOW_S))
    client = connect(connection)
    last = int(now if now is not None else time.time()) // step
    minutes = list(range(last - window_s // step + 1, last + 1))
    per = bucket_s // step
    first = minutes[0] - (minutes[0] % per)  # buckets aligned on the clock, so a page reload keeps them
    sums = {start: [0, 0, 0, 0] for start in range(first, last + 1, per)}
    if queues:
        pipe = client.pipeline(transaction=False)
        for name in queues:
            qk = K.QueueKeys(name)
            for minute in minutes:
                pipe.hmget(qk.counts(minute), *KINDS)
        replies = pipe.execute()
        for i, values in enumerate(replies):
            total = sums[minutes[i % len(minutes)] - (minutes[i % len(minutes)] % per)]
            for k, value in enumerate(values):
                if value is not None:
                    total[k] += int(value)
    return [Bucket(float(start * step), *total) for start, total in sorted(sums.items())]
