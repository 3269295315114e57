"""Counter buffers: coalesce hot increments in Redis, flush them as one job per key, in bounded batches.

The pattern Sentry runs in production (``buffer.incr(Group, {"times_seen": 1})`` on every event, a
periodic flush writing the sums to the database), built so its flush can never stall Redis: the pending
keys live in P partitions (each a sorted set in its own hash slot, so a cluster spreads them over its
primaries), and a flush takes at most ``batch`` keys per partition per script call, oldest first, with
``ZRANGEBYSCORE ... LIMIT``: its cost does not grow with the number of pending keys.

Guarantees (see docs/buffer.md):

* every increment :meth:`Buffer.incr` acknowledged is summed into exactly one flush record (scripts are
  atomic: an increment lands before or after a take, never in both or neither);
* every flush record becomes a job of ``flush_to(key, increments, flush_id=...)`` at least once: the take
  leases the record, the flusher enqueues its job and then acknowledges the record; a flusher that dies
  in between leaves the record leased, and after ``lease_s`` the next flush enqueues it again under the
  same flush id, which is the job's id, so while that job's record exists the second enqueue is a no-op;
* the job runs like any clusterq job (leases, retries): a job retried after a crash sees the same flush
  id again. Make the write idempotent by storing the flush id with it (``INSERT ... ON CONFLICT DO
  NOTHING`` on a table of applied flush ids, in the same transaction as the ``UPDATE``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from clusterq.api import buffer_core as B
from clusterq.api.buffer_core import BufferError, FlushRecord
from clusterq.api.enqueue_options import EnqueueData
from clusterq.api.queue import Queue
from clusterq.connection.sync import Client, ConnectionLike, connect
from clusterq.signing import Signer, SigningKey
from clusterq.state import store as T

__all__ = ["Buffer", "BufferError", "FlushRecord", "FlushResult"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FlushResult:
    """What one :meth:`Buffer.flush` did: records taken (a record taken again after a crashed flush counts
    again), jobs enqueued for them, and the partitions it could not read (their error, by partition)."""

    records: int
    rounds: int
    failed: dict[int, str]


class Buffer:
    """A counter buffer named ``name`` over ``partitions`` hash slots.

    ``buffer.incr("group:42", {"times_seen": 1, "score": 0.5})`` adds to that key's sums; a flush (run by
    ``clusterq worker --with-buffers MODULE`` every ``interval_s``, or by calling :meth:`flush`) enqueues
    ``flush_to(key, increments, flush_id=...)`` on ``queue`` for every key pending for at least
    ``min_age_s``, ``batch`` keys per partition per script call. ``job_options`` (``job_timeout``,
    ``retry``, ``max_attempts``, ``result_ttl``...) apply to those jobs. ``signing_key`` signs them when the
    workers check signatures (a worker's flusher uses the worker's own key). Every producer and flusher of
    one buffer must declare the same ``partitions``: the count is stored in Redis at first use and a
    different one is refused with :class:`BufferError`.
    """

    def __init__(
        self,
        name: str,
        connection: ConnectionLike = None,
        *,
        partitions: int = 1,
        flush_to: Callable[..., Any] | str | None = None,
        queue: str = "default",
        batch: int = 100,
        lease_s: float = 60,
        min_age_s: float = 0,
        interval_s: float = 5,
        signing_key: SigningKey | Signer | None = None,
        **job_options: Any,
    ) -> None:
        self.spec = B.BufferSpec.of(name, partitions, flush_to, queue, batch, lease_s, min_age_s, interval_s,
                                    job_options)
        self._connection = connection
        self._client: Client | None = None
        self._store: T.Store | None = None
        self.signing_key = signing_key
        self._checked = False

    def __repr__(self) -> str:
        return f"Buffer({self.spec.name!r}, partitions={self.spec.partitions})"

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def partitions(self) -> int:
        return self.spec.partitions

    @property
    def client(self) -> Client:
        if self._client is None:
            self._client = connect(self._connection)
        return self._client

    @property
    def store(self) -> T.Store:
        if self._store is None:
            self._store = T.Store(self.client)
        return self._store

    def bind(self, client: Client) -> Buffer:
        """This buffer on ``client`` (a worker's flusher binds the buffers of a module to its own client)."""
        bound = Buffer.__new__(Buffer)
        bound.__dict__.update(self.__dict__)
        bound._client, bound._store, bound._checked = client, None, False
        return bound

    # --- producing ------------------------------------------------------------------------------

    def incr(self, key: str, increments: Mapping[str, int | float]) -> None:
        """Add ``increments`` ({field: amount}) to ``key``'s sums: one script call, O(fields)."""
        call = self.spec.incr_call(key, increments)
        self._check_config()
        self.store.run(call)

    def incr_many(self, items: Iterable[tuple[str, Mapping[str, int | float]]]) -> int:
        """:meth:`incr` for many keys in one pipeline (one per node on a cluster); returns how many. Every
        item is checked before anything is sent."""
        calls = [self.spec.incr_call(key, increments) for key, increments in items]
        if calls:
            self._check_config()
            self.store.run_many(calls)
        return len(calls)

    def _check_config(self) -> None:
        if self._checked:
            return
        config = self.spec.keys(0).config
        pipe = self.client.pipeline(transaction=False)
        pipe.set(config, self.partitions, nx=True)
        pipe.get(config)
        error = self.spec.config_mismatch(pipe.execute()[1])
        if error is not None:
            raise error
        self._checked = True

    # --- reading --------------------------------------------------------------------------------

    def pending(self) -> int:
        """Keys with increments not yet taken by a flush (one pipelined ZCARD per partition)."""
        return self._count("pending")

    def in_flight(self) -> int:
        """Flush records taken whose jobs are not yet acknowledged as enqueued."""
        return self._count("inflight")

    def _count(self, which: str) -> int:
        pipe = self.client.pipeline(transaction=False)
        for p in range(self.partitions):
            pipe.zcard(getattr(self.spec.keys(p), which))
        return sum(int(n) for n in pipe.execute())

    # --- flushing -------------------------------------------------------------------------------

    def flush(self, *, max_rounds: int | None = None, signing_key: SigningKey | Signer | None = None) -> FlushResult:
        """Take pending keys (and records whose flusher died) in batches and enqueue their jobs.

        Each round is one pipelined take per partition still holding keys (one pipeline per node), one
        :meth:`Queue.enqueue_many`, and one pipelined acknowledgement. Rounds go on until every partition
        answered less than a full batch, or ``max_rounds``. A partition that fails (a node down, a key of
        the wrong type) is skipped and reported in :attr:`FlushResult.failed`; the others go on.
        """
        if self.spec.flush_to is None:
            raise BufferError(f"buffer {self.name!r} has no flush_to function to flush to")
        self._check_config()
        store = self.store
        queue = Queue(self.spec.queue, self.client, signing_key=signing_key or self.signing_key)
        live = list(range(self.partitions))
        failed: dict[int, str] = {}
        total = rounds = 0
        while live and (max_rounds is None or rounds < max_rounds):
            rounds += 1
            calls = [B.take_call(self.spec.keys(p), self.spec.batch, self.spec.lease_ms, self.spec.min_age_ms)
                     for p in live]
            replies = store.run_many(calls, raise_on_error=False)
            taken: dict[int, list[FlushRecord]] = {}
            for p, reply in zip(live, replies):
                if isinstance(reply, Exception):
                    failed[p] = str(reply)
                    log.warning("buffer %s: partition %d skipped this flush: %s", self.name, p, reply)
                    continue
                taken[p] = B.parse_take(p, reply)
            records = [r for rs in taken.values() for r in rs]
            if records:
                queue.enqueue_many([self._job(r) for r in records])
                acks = [B.ack_call(self.spec.keys(p), [r.seq for r in rs]) for p, rs in taken.items() if rs]
                for reply in store.run_many(acks, raise_on_error=False):
                    if isinstance(reply, Exception):  # the records stay leased: the next flush re-enqueues them
                        log.warning("buffer %s: acknowledging a flush failed: %s", self.name, reply)
            total += len(records)
            live = [p for p, rs in taken.items() if len(rs) >= self.spec.batch]
        return FlushResult(records=total, rounds=rounds, failed=failed)

    def _job(self, record: FlushRecord) -> EnqueueData:
        flush_id = record.flush_id(self.name)
        assert self.spec.flush_to is not None
        return EnqueueData(self.spec.flush_to, (record.key, record.increments), {"flush_id": flush_id},
                           job_id=flush_id, **self.spec.job_options)

