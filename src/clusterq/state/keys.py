"""Every Redis key and channel name clusterq uses is built here, and nowhere else.

All keys of one queue share the hash tag ``{<escaped queue name>}`` so that every atomic transition of
that queue (a script, a pipeline, a blocking wait) touches a single cluster slot. The queue name is
escaped before it goes inside the braces, so a ``{`` or ``}`` in a user's name cannot end the tag early
or start a new one: the slot of a queue's keys is always the slot of its escaped name.

Global, rarely written keys (the set of known queues, worker registrations) are single keys of their
own; no script ever combines them with a queue's keys.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property, lru_cache

from clusterq.exceptions import InvalidQueueName

PREFIX = "cq"
HISTORY_STEP_S = 60
"""The resolution of a queue's history: counts are kept per minute."""
HISTORY_KEY_S = 1800
"""The span of one history hash (:meth:`QueueKeys.counts`): 30 minutes x 4 kinds = at most 120 fields, so
the hash stays a compact listpack, and a week is 336 hashes to read, not 10,080."""
HISTORY_RETENTION_S = 7 * 24 * 3600
"""How long a history hash is kept after its last new field (lib/count_minute.lua sets this expiry)."""
MAX_QUEUE_NAME_BYTES = 1024
MAX_JOB_ID_BYTES = 256

# Percent-escaping of exactly the characters that matter to the hash tag (and of the escape itself):
# the escaped name contains neither brace, so the first "}" after the opening "{" is ours.
_ESCAPES = {"%": "%25", "{": "%7B", "}": "%7D"}


def escape_name(name: str) -> str:
    """Escape a user-supplied name so it can sit inside a hash tag without changing the tag."""
    return "".join(_ESCAPES.get(ch, ch) for ch in name)


def validate_queue_name(name: object) -> str:
    """Return ``name`` if it is a usable queue name, else raise :class:`InvalidQueueName`."""
    if not isinstance(name, str):
        raise InvalidQueueName(f"queue name must be a str, got {type(name).__name__}")
    if not name:
        raise InvalidQueueName("queue name must not be empty")
    try:
        size = len(name.encode("utf-8"))
    except UnicodeEncodeError as exc:  # a lone surrogate: no key could be sent for it
        raise InvalidQueueName(f"queue name is not valid text: {exc.reason} at position {exc.start}") from None
    if size > MAX_QUEUE_NAME_BYTES:
        raise InvalidQueueName(f"queue name is {size} bytes long; the limit is {MAX_QUEUE_NAME_BYTES} bytes")
    return name


