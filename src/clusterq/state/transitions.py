"""The Python-Lua contract: every transition script described once, by name.

Each :class:`Transition` names the script's KEYS (in order), its fixed ARGV, the repeating ARGV group
(one per job, outcome, lease or field) and, where the script answers with codes, an ``IntEnum`` of them.
Calls are built from those names (:meth:`Transition.call`), and replies are read through the parsers
below, so no caller counts positions or compares a bare integer. ``tests/test_contract.py`` holds each
description against its ``.lua`` file (the header, the ``local name = KEYS[i]`` bindings, the group loops
and the ``local CODE = {...}`` table), so the two sides cannot disagree.

Key names are :class:`~clusterq.state.keys.QueueKeys` attribute names; a key that is not one (a job's
own key, a group's hash, a debounce pointer) is passed to :meth:`Transition.call` by name.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from enum import IntEnum
from typing import Any, TypeVar

from clusterq.state import keys as K
from clusterq.state import scripts as S

_T = TypeVar("_T")

# --- return codes -------------------------------------------------------------------------------------


class Created(IntEnum):
    """Per job, from enqueue, schedule and defer."""

    #: the job was created
    CREATED = 1
    #: a job with that id already existed (in any state); nothing changed
    EXISTED = 0
    #: unique only: a job with that id is scheduled, queued, started or deferred
    DUPLICATE = -1


class CompleteCode(IntEnum):
    """Per outcome, from complete."""

    #: recorded
    RECORDED = 1
    #: recorded, and the job's dependents are to be told (an outbox intent was written)
    NOTIFY = 2
    #: the lease was lost (taken over, canceled, deleted): the outcome was dropped
    LEASE_LOST = 0
    #: recorded, and the job runs again (its Retry or Repeat plan had a run left)
    AGAIN = 3


class ExtendCode(IntEnum):
    """Per lease, from extend."""

    #: the lease was extended
    EXTENDED = 1
    #: extended, but a stop was requested: the worker stops the job (the fallback for a lost message)
    STOP_REQUESTED = 2
    #: the lease was lost (taken over, canceled or deleted)
    LEASE_LOST = 0


class CancelCode(IntEnum):
    #: the job was canceled
    CANCELED = 1
    #: canceled, and its dependents are to be told (an outbox intent was written)
    NOTIFY = 2
    #: no such job
    NO_SUCH_JOB = 0
    #: the job already finished, failed or was canceled; its status is unchanged
    ALREADY_ENDED = -1


class DeleteCode(IntEnum):
    #: the job was deleted
    DELETED = 1
    #: deleted, and its dependents are to be told (an outbox intent was written)
    NOTIFY = 2
    #: no such job (its registry entries, if any, were removed)
    NO_SUCH_JOB = 0


class RequeueCode(IntEnum):
    #: the job is queued again
    REQUEUED = 1
    #: no such job
    NO_SUCH_JOB = 0
    #: the job is queued or running: nothing changed
    NOT_ENDED = -1


class StopCode(IntEnum):
    #: the stop was requested (stored on the job and published to its worker)
    STOP_REQUESTED = 1
    #: no such job
    NO_SUCH_JOB = 0
    #: the job is not running (status unchanged)
    NOT_RUNNING = -1


class SetFieldsCode(IntEnum):
    #: the fields were set
    UPDATED = 1
    #: no such job (nothing was written, so a deleted record is not recreated)
    NO_SUCH_JOB = 0


class ConfigureCode(IntEnum):
    #: the control fields were set or cleared and the queue's workers woken
    CONFIGURED = 1


class CronTickCode(IntEnum):
    #: the tick's job was enqueued
    ENQUEUED = 1
    #: the tick was already taken (or its job id already existed)
    TAKEN = 0
    #: the tick was recorded without running (mode "skip", or "resume" for a new declaration)
    RECORDED = 2
    #: the tick is later than the server's clock: offer it again later
    EARLY = 3
    #: recorded without running: the previous run has not ended (overlap off)
    OVERLAP = 4


class DebounceCode(IntEnum):
    #: a new job was created (a new window started)
    CREATED = 1
    #: the job collecting this key was updated (the latest call wins)
    UPDATED = 0
    #: nothing done: the job is signed and the pointer names another id (sign for that id, call again)
    OTHER_ID = 2


class ResolveCode(IntEnum):
    #: nothing done: already counted, no longer deferred, no such child, or not its parent
    NOTHING = 0
    #: counted; the child still waits for other parents
    COUNTED = 1
    #: the child was released to the queue
    RELEASED = 2
    #: the child was canceled (a parent it had to wait for did not finish)
    CANCELED = 3
    #: the child was deleted (delete_dependents)
    DELETED = 4


class GroupOpenCode(IntEnum):
    #: the group was created
    CREATED = 1
    #: the group already existed (create), or the members were added (add)
    EXISTED = 0
    #: members were added to a group that does not exist
    NO_SUCH_GROUP = -1


class GroupCloseCode(IntEnum):
    #: the group's size is fixed; members are still running
    CLOSED = 1
    #: closed, and every member had already ended: the callback was released
    DONE = 2
    #: no such group
    NO_SUCH_GROUP = 0
    #: the group was already closed
    ALREADY_CLOSED = -1


class GroupDoneCode(IntEnum):
    #: the member was already counted (or there is no such group)
    ALREADY_COUNTED = 0
    #: the member was counted
    COUNTED = 1
    #: counted, and the group is done (its callback was released)
    DONE = 2


# --- reply types --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LeasedJob:
    """A job leased to a worker: what it needs to run it and to report its outcome."""

    queue: str
    id: str
    token: int
    func: str
    payload: bytes
    options: bytes
    signature: bytes = b""  # field "sg": checked by a worker that has a signing key
    headers: bytes = b""  # field "hd": the JSON headers map hooks added at enqueue, b"" when none
    retries: int = 0  # field "rt": failed runs retried so far (tells a hook whether a failure is final)


def whole_maker(cls: type[_T]) -> Callable[[Iterable[Any]], _T]:
    """A constructor of the frozen dataclass ``cls`` from the values of every field, in field order: the
    per-job hot paths (a leased job, an outcome), where the generated ``__init__`` sets each field through
    ``object.__setattr__`` and costs about twice as much. The instance is the same (equal, hashable,
    frozen); no default applies, so every field must be given."""
    names = tuple(f.name for f in fields(cls))  # type: ignore[arg-type]
    new = object.__new__

    def make(values: Iterable[Any]) -> _T:
        made = new(cls)
        made.__dict__.update(zip(names, values, strict=True))
        return made

    return make


make_leased_job = whole_maker(LeasedJob)
"""``LeasedJob`` from all nine values, in field order (:func:`whole_maker`)."""


@dataclass(frozen=True)
class LeaseReply:
    """What a lease call answered: the jobs, whether more wait, and whether the queue held them back."""

    remaining: int  # 0 when nothing more waits
    jobs: list[LeasedJob]
    suspended: bool = False
    wait_s: float = 0.0  # > 0: the queue's rate limit is spent for this long


@dataclass(frozen=True)
class ScheduleReply:
    run_at_ms: int
    codes: list[Created]


@dataclass(frozen=True)
class PromoteReply:
    promoted: int
    next_at_ms: int  # -1: nothing is scheduled
    now_ms: int  # the server's time

    @property
    def due_in_s(self) -> float | None:
        """Seconds until the next scheduled job is due, on the server's clock (None: none is scheduled)."""
        return None if self.next_at_ms < 0 else max(0.0, (self.next_at_ms - self.now_ms) / 1000)


