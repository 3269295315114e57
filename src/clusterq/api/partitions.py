"""Partitioned queues: one logical queue spread over P ordinary queues, each in its own hash slot.

``Queue("events", connection=url, partitions=12)`` (or ``PartitionedQueue(...)``; ``AsyncQueue(...,
partitions=12)`` for asyncio) is a front over twelve ordinary queues, the *partitions*
(:func:`clusterq.state.keys.partition_names`: partition 0 is the queue ``events`` itself, the others are
placed at evenly spaced slots). Every atomic transition still runs on one partition, so nothing here
touches two slots in one call; what this module adds is the routing and the sums:

- **Declaring.** The partition count is stored in partition 0's config hash (``HSETNX``) by the first
  producer; a producer or worker that declares another count gets :class:`PartitionCountMismatch`.
- **Producing.** Round-robin from a random start per queue object, or by a stable hash (CRC32) of a
  routing key: ``partition_key=``, else ``concurrency_key``, else the debounce key, else an explicit
  ``job_id`` (so the atomic checks those need, which are per queue, see every job of that key).
  ``enqueue_many`` runs the partitions' enqueue plans side by side (:func:`gather`), so their script calls
  go in one pipeline per node.
- **Reading and control.** Counts and registry sizes are summed with one pipeline per node; suspend,
  resume, limits, empty and delete act on every partition in lockstep.

Workers given the logical name serve every partition (:func:`resolve_partitions`, used by the worker).
"""

from __future__ import annotations

import random
import time
import zlib
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

from clusterq.api.enqueue_options import EnqueueData, make_enqueue_data, split_enqueue_options
from clusterq.api.queue_core import QueueCore
from clusterq.exceptions import PartitionCountMismatch, PartitionResizeInProgress
from clusterq.state import keys as K
from clusterq.state.plan import Plan, Step, client_step, store_step

PARTITION_COUNT_FIELD = "n"
RATE_LIMIT_FIELD = "rl"
OLD_COUNT_FIELD = "old"
"""While a resize runs: the previous count, whose partitions workers still serve until they are empty."""
RESIZED_AT_FIELD = "at"
REFRESH_S = 5.0
"""A producer re-reads the stored count at most this often (on its next write), so it follows a resize."""
_REGISTRIES = ("started", "finished", "failed", "canceled", "scheduled", "deferred")


def check_partition_key(partition_key: object) -> str | None:
    if partition_key is None:
        return None
    if not isinstance(partition_key, str):
        raise TypeError(f"partition_key must be a str (or None), got {type(partition_key).__name__}: "
                        f"{partition_key!r}; convert it yourself (str(user_id)) so every producer hashes the same text")
    if not partition_key:
        raise ValueError("partition_key must not be empty")
    return partition_key


def partition_of(key: str, partitions: int) -> int:
    """The partition a routing key goes to: CRC32 of its UTF-8 bytes, modulo the count (stable across
    processes, Python versions and languages)."""
    return zlib.crc32(key.encode("utf-8", "surrogatepass")) % partitions


def routing_key(data: EnqueueData, partition_key: str | None) -> str | None:
    """What routes a job: the partition key, else what an atomic per-queue check needs all jobs of in
    one partition (concurrency key, debounce key, explicit job id), else nothing (round-robin)."""
    if partition_key is not None:
        return partition_key
    if data.concurrency_key:
        return f"c:{data.concurrency_key}"
    if data.debounce is not None:
        key = data.debounce[0] if isinstance(data.debounce, tuple) else data.debounce
        return f"d:{key}"
    if data.job_id is not None:
        return f"i:{data.job_id}"
    return None


# --- running the partitions' plans side by side ------------------------------------------------------

def _mergeable(step: Step) -> bool:
    return not step.on_client and step.method in ("run", "run_many")