@dataclass(frozen=True)
class QueueKeys:
    """The keys of one queue. Every attribute shares the queue's hash tag, hence one slot."""

    name: str

    @cached_property
    def base(self) -> str:
        return f"{PREFIX}:{{{escape_name(self.name)}}}"

    @cached_property
    def pending(self) -> str:
        """List of job ids waiting to run, consumed from the left."""
        return f"{self.base}:pending"

    @cached_property
    def active(self) -> str:
        """Sorted set of leased job ids, scored by lease deadline (ms)."""
        return f"{self.base}:active"

    @cached_property
    def finished(self) -> str:
        """Sorted set of finished job ids, scored by the time their record expires (ms)."""
        return f"{self.base}:finished"

    @cached_property
    def failed(self) -> str:
        """Sorted set of failed job ids, scored by the time their record expires (ms)."""
        return f"{self.base}:failed"

    @cached_property
    def canceled(self) -> str:
        """Sorted set of canceled job ids, scored by the time their record expires (ms)."""
        return f"{self.base}:canceled"

    @cached_property
    def scheduled(self) -> str:
        """Sorted set of scheduled (delayed) job ids, scored by the time they are due to run (ms)."""
        return f"{self.base}:scheduled"

    @cached_property
    def deferred(self) -> str:
        """Sorted set of deferred job ids (waiting for their dependencies), scored by creation time (ms)."""
        return f"{self.base}:deferred"

    @cached_property
    def outbox(self) -> str:
        """Sorted set of cross-slot intents written by this queue's scripts, scored by when (ms): the
        forwarder applies each to the other slot, then removes it (design brief: outbox, then apply)."""
        return f"{self.base}:outbox"

    @cached_property
    def dependents_prefix(self) -> str:
        """Prefix of the sets of a job's dependents (children, groups); scripts append the job id."""
        return f"{self.base}:dep:"

    def dependents(self, job_id: str) -> str:
        return self.dependents_prefix + job_id

    @cached_property
    def group_prefix(self) -> str:
        """Prefix of group records (hashes) that live in this queue's slot; scripts append the group id."""
        return f"{self.base}:gh:"

    @cached_property
    def group_seen_prefix(self) -> str:
        """Prefix of the sets of members a group has counted (replays are ignored); + group id."""
        return f"{self.base}:gs:"

    def group(self, group_id: str) -> str:
        return self.group_prefix + group_id

    def group_seen(self, group_id: str) -> str:
        return self.group_seen_prefix + group_id

    @cached_property
    def stats(self) -> str:
        """Hash of O(1) counters: tombstones left in ``pending`` by cancel/delete, totals."""
        return f"{self.base}:stats"

    @cached_property
    def prio(self) -> str:
        """Sorted set of waiting jobs that have a priority (1..9), scored by level then arrival order.
        Jobs without a priority wait in ``pending`` and run before these."""
        return f"{self.base}:prio"

    @cached_property
    def control(self) -> str:
        """Hash of the queue's controls: suspended flag, rate limit and its window counter, concurrency
        limits per key (read by every lease: one small hash)."""
        return f"{self.base}:ctl"

    @cached_property
    def limit_running_prefix(self) -> str:
        """Prefix of the sets of running job ids per concurrency key; scripts append the key."""
        return f"{self.base}:lr:"

    @cached_property
    def limit_waiting_prefix(self) -> str:
        """Prefix of the lists of jobs set aside because their concurrency key was at its limit."""
        return f"{self.base}:lw:"

    @cached_property
    def limit_keys(self) -> str:
        """Sorted set of concurrency keys that have jobs set aside (scored by when first set aside), so
        maintenance can find them in bounded batches."""
        return f"{self.base}:lk"

    @cached_property
    def limit_keys_all(self) -> tuple[str, str, str]:
        """The three concurrency-limit keys every script that ends a lease passes, in this order."""
        return (self.limit_running_prefix, self.limit_waiting_prefix, self.limit_keys)

    def debounce(self, key: str) -> str:
        """The id of the job currently collecting enqueues for debounce key ``key``."""
        return f"{self.base}:db:{key}"

    def counts(self, span: int) -> str:
        """Hash of the queue's per-minute counts in one half hour (``span``: seconds since the epoch //
        :data:`HISTORY_KEY_S`, on the caller's clock): fields ``<minute>:<kind>`` (minute: the server's
        ms // 60000; kind ``enqueued``, ``finished``, ``failed`` or ``retried``). Written by enqueue,
        complete and requeue_expired (one HINCRBY per kind per call); expires :data:`HISTORY_RETENTION_S`
        after its last new field; read by :func:`clusterq.api.history.queue_history`."""
        return f"{self.base}:m:{span}"

    @cached_property
    def partitions(self) -> str:
        """String: the partition count of the partitioned queue whose partition 0 this is, written once
        (``SET NX``) by the first producer that declares it (see ``partition_names`` below)."""
        return f"{self.base}:parts"

    @cached_property
    def wake_channel(self) -> str:
        """Sharded pub/sub channel published when ``pending`` goes from empty to non-empty."""
        return f"{self.base}:wake"

    @cached_property
    def cron(self) -> str:
        """Hash: periodic job name -> its last tick taken (ms); written only by ``cron_tick.lua``."""
        return f"{self.base}:cron"

    def cron_runs(self, name: str) -> str:
        """List of a periodic job's recent runs (``"<tick ms> <job id>"``, newest first, capped)."""
        return f"{self.base}:cron:r:{escape_name(name)}"

    def cron_run_now(self, name: str) -> str:
        """String: an operator's pending "run now" request for a periodic job (the request's ms), set only
        if absent (one request pending at a time) and taken by ``cron_tick.lua`` in mode "manual"."""
        return f"{self.base}:cron:n:{escape_name(name)}"

    @cached_property
    def results_channel(self) -> str:
        """Sharded pub/sub channel carrying the id of a job that got a result, published only when
        someone waits for that job (``Job.latest_result(timeout=)``)."""
        return f"{self.base}:done"

    @cached_property
    def history_prefix(self) -> str:
        """Prefix of the per-job result histories (capped lists); scripts append the job id to it.

        ``h:`` is not a prefix of any other key of the queue (``j:`` for records, fixed names otherwise),
        so a history key cannot be another job's record or history whatever the ids contain."""
        return f"{self.base}:h:"

    def history(self, job_id: str) -> str:
        return self.history_prefix + job_id

    @cached_property
    def job_prefix(self) -> str:
        """Prefix of job hashes; scripts append the job id to it (the id never holds the tag)."""
        return f"{self.base}:j:"

    def job(self, job_id: str) -> str:
        return self.job_prefix + job_id

    def registry(self, name: str) -> str:
        """Key of a registry by its public name (``started``, ``finished``, ``failed``, ``canceled``,
        ``scheduled``, ``deferred``)."""
        try:
            return _REGISTRY_KEYS[name](self)
        except KeyError:
            raise ValueError(f"unknown registry {name!r}; expected one of {sorted(_REGISTRY_KEYS)}") from None


