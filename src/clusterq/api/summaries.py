"""Short summaries of many jobs at once, for listings (the dashboard's pages, ``clusterq info``).

:class:`~clusterq.api.job.Job` reads a whole record (arguments and result included, which can be
megabytes); a listing needs a few small fields of fifty jobs. :func:`summarize` reads just those, for
one page of ids of one queue, in one pipeline: every key is in the queue's slot, so it is one round trip
on a cluster too, and the cost is bounded by the page, never by the queue.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from clusterq.api.queue import Queue

SUMMARY_FIELDS = ("s", "f", "c", "ts", "te", "n", "w")
"""Status, function, created, started, ended (ms), attempts, worker: all small, fixed-size fields."""
MAX_SUMMARIES = 1000


@dataclass(frozen=True)
class JobSummary:
    """What a listing shows of one job. ``status`` is None when the record is gone (expired, deleted)."""

    queue: str
    id: str
    status: str | None
    func_name: str
    created_at: datetime | None
    started_at: datetime | None
    ended_at: datetime | None
    attempts: int
    worker_name: str | None


def _text(raw: object) -> str | None:
    if raw is None:
        return None
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)


def _time(raw: object) -> datetime | None:
    text = _text(raw)
    try:
        return datetime.fromtimestamp(int(float(text)) / 1000, tz=timezone.utc) if text else None
    except (ValueError, OverflowError, OSError):
        return None  # a record edited into garbage: shown as unknown, never an error page


def _int(raw: object) -> int:
    try:
        return int(_text(raw) or 0)
    except ValueError:
        return 0


def summarize(queue: Queue, job_ids: Sequence[str]) -> list[JobSummary]:
    """A summary of each job of ``queue`` in ``job_ids`` (at most :data:`MAX_SUMMARIES`), in order."""
    if len(job_ids) > MAX_SUMMARIES:
        raise ValueError(f"summarize at most {MAX_SUMMARIES} jobs at once (got {len(job_ids)}); page through")
    if not job_ids:
        return []
    pipe = queue.connection.pipeline(transaction=False)
    for job_id in job_ids:
        pipe.hmget(queue.keys.job(job_id), SUMMARY_FIELDS)
    replies = pipe.execute(raise_on_error=False)
    out = []
    for job_id, reply in zip(job_ids, replies):
        if isinstance(reply, Exception):  # WRONGTYPE: a key edited by hand
            out.append(JobSummary(queue.name, job_id, "unreadable", "", None, None, None, 0, None))
            continue
        s, f, c, ts, te, n, w = reply
        out.append(JobSummary(queue.name, job_id, _text(s), _text(f) or "", _time(c), _time(ts), _time(te),
                              _int(n), _text(w)))
    return out


__all__ = ["JobSummary", "summarize"]