def gather(plans: Sequence[Plan[Any]]) -> Plan[list[Any]]:
    """Run ``plans`` side by side and return their results in order. At each turn the script calls the
    plans are waiting on (``run``, ``run_many`` steps) go out as one ``run_many``, which the store sends
    as one pipeline per node; any other step is sent on its own. An error is thrown into the plan whose
    call failed, exactly as if it ran alone."""
    results: list[Any] = [None] * len(plans)
    waiting: dict[int, Step] = {}

    def advance(index: int, send: Any = None, error: BaseException | None = None) -> None:
        plan = plans[index]
        try:
            step = plan.throw(error) if error is not None else (next(plan) if send is _START else plan.send(send))
        except StopIteration as stop:
            waiting.pop(index, None)
            results[index] = stop.value
        else:
            waiting[index] = step

    for index in range(len(plans)):
        advance(index, _START)
    while waiting:
        merged = [(i, s) for i, s in waiting.items() if _mergeable(s)]
        if len(merged) > 1:
            calls: list[Any] = []
            spans: list[tuple[int, Step, int, int]] = []
            for index, step in merged:
                these = [step.args[0]] if step.method == "run" else list(step.args[0])
                spans.append((index, step, len(calls), len(calls) + len(these)))
                calls.extend(these)
            try:
                replies = yield store_step("run_many", calls, raise_on_error=False)
            except Exception as exc:
                for index, _, _, _ in spans:
                    advance(index, error=exc)
                continue
            for index, step, start, end in spans:
                part = list(replies[start:end])
                failed = next((r for r in part if isinstance(r, BaseException)), None)
                if step.method == "run":
                    advance(index, part[0]) if failed is None else advance(index, error=failed)
                elif failed is not None and step.kwargs.get("raise_on_error", True):
                    advance(index, error=failed)
                else:
                    advance(index, part)
            continue
        index, step = next(iter(waiting.items()))
        try:
            reply = yield step
        except Exception as exc:
            advance(index, error=exc)
        else:
            advance(index, reply)
    return results


_START = object()


def sum_counts_commands(names: Sequence[str]) -> list[tuple[Any, ...]]:
    """The reads that count the waiting jobs of each queue in ``names`` (4 replies per queue)."""
    commands: list[tuple[Any, ...]] = []
    for name in names:
        qk = K.QueueKeys(name)
        commands += [("LLEN", qk.pending), ("ZCARD", qk.prio), ("HGET", qk.stats, "tomb"),
                     ("HGET", qk.stats, "lwait")]
    return commands


def parse_counts(replies: Sequence[Any], width: int = 4) -> list[int]:
    out = []
    for i in range(0, len(replies), width):
        length, prio, tomb, aside = replies[i : i + width]
        out.append(max(0, int(length or 0) + int(prio or 0) + int(aside or 0) - int(tomb or 0)))
    return out


Q = TypeVar("Q", bound=QueueCore[Any])
J = TypeVar("J")