_REGISTRY_KEYS: dict[str, Callable[[QueueKeys], str]] = {
    "started": lambda k: k.active,
    "finished": lambda k: k.finished,
    "failed": lambda k: k.failed,
    "canceled": lambda k: k.canceled,
    "scheduled": lambda k: k.scheduled,
    "deferred": lambda k: k.deferred,
}

MAX_BUFFER_NAME_BYTES = 200
"""A counter buffer's name goes into its flush ids (job ids, at most MAX_JOB_ID_BYTES) with room to spare."""


@dataclass(frozen=True)
class BufferKeys:
    """The keys of one partition of a counter buffer (:class:`clusterq.Buffer`); all share one hash tag.

    The tag is ``{<escaped name>:<partition>}`` behind the prefix ``cq:buf:``: a queue's keys start with
    ``cq:{``, so no queue name can make a key that equals a buffer's, and the partition follows the escaped
    name after its last ``:`` (an escaped name never ends a tag early, see :func:`escape_name`). The user's
    counter key comes after the tag (in :meth:`values`), so it never changes the slot.
    """

    name: str
    partition: int

    @cached_property
    def base(self) -> str:
        return f"{PREFIX}:buf:{{{escape_name(self.name)}:{self.partition}}}"

    @cached_property
    def pending(self) -> str:
        """Sorted set of the counter keys with increments not yet flushed, scored by first increment (ms)."""
        return f"{self.base}:pending"

    @cached_property
    def values_prefix(self) -> str:
        return f"{self.base}:v:"

    def values(self, key: str) -> str:
        """Hash of one counter key's summed increments since its last flush: field -> sum."""
        return f"{self.values_prefix}{key}"

    @cached_property
    def inflight(self) -> str:
        """Sorted set of flush records taken by a flusher, scored by the end of their lease (ms)."""
        return f"{self.base}:inflight"

    @cached_property
    def flush_prefix(self) -> str:
        """Prefix of the flush records (strings of JSON), followed by the record's sequence number."""
        return f"{self.base}:f:"

    @cached_property
    def seq(self) -> str:
        """Counter numbering the partition's flush records."""
        return f"{self.base}:seq"

    @cached_property
    def config(self) -> str:
        """String holding the buffer's partition count (partition 0's only), set once by the first user."""
        return f"{self.base}:config"


