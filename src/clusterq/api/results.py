"""A job's results: the latest one and a bounded history of earlier ones (RQ's ``Result``), and waiting
for a result without polling.

The job's record holds its latest result (for an ended job, its status and end time tell its type and
time; a job waiting to run again keeps them in ``hk`` and ``ht``); when the job gets another one (a
retry, a repeat, a requeue) the previous one moves to the job's history list, capped at the job's
``result_history`` size. Both are read together by the ``results`` script, so a result recorded
meanwhile is never seen twice or missed.

Waiting (``latest_result(timeout=)``): subscribe to the queue's results channel (sharded pub/sub, in the
queue's slot), then mark the record as waited for, then look; only then wait for the job's id on the
channel. ``complete.lua`` publishes only for a record marked so, so a job nobody waits for costs nothing.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from enum import Enum
from typing import Any

from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.cluster import RedisCluster

from clusterq.serializers import Serializer
from clusterq.state import keys as K
from clusterq.state import transitions as TR

SUBSCRIBE_TIMEOUT_S = 5.0
"""How long to wait for the server to confirm a subscription before giving up."""


class ResultType(Enum):
    """What became of one run of a job (RQ's ``Result.Type``)."""

    SUCCESSFUL = 1
    FAILED = 2
    STOPPED = 3
    RETRIED = 4


_KINDS = {"s": ResultType.SUCCESSFUL, "f": ResultType.FAILED, "t": ResultType.STOPPED, "r": ResultType.RETRIED}
# An ended job's latest result is told by its status (and its end time).
_ENDED = {b"finished": b"s", b"failed": b"f", b"stopped": b"t"}


@dataclass(frozen=True)
class Result:
    """One result of a job: its type, when it was recorded (server time), and the return value (for a
    successful run) or the error text (for a failed, stopped or retried one)."""

    job_id: str
    type: ResultType
    created_at: datetime
    return_value: Any = None
    exc_string: str | None = None

    Type = ResultType  # RQ spells it Result.Type.SUCCESSFUL

    @property
    def is_successful(self) -> bool:
        return self.type is ResultType.SUCCESSFUL


def _bytes(value: Any) -> bytes | None:
    if value is None:
        return None
    return value.encode("utf-8", "surrogateescape") if isinstance(value, str) else bytes(value)


def _make(job_id: str, kind: bytes, ms: bytes, data: bytes | None, serializer: Serializer) -> Result | None:
    result_type = _KINDS.get(kind.decode("ascii", "replace"))
    if result_type is None:
        return None
    try:
        created = datetime.fromtimestamp(int(ms) / 1000, tz=timezone.utc)
    except ValueError:
        created = datetime.fromtimestamp(0, tz=timezone.utc)
    if result_type is ResultType.SUCCESSFUL:
        value = serializer.loads(data) if data else None
        return Result(job_id, result_type, created, return_value=value)
    return Result(job_id, result_type, created, exc_string=(data or b"").decode("utf-8", "replace"))


def parse_latest(job_id: str, values: Sequence[Any], serializer: Serializer) -> Result | None:
    """The latest result from the record's ``hk ht r e s te`` fields, or None if the job has none yet."""
    kind, ms, value, error, status, ended = (_bytes(v) for v in values[:6])
    if not kind:
        kind, ms = _ENDED.get(status or b""), ended
    if not kind:
        return None
    return _make(job_id, kind, ms or b"0", value if kind == b"s" else error, serializer)


def parse_entry(job_id: str, entry: Any, serializer: Serializer) -> Result | None:
    """One history entry, ``<kind><ms>:<data>``."""
    raw = _bytes(entry) or b""
    ms, sep, data = raw[1:].partition(b":")
    if not raw or not sep:
        return None
    return _make(job_id, raw[:1], ms, data, serializer)


def parse_results(job_id: str, reply: Sequence[Any], serializer: Serializer) -> list[Result]:
    """The ``results`` script's reply as results, newest first."""
    parsed = TR.parse_results_reply(reply)
    latest = parse_latest(job_id, parsed.latest, serializer)
    if latest is None:
        return []
    history = (parse_entry(job_id, entry, serializer) for entry in parsed.history)
    return [latest, *(r for r in history if r is not None)]


def _message_is(message: Any, job_id: str) -> bool:
    if not message or message.get("type") not in (b"smessage", "smessage"):
        return False
    data = message.get("data")
    return (data.decode("utf-8", "surrogateescape") if isinstance(data, bytes) else data) == job_id


def poll_delays(timeout_s: float, first_s: float = 0.01, longest_s: float = 0.25) -> list[float]:
    """Sleeps between looks when no wake-up can be had (through a proxy): 10 ms doubling to 250 ms, summing
    to ``timeout_s``. A waiter costs at most four reads a second once it has waited a second."""
    delays: list[float] = []
    left, delay = timeout_s, first_s
    while left > 1e-9:
        delays.append(min(delay, left))
        left -= delays[-1]
        delay = min(delay * 2, longest_s)
    return delays


class ResultWaiter:
    """A subscription to a queue's results channel, confirmed before :meth:`wait` is used (sync)."""

    def __init__(self, client: Any, qk: K.QueueKeys) -> None:
        channel = qk.results_channel
        if isinstance(client, RedisCluster):
            node = client.get_node_from_key(channel)
            client = node.redis_connection or client.get_redis_connection(node)
        self._pubsub = client.pubsub()
        try:
            self._pubsub.ssubscribe(channel)
            deadline = time.monotonic() + SUBSCRIBE_TIMEOUT_S
            while True:  # confirmed: a publish from now on reaches us
                message = self._pubsub.get_message(timeout=max(0.0, deadline - time.monotonic()))
                if message and message.get("type") in (b"ssubscribe", "ssubscribe"):
                    break
                if time.monotonic() >= deadline:
                    raise TimeoutError(f"no SSUBSCRIBE confirmation for {channel} within {SUBSCRIBE_TIMEOUT_S} s")
        except BaseException:
            self._pubsub.close()
            raise

    def wait(self, job_id: str, timeout_s: float) -> bool:
        """True when ``job_id`` was published within ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            if _message_is(self._pubsub.get_message(timeout=left), job_id):
                return True

    def close(self) -> None:
        self._pubsub.close()


class AsyncResultWaiter:
    """The same subscription on a ``redis.asyncio`` client; create it with :meth:`open`."""

    def __init__(self, pubsub: Any, sharded: bool) -> None:
        self._pubsub = pubsub
        self._sharded = sharded

    async def _read(self, timeout_s: float) -> Any:
        if self._sharded:
            return await self._pubsub.get_sharded_message(timeout=timeout_s)
        return await self._pubsub.get_message(timeout=timeout_s)

    @classmethod
    async def open(cls, client: Any, qk: K.QueueKeys) -> AsyncResultWaiter:
        sharded = isinstance(client, AsyncRedisCluster)
        waiter = cls(client.pubsub(), sharded)
        try:
            await waiter._pubsub.ssubscribe(qk.results_channel)
            deadline = time.monotonic() + SUBSCRIBE_TIMEOUT_S
            while True:
                message = await waiter._read(max(0.0, deadline - time.monotonic()))
                if message and message.get("type") in (b"ssubscribe", "ssubscribe"):
                    return waiter
                if time.monotonic() >= deadline:
                    raise TimeoutError(f"no SSUBSCRIBE confirmation for {qk.results_channel} within "
                                       f"{SUBSCRIBE_TIMEOUT_S} s")
        except BaseException:
            await waiter.aclose()
            raise

    async def wait(self, job_id: str, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            if _message_is(await self._read(left), job_id):
                return True

    async def aclose(self) -> None:
        close = getattr(self._pubsub, "aclose", None) or self._pubsub.close
        await close()