class PartitionedCore(Generic[Q, J]):
    """What the sync and asyncio partitioned queues share: the partitions, routing and plans."""

    name: str
    partitions: int
    parts: list[Q]
    keys: K.QueueKeys

    def _setup_partitions(self, name: str, partitions: object) -> tuple[str, ...]:
        """Check the name and the count (before any I/O) and return the partitions' names."""
        count = K.validate_partitions(partitions)
        self.name = K.validate_queue_name(name)
        self.partitions = count
        self.keys = K.QueueKeys(name)
        self._declared = False
        self._checked_at = 0.0
        self._turn = random.randrange(count)
        return K.partition_names(name, count)

    @property
    def partition_names(self) -> list[str]:
        return [part.name for part in self.parts]

    # --- routing --------------------------------------------------------------------------------

    def _route(self, data: EnqueueData, partition_key: str | None) -> int:
        key = routing_key(data, partition_key)
        if key is not None:
            return partition_of(key, self.partitions)
        self._turn = (self._turn + 1) % self.partitions
        return self._turn

    def partition_for(self, partition_key: str) -> Q:
        """The partition jobs with ``partition_key=partition_key`` go to."""
        return self.parts[partition_of(check_partition_key(partition_key) or "", self.partitions)]

    def _check_one(self, f: Callable[..., Any] | str, args: tuple[Any, ...], kwargs: dict[str, Any]
                   ) -> tuple[EnqueueData, str | None, dict[str, Any]]:
        """Check ``enqueue``'s arguments (before any I/O) and take ``partition_key`` out of them."""
        kwargs = dict(kwargs)
        key = check_partition_key(kwargs.pop("partition_key", None))
        data, _ = split_enqueue_options(f, args, dict(kwargs))  # bad options fail here, before any I/O
        return data, key, kwargs

    def _pick(self, data: EnqueueData, key: str | None) -> Q:
        """The partition for a checked job (after declaring: a resize may have changed the count)."""
        return self.parts[self._route(data, key)]

    def _check_many(self, jobs: Sequence[EnqueueData], partition_keys: Sequence[str | None] | None
                    ) -> list[str | None]:
        if partition_keys is not None and len(partition_keys) != len(jobs):
            raise ValueError(f"partition_keys has {len(partition_keys)} entries for {len(jobs)} jobs")
        keys: list[str | None] = ([check_partition_key(k) for k in partition_keys] if partition_keys is not None
                                  else [None] * len(jobs))
        for data in jobs:
            if not isinstance(data, EnqueueData):
                raise TypeError(f"enqueue_many takes EnqueueData (Queue.prepare_data), got {type(data).__name__}")
        return keys

    def _group(self, jobs: Sequence[EnqueueData], keys: Sequence[str | None]) -> dict[int, list[int]]:
        groups: dict[int, list[int]] = {}
        for position, (data, key) in enumerate(zip(jobs, keys)):
            groups.setdefault(self._route(data, key), []).append(position)
        return groups

    @staticmethod
    def prepare_data(func: Callable[..., Any] | str, args: Sequence[Any] | None = None,
                     kwargs: dict[str, Any] | None = None, **options: Any) -> EnqueueData:
        return make_enqueue_data(func, args, kwargs, options)

    # --- plans ----------------------------------------------------------------------------------

    def _make_parts(self, names: Sequence[str]) -> list[Q]:
        """The front end's queue objects for ``names`` (same client and options as the others)."""
        raise NotImplementedError

    def _adopt(self, count: int) -> None:
        """Follow a resize: route over ``count`` partitions from now on."""
        self.parts = self._make_parts(K.partition_names(self.name, count))
        self.partitions = count
        self._turn %= count
        for part in self.parts:
            part._registered = True

    def _refresh_plan(self) -> Plan[None]:
        """Re-read the stored count every :data:`REFRESH_S` (a resize by an operator is followed)."""
        now = time.monotonic()
        if now - self._checked_at < REFRESH_S:
            return
        self._checked_at = now
        stored = yield client_step("hget", self.keys.partitions, PARTITION_COUNT_FIELD)
        if stored is not None and int(stored) != self.partitions:
            self._adopt(int(stored))

    def _declare_plan(self) -> Plan[None]:
        """Store the count if none is (HSETNX), else compare; register the partitions (one SADD). Once
        declared, follow a resize (re-read every :data:`REFRESH_S`)."""
        if self._declared:
            return (yield from self._refresh_plan())
        created = yield client_step("hsetnx", self.keys.partitions, PARTITION_COUNT_FIELD, self.partitions)
        if not created:
            stored = yield client_step("hget", self.keys.partitions, PARTITION_COUNT_FIELD)
            if stored is not None and int(stored) != self.partitions:
                raise PartitionCountMismatch(
                    f"queue {self.name!r} is stored with {int(stored)} partitions, but this "
                    f"{type(self).__name__} declares {self.partitions}: every producer and worker must use the "
                    "same count (see docs/partitioned-queues.md, changing the partition count)")
        yield client_step("sadd", K.QUEUES, *self.partition_names)
        for part in self.parts:
            part._registered = True
        self._declared = True
        self._checked_at = time.monotonic()

    def _resize_plan(self, partitions: int) -> Plan[None]:
        """Store a new count; workers serve the old partitions too until they are empty (see
        docs/partitioned-queues.md, changing the partition count)."""
        count = K.validate_partitions(partitions)
        yield from self._declare_plan()
        stored, old = yield client_step("hmget", self.keys.partitions, [PARTITION_COUNT_FIELD, OLD_COUNT_FIELD])
        if old is not None:
            raise PartitionResizeInProgress(
                f"queue {self.name!r} is being resized from {int(old)} to {int(stored)} partitions; workers end that "
                f"once the {int(old)} old partitions are empty (no new resize before)")
        current = int(stored) if stored is not None else self.partitions
        if count == current:
            return
        names = K.partition_names(self.name, count)
        yield client_step("sadd", K.QUEUES, *names)
        now_ms = int(time.time() * 1000)
        yield client_step("hset", self.keys.partitions,
                          mapping={PARTITION_COUNT_FIELD: count, OLD_COUNT_FIELD: current, RESIZED_AT_FIELD: now_ms})
        self._adopt(count)

    def _enqueue_many_plan(self, jobs: Sequence[EnqueueData], at_front: bool,
                           partition_keys: Sequence[str | None] | None) -> Plan[list[J]]:
        keys = self._check_many(jobs, partition_keys)  # bad input fails before any I/O
        yield from self._declare_plan()  # first: it follows a resize
        groups = self._group(jobs, keys)
        order = sorted(groups)
        outs = yield from gather([self.parts[i]._enqueue_plan([jobs[p] for p in groups[i]], at_front) for i in order])
        placed: list[Any] = [None] * len(jobs)
        for index, (enqueued, _) in zip(order, outs):
            for position, job in zip(groups[index], enqueued):
                placed[position] = job
        return placed

    def _counts_plan(self) -> Plan[list[int]]:
        replies = yield store_step("read_many", sum_counts_commands(self.partition_names))
        return parse_counts(replies)

    def _registry_counts_plan(self, name: str) -> Plan[list[int]]:
        commands = [("ZCARD", K.QueueKeys(n).registry(name)) for n in self.partition_names]
        return [int(r or 0) for r in (yield store_step("read_many", commands))]

    def _all_plan(self, make: Callable[[Q], Plan[Any]]) -> Plan[list[Any]]:
        yield from self._declare_plan()
        return (yield from gather([make(part) for part in self.parts]))

    def _delete_all_plan(self) -> Plan[None]:
        """Delete every partition, those a running resize retires included, then the stored count."""
        stored, old = yield client_step("hmget", self.keys.partitions, [PARTITION_COUNT_FIELD, OLD_COUNT_FIELD])
        names = served(self.name, int(stored) if stored else self.partitions, int(old) if old else None)
        parts = self._make_parts(names)
        yield from gather([part._delete_plan() for part in parts])
        yield client_step("delete", self.keys.partitions)
        self._declared = False

    def _is_suspended_plan(self) -> Plan[bool]:
        replies = yield store_step("read_many", [("HGET", part.keys.control, "sus") for part in self.parts])
        return all(r for r in replies)

    def _find_plan(self, job_id: str) -> Plan[int | None]:
        """The partition holding a record for ``job_id`` (the one its id routes to first), or None."""
        replies = yield store_step("read_many", [("EXISTS", part.keys.job(job_id)) for part in self.parts])
        routed = partition_of(f"i:{job_id}", self.partitions)
        if replies[routed]:
            return routed
        return next((i for i, r in enumerate(replies) if r), None)

    def _set_rate_limit_plan(self, max_jobs: int, per_s: float) -> Plan[None]:
        if isinstance(max_jobs, bool) or not isinstance(max_jobs, int) or max_jobs < 1:
            raise ValueError(f"max_jobs must be a positive int, got {max_jobs!r}")
        if isinstance(per_s, bool) or not isinstance(per_s, (int, float)) or per_s < 0.001:
            raise ValueError(f"per_s must be at least 0.001 seconds, got {per_s!r}")
        shares = rate_limit_shares(max_jobs, float(per_s), self.partitions)
        yield from self._all_plan(lambda part: part._set_rate_limit_plan(*shares[self.parts.index(part)]))
        yield client_step("hset", self.keys.partitions, RATE_LIMIT_FIELD, f"{max_jobs}/{float(per_s)!r}")

    def _remove_rate_limit_plan(self) -> Plan[None]:
        yield from self._all_plan(lambda part: part._remove_rate_limit_plan())
        yield client_step("hdel", self.keys.partitions, RATE_LIMIT_FIELD)

    def _rate_limit_plan(self) -> Plan[tuple[int, float] | None]:
        raw = yield client_step("hget", self.keys.partitions, RATE_LIMIT_FIELD)
        if raw is None:
            return None
        text = raw.decode() if isinstance(raw, bytes) else str(raw)
        count, per = text.split("/", 1)
        return int(count), float(per)