@dataclass(frozen=True)
class RecoverReply:
    requeued: int
    abandoned: int  # failed as abandoned (attempt limit reached)
    next_in_ms: int  # until the earliest lease left expires, on the server's clock (-1: none held)
    abandoned_ids: list[str]  # those jobs' ids (the worker's on_abandoned hooks)

    @property
    def due_in_s(self) -> float | None:
        """Seconds until the earliest lease still held expires (None: no job is leased)."""
        return None if self.next_in_ms < 0 else self.next_in_ms / 1000


@dataclass(frozen=True)
class CronTickReply:
    code: CronTickCode
    now_ms: int  # the server's time
    last_ms: int  # the last tick taken before this call, -1 none


@dataclass(frozen=True)
class DebounceReply:
    code: DebounceCode
    job_id: str


@dataclass(frozen=True)
class ResultsReply:
    latest: list[Any]  # the record's hk, ht, r, e, s, te (None where absent)
    history: list[Any]  # "<kind><ms>:<data>", newest first


@dataclass(frozen=True)
class OutboxDueReply:
    now_ms: int
    oldest_ms: int  # score of the oldest entry, -1 when the outbox is empty
    entries: list[Any]


def text(value: Any) -> str:
    return value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else str(value)


def raw(value: Any) -> bytes:
    return value.encode("utf-8", "surrogateescape") if isinstance(value, str) else value