# Global keys: each is one key on its own; never used together with a queue's keys.
QUEUES = f"{PREFIX}:queues"
"""Set of known queue names (read with SSCAN)."""
WORKERS = f"{PREFIX}:workers"
"""Sorted set of worker names scored by their registration's expiry (ms)."""
# The global suspend flag and its channel share a hash tag no escaped queue name can equal ("%" is
# always escaped as "%25" in queue names), so they sit in one slot of their own.
SUSPENDED = f"{PREFIX}:{{%g}}:suspended"
"""Present while every queue is suspended (:func:`clusterq.suspend`); read by workers on a signal."""
CONTROL_CHANNEL = f"{PREFIX}:{{%g}}:ctl"
"""Sharded pub/sub channel published when the global suspend flag changes."""
PERIODIC = f"{PREFIX}:periodic"
"""Hash: periodic job name -> its declaration (JSON), written when a scheduler starts, read by listings."""
AUDIT = f"{PREFIX}:audit"
"""List of the dashboard's audit records (JSON, newest first), trimmed to a fixed length on every write."""


# Notifications (clusterq.observability.notify): every key shares the hash tag "{%n}", which no escaped
# queue name can equal ("%" is escaped as "%25"), so a flush of every rule's counters is one transaction
# in one slot. Rule names are the operator's text, escaped as queue names are.
NOTIFY_BASE = f"{PREFIX}:{{%n}}"
NOTIFY_CHECK_LOCK = f"{NOTIFY_BASE}:lock"
"""String set with NX and an expiry: the worker holding it runs this interval's periodic alert checks."""
NOTIFY_LAST_CHECK = f"{NOTIFY_BASE}:checked"
"""String: when (ms) the periodic checks last ran (a gap that long makes the lost-worker check skip a round)."""
NOTIFY_SEEN = f"{NOTIFY_BASE}:seen"
"""Hash: live worker name -> its last heartbeat (ms) at the previous check (bounded by the worker listing)."""


def notify_count(rule: str) -> str:
    """String: events counted for ``rule`` in its open window (INCRBY); the first creates it and
    schedules the window's digest, which renames it away (:func:`notify_taken`)."""
    return f"{NOTIFY_BASE}:c:{escape_name(rule)}"


def notify_samples(rule: str) -> str:
    """List: the first few events of ``rule``'s open window (RPUSH then LTRIM: bounded)."""
    return f"{NOTIFY_BASE}:s:{escape_name(rule)}"


def notify_taken(rule: str, digest: str) -> tuple[str, str]:
    """The count and samples of one window once its digest took them (renamed, so a retried digest finds
    them and new events open a new window)."""
    return (f"{NOTIFY_BASE}:tc:{escape_name(rule)}:{escape_name(digest)}",
            f"{NOTIFY_BASE}:ts:{escape_name(rule)}:{escape_name(digest)}")


def worker(name: str) -> str:
    """Hash describing one worker (host, pid, queues, current jobs)."""
    return f"{PREFIX}:w:{escape_name(name)}"


# --- slot math ------------------------------------------------------------------------------------

def _crc16_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
        table.append(crc & 0xFFFF)
    return table


_CRC16 = _crc16_table()


def crc16(data: bytes) -> int:
    """CRC16-CCITT (XMODEM), the checksum Redis Cluster uses for slots."""
    crc = 0
    for byte in data:
        crc = ((crc << 8) & 0xFFFF) ^ _CRC16[((crc >> 8) ^ byte) & 0xFF]
    return crc


def key_slot(key: str | bytes) -> int:
    """The cluster slot of ``key``, honouring hash tags exactly as Redis does."""
    raw = key.encode("utf-8", "surrogatepass") if isinstance(key, str) else key
    start = raw.find(b"{")
    if start != -1:
        end = raw.find(b"}", start + 1)
        if end > start + 1:
            raw = raw[start + 1 : end]
    return crc16(raw) % 16384


def queue_slot(name: str) -> int:
    """The slot every key of queue ``name`` lives in."""
    return key_slot(QueueKeys(name).base)


# --- partitioned queues ---------------------------------------------------------------------------
# A partitioned queue ``name`` with P partitions is P ordinary queues. Partition 0 is the queue ``name``
# itself (so P=1 is an ordinary queue, and jobs an unpartitioned producer or a periodic job writes to
# ``name`` are served too); partition i >= 1 is the queue ``name~p<i>.<xyz>``, where the three characters
# ``xyz`` are chosen so that its slot is exactly ``(slot(name) + round(i * 16384 / P)) % 16384``: the P
# partitions sit evenly spaced over the slot space, so on any cluster whose primaries own even shares of
# the slots they spread evenly over the primaries. The partition count is stored in the config key
# :attr:`QueueKeys.partitions` (in partition 0's slot) by the first producer that declares it.