def rate_limit_shares(max_jobs: int, per_s: float, partitions: int) -> list[tuple[int, float]]:
    """Each partition's own limit, so that the partitions together start at most ``max_jobs`` per
    ``per_s`` on average: with ``max_jobs >= partitions``, partition i gets ``max_jobs // partitions`` (one
    more for the first ``max_jobs % partitions``) per ``per_s``; with fewer jobs than partitions, each
    partition gets 1 per ``per_s * partitions / max_jobs``."""
    if max_jobs >= partitions:
        base, extra = divmod(max_jobs, partitions)
        return [(base + (1 if i < extra else 0), per_s) for i in range(partitions)]
    return [(1, per_s * partitions / max_jobs)] * partitions


# --- workers: a logical name to its partitions --------------------------------------------------------

def partition_count_commands(names: Sequence[str]) -> list[tuple[Any, ...]]:
    return [("HMGET", K.QueueKeys(name).partitions, PARTITION_COUNT_FIELD, OLD_COUNT_FIELD) for name in names]


def served(name: str, count: int | None, old: int | None) -> tuple[str, ...]:
    """The partitions a worker serves: the current ones, then (during a resize) the old ones not among them."""
    current = K.partition_names(name, count) if count else (name,)
    if not old:
        return current
    return current + tuple(p for p in K.partition_names(name, old) if p not in current)


