"""What the sync and asyncio counter buffers share: validation, routing a key to its partition, the calls
of the buffer scripts, and reading flush records. No I/O here.

A counter buffer coalesces hot increments (``times_seen += 1`` on every event) in Redis and hands them to
a user function in sums, one job per counter key, so the database sees one ``UPDATE ... SET n = n + 40``
instead of forty. See :class:`clusterq.Buffer` for the guarantees.
"""

from __future__ import annotations

import dataclasses
import json
import math
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from clusterq.api import options as O
from clusterq.api.enqueue_options import EnqueueData
from clusterq.exceptions import ClusterQError
from clusterq.state import keys as K
from clusterq.state import transitions as TR
from clusterq.state.transitions import Call
from clusterq.utils import function_path

MAX_PARTITIONS = 1024
MAX_KEY_BYTES = 1024
MAX_FIELDS = 64
"""Fields one increment may carry: a buffer key's hash is read whole at flush, so it must stay small."""
INT64 = 2**63 - 1
_JOB_OPTIONS = frozenset(f.name for f in dataclasses.fields(EnqueueData)) - {"func", "args", "kwargs"}


class BufferError(ClusterQError, ValueError):
    """A counter buffer used with bad input or declared differently from what Redis holds."""


@dataclass(frozen=True)
class FlushRecord:
    """One counter key's summed increments, taken from a partition by a flush."""

    partition: int
    seq: str
    key: str
    increments: dict[str, int | float]

    def flush_id(self, buffer: str) -> str:
        """The id of this flush: the job id of its job, and the ``flush_id`` its function receives."""
        return f"buffer:{buffer}:{self.partition}:{self.seq}"


def check_name(name: object) -> str:
    if not isinstance(name, str) or not name:
        raise BufferError(f"a buffer's name must be a non-empty str, got {name!r}")
    return O.text(name, "buffer name", max_bytes=K.MAX_BUFFER_NAME_BYTES, error=BufferError)


def check_partitions(partitions: object) -> int:
    if isinstance(partitions, bool) or not isinstance(partitions, int):
        raise BufferError(f"partitions must be an int from 1 to {MAX_PARTITIONS}, got {partitions!r}")
    if not 1 <= partitions <= MAX_PARTITIONS:
        raise BufferError(f"partitions must be from 1 to {MAX_PARTITIONS}, got {partitions}")
    return partitions