# --- the descriptions ---------------------------------------------------------------------------------

JOB_FIELDS = ("id", "func", "payload", "options", "meta", "ttl_s", "max_attempts", "flag", "signature",
              "priority", "concurrency_key", "headers")
"""The values that describe a new job, in the order every creating script reads them (lib/job_record.lua)."""

LEASED_FIELDS = ("id", "token", "func", "payload", "options", "signature", "headers", "retries")
"""What lease answers per leased job, in order (lease.lua's Returns); each is a :class:`LeasedJob` field."""
TAKEN_FIELDS = ("token", "func", "payload", "options", "headers", "retries")
"""What take answers for the job it took, in order (take.lua's Returns); each is a :class:`LeasedJob` field."""

OUTCOME_FIELDS = ("id", "token", "status", "data", "keep_ms", "plan", "history", "note")
LEASE_FIELDS = ("id", "token")
FIELD_PAIR = ("field", "value")
LIMIT_KEYS = ("limit_running_prefix", "limit_waiting_prefix", "limit_keys")
"""The concurrency-limit keys every script that ends a lease declares (``QueueKeys.limit_keys_all``)."""


@dataclass(frozen=True)
class Call:
    """One script invocation: everything needed to run it, and nothing about how."""

    script: S.Script
    keys: tuple[str, ...]
    args: tuple[Any, ...]
    jobs: int = 1
    """How many jobs the call works on (a lease's count, a batch's items): what it holds the server for is
    about proportional to it, so a caller that bounds the hold of one write (:meth:`~clusterq.state.store.
    Store.run_many`'s ``write_jobs``) adds these up."""


_ARG_SETS: dict[tuple[str, ...], frozenset[str]] = {}


@functools.lru_cache(maxsize=4096)
def _queue_keys(names: tuple[str, ...], qk: K.QueueKeys) -> tuple[str, ...] | None:
    """``qk``'s keys of those names, or None when one is not a plain QueueKeys key (it must be given)."""
    values = tuple(getattr(qk, name, None) for name in names)
    return tuple(str(v) for v in values) if all(isinstance(v, str) for v in values) else None