def _int(raw: Any) -> int | None:
    return int(raw) if raw else None


def expand(names: Sequence[str], replies: Sequence[Any]) -> dict[str, tuple[str, ...]]:
    """Each name to the partitions a worker serves (itself alone when not partitioned), from the stored
    counts (and, during a resize, the old count)."""
    return {name: served(name, _int(reply[0]), _int(reply[1])) for name, reply in zip(names, replies)}


def retire_commands(name: str, count: int, old: int) -> list[tuple[Any, ...]]:
    """Reads that tell whether the partitions a resize retired are empty (7 replies per partition)."""
    current = set(K.partition_names(name, count))
    commands: list[tuple[Any, ...]] = []
    for part in K.partition_names(name, old):
        if part in current:
            continue
        qk = K.QueueKeys(part)
        commands += [*sum_counts_commands([part]), ("ZCARD", qk.active), ("ZCARD", qk.scheduled),
                     ("ZCARD", qk.deferred)]
    return commands


def retired_empty(replies: Sequence[Any]) -> bool:
    for i in range(0, len(replies), 7):
        waiting = parse_counts(replies[i : i + 4])[0]
        if waiting or any(int(r or 0) for r in replies[i + 4 : i + 7]):
            return False
    return True


def resolve_partitions(client: Any, names: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """Read the stored partition count of each queue in ``names`` (one pipeline per node) and return each
    name's partitions (a name stored with no count is an ordinary queue: itself)."""
    if not names:
        return {}
    pipe = client.pipeline(transaction=False)
    for command in partition_count_commands(names):
        pipe.execute_command(*command)
    return expand(names, pipe.execute())


def stored_partitions(client: Any, name: str) -> int | None:
    raw = client.hget(K.QueueKeys(name).partitions, PARTITION_COUNT_FIELD)
    return int(raw) if raw else None


def layout(client: Any, names: Sequence[str]) -> list[tuple[str, int, str]]:
    """Where each partition lives: (queue name, slot, node "host:port" or "" off a cluster)."""
    out = []
    nodes = getattr(client, "nodes_manager", None)
    for name in names:
        slot = K.queue_slot(name)
        where = ""
        if nodes is not None:
            node = nodes.get_node_from_slot(slot)
            where = f"{node.host}:{node.port}"
        out.append((name, slot, where))
    return out


__all__ = ["PartitionCountMismatch", "PartitionedCore", "check_partition_key", "gather", "layout", "partition_of",
           "rate_limit_shares", "resolve_partitions", "routing_key", "stored_partitions"]