def check_positive(value: object, name: str, *, whole: bool = False, zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise BufferError(f"{name} must be a finite number, got {value!r}")
    if value < 0 or (value == 0 and not zero) or (whole and value != int(value)) or value > 10**9:
        raise BufferError(f"{name} must be {'a whole number' if whole else 'a number'} "
                          f"{'from 0' if zero else 'above 0'} to 10**9, got {value!r}")
    return value


def check_key(key: object) -> str:
    if not isinstance(key, str) or not key:
        raise BufferError(f"a buffer key must be a non-empty str, got {key!r}")
    return O.text(key, "buffer key", max_bytes=MAX_KEY_BYTES, error=BufferError)


def increment_args(increments: object) -> list[str]:
    """``increments`` ({field: amount}) as the script's ARGV pairs, or BufferError naming what is wrong."""
    if not isinstance(increments, Mapping) or not increments:
        raise BufferError(f"increments must be a non-empty dict of field -> number, got {increments!r}")
    if len(increments) > MAX_FIELDS:
        raise BufferError(f"increments has {len(increments)} fields; the limit is {MAX_FIELDS}")
    argv: list[str] = []
    for field, amount in increments.items():
        if not isinstance(field, str) or not field:
            raise BufferError(f"an increment's field must be a non-empty str, got {field!r}")
        O.text(field, "increment field", max_bytes=256, error=BufferError)
        if isinstance(amount, bool) or not isinstance(amount, (int, float)):
            raise BufferError(f"increment {field!r} must be an int or a float, got {amount!r}")
        if isinstance(amount, float):
            if not math.isfinite(amount):
                raise BufferError(f"increment {field!r} must be finite, got {amount!r}")
            argv += [field, repr(amount)]
        else:
            if not -INT64 <= amount <= INT64:
                raise BufferError(f"increment {field!r} is {amount}, beyond a 64-bit integer")
            argv += [field, str(amount)]
    return argv


def partition_of(key: str, partitions: int) -> int:
    """The partition of ``key``: a stable hash, the same in every process and version."""
    return zlib.crc32(key.encode("utf-8")) % partitions if partitions > 1 else 0


def incr_call(bk: K.BufferKeys, key: str, argv: Sequence[str]) -> Call:
    pairs = [argv[i : i + 2] for i in range(0, len(argv), 2)]
    return TR.BUFFER_INCR.call(None, pairs, keys={"pending": bk.pending, "values": bk.values(key)}, member=key)


def take_call(bk: K.BufferKeys, batch: int, lease_ms: int, min_age_ms: int) -> Call:
    keys = {"pending": bk.pending, "inflight": bk.inflight, "values_prefix": bk.values_prefix,
            "flush_prefix": bk.flush_prefix, "seq": bk.seq}
    return TR.BUFFER_TAKE.call(None, keys=keys, batch=batch, lease_ms=lease_ms, min_age_ms=min_age_ms)


def ack_call(bk: K.BufferKeys, seqs: Sequence[str]) -> Call:
    keys = {"inflight": bk.inflight, "flush_prefix": bk.flush_prefix}
    return TR.BUFFER_ACK.call(None, [(s,) for s in seqs], keys=keys)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _number(value: str) -> int | float:
    try:
        return int(value)
    except ValueError:
        return float(value)


def parse_take(partition: int, reply: Sequence[Any]) -> list[FlushRecord]:
    records = []
    width = len(TR.BUFFER_TAKE.reply)
    for i in range(0, len(reply), width):
        seq, raw = _text(reply[i]), json.loads(_text(reply[i + 1]))
        fields = raw.get("fields") or {}  # an empty Lua table encodes as [] or {}
        increments = {str(f): _number(str(v)) for f, v in (fields.items() if isinstance(fields, dict) else ())}
        records.append(FlushRecord(partition, seq, str(raw["key"]), increments))
    return records


@dataclass(frozen=True)
class BufferSpec:
    """A buffer's declaration, checked once; shared by :class:`Buffer` and :class:`AsyncBuffer`."""

    name: str
    partitions: int
    flush_to: str | None
    queue: str
    batch: int
    lease_ms: int
    min_age_ms: int
    interval_s: float
    job_options: dict[str, Any]

    @classmethod
    def of(cls, name: object, partitions: object, flush_to: Callable[..., Any] | str | None, queue: object,
           batch: object, lease_s: object, min_age_s: object, interval_s: object,
           job_options: Mapping[str, Any]) -> BufferSpec:
        reserved = {"job_id", "depends_on", "unique", "debounce", "repeat", "at_front"} & set(job_options)
        if reserved:
            raise BufferError(f"job option(s) {sorted(reserved)} cannot be set on a buffer's flush jobs: "
                              "each flush job's id is its flush id")
        unknown = set(job_options) - _JOB_OPTIONS
        if unknown:
            raise BufferError(f"unknown job option(s) {sorted(unknown)} for a buffer's flush jobs")
        O.check(**job_options)  # the rules enqueue applies, so a bad option fails here, not at a flush
        return cls(
            name=check_name(name),
            partitions=check_partitions(partitions),
            flush_to=None if flush_to is None else O.function_path(function_path(flush_to)),
            queue=K.validate_queue_name(queue),
            batch=int(check_positive(batch, "batch", whole=True)),
            lease_ms=int(check_positive(lease_s, "lease_s") * 1000) or 1,
            min_age_ms=int(check_positive(min_age_s, "min_age_s", zero=True) * 1000),
            interval_s=check_positive(interval_s, "interval_s"),
            job_options=dict(job_options),
        )

    def keys(self, partition: int) -> K.BufferKeys:
        return K.BufferKeys(self.name, partition)

    def incr_call(self, key: object, increments: object) -> Call:
        """The checked call adding ``increments`` to ``key`` in its partition (BufferError if bad)."""
        checked = check_key(key)
        return incr_call(self.keys(partition_of(checked, self.partitions)), checked, increment_args(increments))

    def config_mismatch(self, stored: Any) -> BufferError | None:
        """The error for a partition count in Redis other than this declaration's (None when they agree)."""
        if stored is None or int(_text(stored)) == self.partitions:
            return None
        return BufferError(f"buffer {self.name!r} has {_text(stored)} partitions in Redis, but this Buffer declares "
                           f"{self.partitions}; every producer and flusher must declare the same count")