@dataclass(frozen=True)
class Transition:
    """One script's contract: KEYS and ARGV by name, the repeating group, and its return codes."""

    script: S.Script
    keys: tuple[str, ...]
    args: tuple[str, ...] = ()
    group: tuple[str, ...] = ()  # one group of ARGV per item, after the fixed ARGV
    codes: type[IntEnum] | None = None
    optional_keys: int = 0  # how many trailing keys a call may leave out
    reply: tuple[str, ...] = ()  # the named values of the reply (of each item, when it repeats), in order

    @property
    def name(self) -> str:
        return self.script.name

    def call(self, qk: K.QueueKeys | None, groups: Iterable[Sequence[Any]] = (), *,
             keys: Mapping[str, str] | None = None, **args: Any) -> Call:
        """Build a call: each key named in :attr:`keys` is ``keys[name]`` or else ``qk.<name>``; each fixed
        argument is the keyword of its name; ``groups`` holds one sequence of :attr:`group` values per item."""
        named = _queue_keys(self.keys, qk) if keys is None and qk is not None else None
        if named is None:
            named = self._keys(qk, keys or {})
        if args.keys() != self._arg_set:
            raise TypeError(f"{self.name} takes arguments {self.args}, got {tuple(args)}")
        values: list[Any] = [args[name] for name in self.args]
        fixed = len(values)
        for item in groups:
            values.extend(item)
        width = len(self.group)
        if len(values) != fixed and (not width or (len(values) - fixed) % width):
            raise TypeError(f"{self.name}: each group is {width} values {self.group}")
        return Call(self.script, named, tuple(values), (len(values) - fixed) // width if width else 1)

    @property
    def _arg_set(self) -> frozenset[str]:
        return _ARG_SETS.get(self.args) or _ARG_SETS.setdefault(self.args, frozenset(self.args))

    def _keys(self, qk: K.QueueKeys | None, given: Mapping[str, str]) -> tuple[str, ...]:
        named: list[str] = []
        for name in self.keys:
            value = given[name] if name in given else getattr(qk, name, None)
            if not isinstance(value, str):  # a QueueKeys method (a key of one job or group) must be given
                break
            named.append(value)
        if len(named) < len(self.keys) - self.optional_keys:
            raise TypeError(f"{self.name}: no value for key {self.keys[len(named)]!r}")
        return tuple(named)

    def arg(self, call: Call, name: str) -> Any:
        """The value of fixed argument ``name`` in ``call`` (a call of this transition)."""
        return call.args[self.args.index(name)]

    def code(self, reply: Any) -> Any:
        """The reply of a script that answers one code, as a member of :attr:`codes`."""
        assert self.codes is not None, f"{self.name} answers no code"
        return self.codes(int(reply))


ENQUEUE = Transition(S.ENQUEUE, ("pending", "job_prefix", "wake_channel", "prio", "stats", "counts"),
                     ("at_front", "now_ms", "minute"), JOB_FIELDS, Created)
SCHEDULE = Transition(S.SCHEDULE, ("scheduled", "job_prefix", "wake_channel"),
                      ("mode", "ms", "at_front"), JOB_FIELDS, Created)
PROMOTE = Transition(S.PROMOTE, ("scheduled", "pending", "job_prefix", "wake_channel", "prio", "stats"),
                     ("batch",))
CRON_TICK = Transition(S.CRON_TICK, ("cron", "cron_runs", "pending", "job_prefix", "wake_channel", "prio", "stats",
                                    "run_now"),
                       ("name", "tick_ms", "mode", "keep_runs", *JOB_FIELDS[:7], "overlap", *JOB_FIELDS[8:]),
                       codes=CronTickCode)
LEASE = Transition(S.LEASE, ("pending", "active", "job_prefix", "stats", "failed", "prio", "control",
                             *LIMIT_KEYS), ("lease_ms", "count", "worker", "failure_keep_ms"),
                   reply=LEASED_FIELDS)
COMPLETE = Transition(S.COMPLETE, ("active", "finished", "failed", "job_prefix", "scheduled", "pending",
                                   "wake_channel", "history_prefix", "results_channel", "outbox", "prio", "stats",
                                   *LIMIT_KEYS, "counts"), (), OUTCOME_FIELDS, CompleteCode)
EXTEND = Transition(S.EXTEND, ("active", "job_prefix"), ("lease_ms",), LEASE_FIELDS, ExtendCode)
RELEASE = Transition(S.RELEASE, ("pending", "active", "job_prefix", "wake_channel", "prio", "stats", *LIMIT_KEYS),
                     (), LEASE_FIELDS)
REQUEUE_EXPIRED = Transition(S.REQUEUE_EXPIRED, ("active", "pending", "failed", "job_prefix", "wake_channel",
                                                 "history_prefix", "results_channel", "outbox", "prio", "stats",
                                                 *LIMIT_KEYS, "control", "counts"),
                             ("batch", "max_attempts", "failure_keep_ms"))
TRIM = Transition(S.TRIM, ("registry",), ("batch",))
CANCEL = Transition(S.CANCEL, ("job_prefix", "canceled", "active", "stats", "scheduled", "history_prefix", "deferred",
                               "outbox", "prio", "pending", "wake_channel", *LIMIT_KEYS, "results_channel"),
                    ("job_id", "keep_ms", "dependents"), codes=CancelCode)
DELETE = Transition(S.DELETE, ("job_prefix", "active", "finished", "failed", "canceled", "stats", "scheduled",
                               "history_prefix", "deferred", "outbox", "prio", "pending", "wake_channel", *LIMIT_KEYS),
                    ("job_id", "dependents"), codes=DeleteCode)
REQUEUE = Transition(S.REQUEUE, ("pending", "job_prefix", "failed", "canceled", "finished", "wake_channel", "stats",
                                 "history_prefix", "prio"), ("job_id", "at_front"), codes=RequeueCode)
STOP = Transition(S.STOP, ("job_prefix", "active", "wake_channel"), ("job_id", "reason"), codes=StopCode)
TAKE = Transition(S.TAKE, ("job_prefix", "active", "stats", "prio"), ("job_id", "lease_ms", "worker"),
                  reply=TAKEN_FIELDS)
SET_FIELDS = Transition(S.SET_FIELDS, ("job",), (), FIELD_PAIR, SetFieldsCode)
DRAIN = Transition(S.DRAIN, ("pending", "job_prefix", "stats", "history_prefix", "prio", "limit_waiting_prefix",
                             "limit_keys"), ("batch",))
DEBOUNCE = Transition(S.DEBOUNCE, ("scheduled", "job_prefix", "wake_channel", "debounce"),
                      ("window_ms", "pointer_ttl_ms", *JOB_FIELDS), codes=DebounceCode)
CONFIGURE = Transition(S.CONFIGURE, ("control", "wake_channel"), (), FIELD_PAIR, ConfigureCode)
PURGE_REGISTRY = Transition(S.PURGE_REGISTRY, ("registry", "job_prefix", "history_prefix"), ("batch",))
RESULTS = Transition(S.RESULTS, ("job_prefix", "history_prefix"), ("job_id", "limit"))
DEFER = Transition(S.DEFER, ("deferred", "job_prefix", "outbox"), ("at_front", "job_width", *JOB_FIELDS),
                   ("parent", "mode"), Created)
REGISTER = Transition(S.REGISTER, ("job_prefix", "dependents_prefix"), ("dependent",), ("parent_id",))
RESOLVE = Transition(S.RESOLVE, ("job_prefix", "deferred", "pending", "wake_channel", "canceled", "outbox", "prio",
                                 "stats", "results_channel"),
                     ("child_id", "parent_handle", "ended", "failure_keep_ms"), codes=ResolveCode)
ACK = Transition(S.ACK, ("outbox", "dependents"), ("entry",), ("applied",), optional_keys=1)
OUTBOX_DUE = Transition(S.OUTBOX_DUE, ("outbox",), ("min_age_ms", "limit"))
GROUP_OPEN = Transition(S.GROUP_OPEN, ("group",), ("keep_ms", "added"), codes=GroupOpenCode)
_GROUP_KEYS = ("group", "group_seen", "job_prefix", "deferred", "pending", "wake_channel", "prio", "stats")
GROUP_CLOSE = Transition(S.GROUP_CLOSE, _GROUP_KEYS, ("callback_id",), codes=GroupCloseCode)
GROUP_DONE = Transition(S.GROUP_DONE, _GROUP_KEYS, ("member", "ended"), codes=GroupDoneCode)
# Counter buffers (clusterq.api.buffer): keys of one buffer partition (keys.BufferKeys), passed by name.
BUFFER_INCR = Transition(S.BUFFER_INCR, ("pending", "values"), ("member",), ("field", "amount"))
BUFFER_TAKE = Transition(S.BUFFER_TAKE, ("pending", "inflight", "values_prefix", "flush_prefix", "seq"),
                         ("batch", "lease_ms", "min_age_ms"), reply=("seq", "record"))
BUFFER_ACK = Transition(S.BUFFER_ACK, ("inflight", "flush_prefix"), (), ("seq",))
GAUGES = Transition(S.GAUGES, ("pending", "prio", "stats", "active", "scheduled", "deferred", "failed", "finished",
                                "canceled", "job_prefix"),
                    reply=("pending", "prio", "tomb", "lwait", "active", "scheduled", "deferred", "failed",
                           "finished", "canceled", "due", "head_created_ms", "now_ms"))

ALL: tuple[Transition, ...] = (
    ENQUEUE, SCHEDULE, PROMOTE, CRON_TICK, LEASE, COMPLETE, EXTEND, RELEASE, REQUEUE_EXPIRED, TRIM, CANCEL, DELETE,
    REQUEUE, STOP, TAKE, SET_FIELDS, DRAIN, DEBOUNCE, CONFIGURE, PURGE_REGISTRY, RESULTS, DEFER, REGISTER, RESOLVE,
    ACK, OUTBOX_DUE, GROUP_OPEN, GROUP_CLOSE, GROUP_DONE, BUFFER_INCR, BUFFER_TAKE, BUFFER_ACK, GAUGES,
)


# --- script errors ------------------------------------------------------------------------------------
# Every script that writes checks its keys' types and its numbers before its first write (scripts/lib/
# check_types.lua, check_int.lua): a broken key of a queue is refused with nothing written, in a reply
# "WRONGTYPE <script>: key <key> holds a <type>, not a <expected>; nothing was written".

_WRONG_TYPE = re.compile(r"WRONGTYPE (\w+): key (.+) holds a (\w+), not a (\w+); nothing was written", re.S)


@dataclass(frozen=True)
class BrokenKey:
    """A key a script refused to touch: it holds another type than the queue's layout says."""

    script: str
    key: str
    found: str  # the type it holds (TYPE: string, list, set, zset, hash, stream)
    expected: str


def broken_key(error: BaseException | str) -> BrokenKey | None:
    """The key a script's WRONGTYPE reply names (see above), or None for any other error. The key is one of
    the queue's (its hash tag names the queue), so a caller can set that queue aside and keep the others."""
    match = _WRONG_TYPE.search(str(error))
    return BrokenKey(*match.groups()) if match else None


# --- reply parsers ------------------------------------------------------------------------------------
# Codes are looked up in a dict (an IntEnum call costs about ten times more, and complete's reply has a
# code per job).

def _members(codes: type[IntEnum]) -> dict[int, Any]:
    return {member.value: member for member in codes}


_CREATED = _members(Created)
_COMPLETE = _members(CompleteCode)
_EXTEND = _members(ExtendCode)


def parse_created(reply: Sequence[Any]) -> list[Created]:
    """enqueue: one code per job."""
    return [_CREATED[int(code)] for code in reply]


def parse_schedule(reply: Sequence[Any]) -> ScheduleReply:
    return ScheduleReply(int(reply[0]), [_CREATED[int(code)] for code in reply[1:]])


def parse_defer(reply: Any) -> Created:
    return Created(_CREATED[int(reply)])


def parse_promote_reply(reply: Sequence[Any]) -> PromoteReply:
    promoted, next_at, now = (int(v) for v in reply)
    return PromoteReply(promoted, next_at, now)


def parse_cron_tick(reply: Sequence[Any]) -> CronTickReply:
    return CronTickReply(CronTickCode(int(reply[0])), int(reply[1]), int(reply[2]))


_LEASED_WIDTH = len(LEASED_FIELDS)


def parse_lease_reply(queue: str, reply: Sequence[Any]) -> LeaseReply:
    """remaining, wait, then :data:`LEASED_FIELDS` per job (read in that order: tests/test_contract.py
    checks each lands in the LeasedJob field of its name)."""
    wait_ms = int(reply[1])
    # A draining worker parses ~100 jobs per round trip here: one tuple per job, read in place (redis-py
    # answers bytes, but a client that decodes replies answers str: text() and raw() take either).
    values = iter(reply)
    next(values), next(values)
    make = make_leased_job
    jobs = [
        make((queue, job_id.decode("utf-8", "surrogateescape") if type(job_id) is bytes else text(job_id),
              int(token), func.decode("utf-8", "surrogateescape") if type(func) is bytes else text(func),
              payload if type(payload) is bytes else raw(payload),
              options if type(options) is bytes else raw(options),
              signature if type(signature) is bytes else raw(signature),
              headers if type(headers) is bytes else raw(headers), int(retries)))
        for job_id, token, func, payload, options, signature, headers, retries
        in zip(*[values] * _LEASED_WIDTH, strict=True)
    ]
    return LeaseReply(int(reply[0]), jobs, suspended=wait_ms < 0, wait_s=max(0, wait_ms) / 1000)


def parse_complete(reply: Sequence[Any]) -> list[CompleteCode]:
    return [_COMPLETE[int(code)] for code in reply]


def parse_extend(reply: Sequence[Any]) -> list[ExtendCode]:
    return [_EXTEND[int(code)] for code in reply]


def parse_recover(reply: Sequence[Any]) -> RecoverReply:
    """requeue_expired: counts, the ms until the earliest lease left ends, then the abandoned jobs' ids."""
    return RecoverReply(int(reply[0]), int(reply[1]), int(reply[2]), [text(value) for value in reply[3:]])


def parse_take(queue: str, job_id: str, reply: Sequence[Any]) -> LeasedJob | None:
    """The job taken (:data:`TAKEN_FIELDS`), or None when it was not queued (gone, or already taken)."""
    if not reply:
        return None
    return LeasedJob(queue, job_id, int(reply[0]), text(reply[1]), raw(reply[2]), raw(reply[3]),
                     headers=raw(reply[4]), retries=int(reply[5]))


def parse_register(reply: Sequence[Any]) -> list[str]:
    """Per parent: "" registered, or how it had already ended."""
    return [text(value) for value in reply]


def parse_debounce(reply: Sequence[Any]) -> DebounceReply:
    return DebounceReply(DebounceCode(int(reply[0])), text(reply[1]))


_LATEST_WIDTH = 6  # hk, ht, r, e, s, te (results.lua's Returns)


def parse_results_reply(reply: Sequence[Any]) -> ResultsReply:
    return ResultsReply(list(reply[:_LATEST_WIDTH]), list(reply[_LATEST_WIDTH:]))


def parse_outbox_due(reply: Sequence[Any]) -> OutboxDueReply:
    return OutboxDueReply(int(reply[0]), int(reply[1]), list(reply[2:]))


def parse_count(reply: Any) -> int:
    """trim, drain, purge_registry, release, ack: a number."""
    return int(reply)