MAX_PARTITIONS = 1024
PARTITION_SEPARATOR = "~p"
_SUFFIX_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"
_SLOTS = 16384


def _suffix_table() -> dict[int, bytes]:
    """14-bit CRC value -> a 3-character suffix whose CRC16 has it. CRC16 (XMODEM, zero start, no final
    xor) is linear, so ``crc(a + b + c) = crc(a00) ^ crc(b0) ^ crc(c)`` and, for any prefix,
    ``crc(prefix + s) = crc(prefix + 000) ^ crc(s)``: one table serves every queue name."""
    t0 = [crc16(bytes([c, 0, 0])) for c in _SUFFIX_ALPHABET]
    t1 = [crc16(bytes([c, 0])) for c in _SUFFIX_ALPHABET]
    t2 = [crc16(bytes([c])) for c in _SUFFIX_ALPHABET]
    table: dict[int, bytes] = {}
    for i, a in enumerate(_SUFFIX_ALPHABET):
        for j, b in enumerate(_SUFFIX_ALPHABET):
            ab = t0[i] ^ t1[j]
            for k, c in enumerate(_SUFFIX_ALPHABET):
                table.setdefault((ab ^ t2[k]) & (_SLOTS - 1), bytes((a, b, c)))
    return table


_SUFFIXES: dict[int, bytes] | None = None


def _suffix_for(value: int) -> bytes:
    global _SUFFIXES
    if _SUFFIXES is None:
        _SUFFIXES = _suffix_table()
    for delta in range(_SLOTS):  # every value is covered (tests/test_partitions_unit.py); nearest otherwise
        for candidate in (value + delta, value - delta):
            found = _SUFFIXES.get(candidate % _SLOTS)
            if found is not None:
                return found
    raise AssertionError("empty suffix table")


def validate_partitions(partitions: object) -> int:
    """Return ``partitions`` if it is a usable partition count (an int from 1 to :data:`MAX_PARTITIONS`)."""
    if isinstance(partitions, bool) or not isinstance(partitions, int):
        raise ValueError(f"partitions must be an int from 1 to {MAX_PARTITIONS}, got {partitions!r} "
                         f"({type(partitions).__name__})")
    if not 1 <= partitions <= MAX_PARTITIONS:
        raise ValueError(f"partitions must be an int from 1 to {MAX_PARTITIONS}, got {partitions}")
    return partitions


def partition_target_slot(name: str, index: int, partitions: int) -> int:
    """The slot partition ``index`` of ``partitions`` is placed in: evenly spaced from ``name``'s slot."""
    return (queue_slot(name) + round(index * _SLOTS / partitions)) % _SLOTS


def partition_name(name: str, index: int, partitions: int) -> str:
    """The queue name of partition ``index`` (0-based) of the partitioned queue ``name``."""
    validate_partitions(partitions)
    if not 0 <= index < partitions:
        raise ValueError(f"partition index {index} out of range for {partitions} partitions")
    if index == 0:
        return name
    head = f"{name}{PARTITION_SEPARATOR}{index}."
    tag_head = escape_name(head).encode("utf-8", "surrogatepass")
    target = partition_target_slot(name, index, partitions)
    suffix = _suffix_for((target ^ crc16(tag_head + b"\0\0\0")) & (_SLOTS - 1))
    return head + suffix.decode("ascii")


@lru_cache(maxsize=256)
def partition_names(name: str, partitions: int) -> tuple[str, ...]:
    """The queue names of every partition of ``name``, partition 0 (``name`` itself) first."""
    validate_queue_name(name)
    size = len(name.encode("utf-8"))
    if partitions > 1 and size > MAX_QUEUE_NAME_BYTES - 16:
        raise InvalidQueueName(f"a partitioned queue's name may be at most {MAX_QUEUE_NAME_BYTES - 16} bytes long "
                               f"(its partitions' names add up to 16); got {size}")
    return tuple(partition_name(name, i, partitions) for i in range(validate_partitions(partitions)))
