"""The state store: every change of clusterq state, spoken as transitions (enqueue, lease, complete...).

Queue, Job and Worker code call these methods and never issue Redis commands for state changes
themselves. Each transition is one Lua script on one queue's keys (one slot). Transitions on several
queues can be sent together (:meth:`Store.run_many`): redis-py pipelines them, which costs one round trip
per server (per node on a cluster), never a multi-slot command.

Scripts are run by SHA. A server that answers NOSCRIPT (a new or promoted node, a flushed script cache)
is sent the source once with EVAL, which also caches it there.

While a queue's slot migrates to another cluster node, Redis refuses every script on it with TRYAGAIN
(each declares the queue's job-key prefix, which is never a key, so the keys are never "all present"
on one side). :meth:`Store.run` retries those with a short back-off until the slot has moved
(:data:`SLOT_MIGRATION_WAIT_S` at most), so a migration pauses the queue instead of failing its calls.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import redis
from redis.cluster import RedisCluster
from redis.exceptions import (
    AskError,
    ClusterDownError,
    ClusterError,
    MovedError,
    NoScriptError,
    ResponseError,
    TryAgainError,
)

from clusterq.connection.packed import exchange, exchange_one, exchange_stream, pack_command, packable
from clusterq.connection.sync import REDIS_ERRORS, Client, is_proxy
from clusterq.exceptions import ServerError
from clusterq.state import keys as K
from clusterq.state import transitions as TR

# Re-exported: these lived here before the contract moved to clusterq.state.transitions.
from clusterq.state.transitions import Call as Call
from clusterq.state.transitions import LeasedJob as LeasedJob
from clusterq.state.transitions import LeaseReply as LeaseReply
from clusterq.state.transitions import parse_lease_reply as parse_lease_reply
from clusterq.state.transitions import parse_take as parse_take
from clusterq.utils import decode_all

# Errors a node gives when the call belongs elsewhere now or the node is gone: retry via the cluster client.
_RETRY_THROUGH_CLUSTER = (MovedError, AskError, TryAgainError, ClusterDownError, NoScriptError,
                          redis.ConnectionError, redis.TimeoutError, OSError)

# Errors that say a node cannot be reached at all (as opposed to: the call belongs elsewhere now).
_UNREACHABLE = (redis.ConnectionError, redis.TimeoutError, ClusterDownError, OSError)

SLOT_MIGRATION_WAIT_S = 30.0
"""How long a call keeps retrying while its slot is being migrated (TRYAGAIN) before it raises."""


def slot_is_moving(exc: BaseException) -> bool:
    """TRYAGAIN, or redis-py giving up after bouncing between ASK, TRYAGAIN and MOVED (a slot in migration)."""
    return isinstance(exc, TryAgainError) or (isinstance(exc, ClusterError) and "TTL exhausted" in str(exc))


class MigrationBackoff:
    """How long to wait between tries while a slot migrates: 10 ms doubling to 200 ms, for at most
    ``wait_s`` from the first refusal (shared by the sync and asyncio stores)."""

    def __init__(self, wait_s: float) -> None:
        self.wait_s = wait_s
        self.deadline: float | None = None
        self.delay_s = 0.01

    def next_delay(self) -> float | None:
        """Seconds to wait before the next try, or None once ``wait_s`` has passed."""
        now = time.monotonic()
        self.deadline = self.deadline if self.deadline is not None else now + self.wait_s
        if now >= self.deadline:
            return None
        delay = min(self.delay_s, self.deadline - now)
        self.delay_s = min(self.delay_s * 2, 0.2)
        return delay


class WaitRounds:
    """The rules of ``run_and_wait`` (see :meth:`Store.run_and_wait`), shared by the sync and asyncio
    stores, which only send each round's pipeline: which calls to send (by SHA, or with their source once
    a server lost its script cache), how a round's replies are read, when to try again and when to give up."""

    def __init__(self, calls: Sequence[Call], wait_s: float, cluster: bool) -> None:
        self.calls = calls
        self.pending = list(range(len(calls)))
        self.results: list[Any] = [None] * len(calls)
        self.with_source = False
        self.cluster = cluster
        self.backoff = MigrationBackoff(wait_s)

    def commands(self) -> list[tuple[Any, ...]]:
        """The scripts of this round (those that have not run yet), as pipeline commands."""
        out = []
        for index in self.pending:
            call = self.calls[index]
            if self.with_source:
                out.append(("EVAL", call.script.source, len(call.keys), *call.keys, *call.args))
            else:
                out.append(("EVALSHA", call.script.sha, len(call.keys), *call.keys, *call.args))
        return out

    def settle(self, replies: Sequence[Any]) -> tuple[str, float]:
        """Read a round's replies (the scripts', then the marker's and WAIT's). Returns ``("done",
        replicas that acknowledged)``, ``("again", 0)`` (send at once), ``("moved", 0)`` (re-read the slot
        map first) or ``("sleep", seconds)``; raises the error once there is no point in trying again."""
        failed = []
        for index, reply in zip(self.pending, replies):
            self.results[index] = reply
            if isinstance(reply, BaseException):
                failed.append(index)
        errors = [self.results[i] for i in failed] + [r for r in replies[-2:] if isinstance(r, BaseException)]
        if not errors:
            return "done", int(replies[-1])
        if all(isinstance(e, NoScriptError) for e in errors) and not self.with_source:
            self.pending, self.with_source = failed, True  # the server lost its script cache: send the source
            return "again", 0
        moving = self.cluster and all(
            isinstance(e, (MovedError, AskError, TryAgainError, NoScriptError)) or slot_is_moving(e) for e in errors)
        delay = self.backoff.next_delay() if moving else None
        if delay is None:
            raise next((e for e in errors if not isinstance(e, NoScriptError)), errors[0])
        self.pending = failed  # only what did not run; the marker and WAIT are sent every time
        if any(isinstance(e, MovedError) for e in errors):
            return "moved", 0  # the slot moved: re-read the map
        return "sleep", delay  # mid-migration (ASK, TRYAGAIN): wait for it to end


# Job hash fields read back into a Job. Short names keep a pending job small in Redis.
JOB_FIELDS = ("s", "f", "p", "o", "m", "n", "c", "ts", "te", "r", "e", "w", "ma", "rt", "yr", "hk", "ht", "kc",
              "pg", "sp", "rx", "hd")

LATEST_FIELDS = ("hk", "ht", "r", "e", "s", "te")
"""The job's latest result: kind and time (ms) while it waits to run again, return value or error, and
for an ended job its status and end time (which give the kind and time then)."""

RESULT_HISTORY = 10
"""Results kept per job by default (the latest included): earlier ones are dropped, oldest first."""
MAX_RESULT_HISTORY = 1000
"""The most a job may keep; also bounds how many entries a read of the history asks for."""


@dataclass(frozen=True)
class NewJob:
    """A job as the enqueue script stores it. Empty bytes/strings mean "absent" (not stored)."""

    id: str
    func: str
    payload: bytes = b""
    options: str = ""
    meta: bytes = b""
    ttl_s: int = 0
    max_attempts: int | None = None
    fresh_id: bool = False  # generated here (uuid4); the scripts check it exists all the same (a resent call)
    signature: str = ""  # HMAC of queue, id, func, payload, options, headers (signing.py); "" when not signing
    unique: bool = False  # an existing waiting or running job with this id is reported (-1), not skipped
    priority: int = 0  # 0: none (the pending list, runs first); 1..9: the prio set, lower first
    concurrency_key: str = ""  # at most the key's limit of such jobs run at once in the queue
    headers: str = ""  # JSON object of str -> str set by before-enqueue hooks ("hd"); "" when none

    def argv(self) -> tuple[Any, ...]:
        """The job's values in the order of :data:`~clusterq.state.transitions.JOB_FIELDS`."""
        flag = "1" if self.fresh_id else ("u" if self.unique else "0")
        return (self.id, self.func, self.payload, self.options, self.meta, self.ttl_s,
                "" if self.max_attempts is None else self.max_attempts, flag, self.signature, self.priority,
                self.concurrency_key, self.headers)

    def named(self) -> dict[str, Any]:
        """The job's values by name (:data:`~clusterq.state.transitions.JOB_FIELDS`)."""
        return dict(zip(TR.JOB_FIELDS, self.argv()))


@dataclass(frozen=True)
class Outcome:
    """The result of running a leased job, as the complete script records it."""

    id: str
    token: int
    status: str  # "finished" | "failed" | "stopped"
    data: bytes
    keep_ms: int  # -1 forever, 0 delete at once
    elapsed_s: float = 0.0  # how long the job ran (not stored; sizes the worker's batches)
    # Run the job again? For a failure its Retry, for a success its Repeat: "max;ms,ms,..." or
    # "max;b:base_ms:factor:cap_ms:multiplier" (complete.lua decides against the job's counters).
    plan: str = ""
    history: int = RESULT_HISTORY  # results the job keeps, the latest included
    note: str = ""  # why a callback failed, recorded with the outcome ("kc")

    def argv(self) -> tuple[Any, ...]:
        """The outcome's values in the order of :data:`~clusterq.state.transitions.OUTCOME_FIELDS`."""
        return (self.id, self.token, self.status, self.data, self.keep_ms, self.plan, self.history, self.note)


make_outcome = TR.whole_maker(Outcome)
"""``Outcome`` from all nine values, in field order (a pool child's message carries them so)."""

_text = TR.text
_raw = TR.raw


def _flag(on: bool) -> str:
    return "1" if on else "0"


def writes_of(calls: Sequence[Call], write_jobs: int | None) -> list[int]:
    """How many of ``calls`` go in each write, in order, for writes of at most ``write_jobs`` jobs
    (:attr:`Call.jobs`) each; a call heavier than that goes alone. None: all in one write."""
    if not write_jobs:
        return [len(calls)] if calls else []
    sizes: list[int] = []
    count = jobs = 0
    for call in calls:
        if count and jobs + call.jobs > write_jobs:
            sizes.append(count)
            count = jobs = 0
        count += 1
        jobs += call.jobs
    if count:
        sizes.append(count)
    return sizes


def split_results(results: Sequence[Any], *groups: Sequence[Call]) -> list[list[Any]]:
    """Cut the results of calls sent together (``[*group1, *group2, ...]``) back into one list per group."""
    out: list[list[Any]] = []
    start = 0
    for group in groups:
        out.append(list(results[start : start + len(group)]))
        start += len(group)
    return out


# --- call builders: pure functions, shared by the sync and async stores ------------------------------
# Each builds its call from the names in clusterq.state.transitions (keys from QueueKeys by name).

def _counts(qk: K.QueueKeys) -> dict[str, str]:
    """The ``counts`` key of a script that counts the queue's history: this half hour's, on this clock."""
    return {"counts": qk.counts(int(time.time()) // K.HISTORY_KEY_S)}


def enqueue_call(qk: K.QueueKeys, jobs: Sequence[NewJob], at_front: bool = False, *,
                 now: float | None = None) -> Call:
    """Create ``jobs``; their created time "c" (and the history's minute) is ``now`` (``time.time()``,
    the client's clock, read here when not given)."""
    now = time.time() if now is None else now
    now_ms = int(now * 1000)
    return TR.ENQUEUE.call(qk, (job.argv() for job in jobs), keys={"counts": qk.counts(int(now) // K.HISTORY_KEY_S)},
                           at_front=_flag(at_front), now_ms=now_ms, minute=now_ms // 60000)


def schedule_call(qk: K.QueueKeys, jobs: Sequence[NewJob], *, at_ms: int | None = None,
                  delay_ms: int | None = None, at_front: bool = False) -> Call:
    """Schedule ``jobs`` at ``at_ms`` (ms since the epoch, client clock) or ``delay_ms`` after the server's
    time (exactly one of the two)."""
    if (at_ms is None) == (delay_ms is None):
        raise ValueError("give exactly one of at_ms and delay_ms")
    mode, ms = ("at", at_ms) if at_ms is not None else ("in", delay_ms)
    return TR.SCHEDULE.call(qk, (job.argv() for job in jobs), mode=mode, ms=ms, at_front=_flag(at_front))


def working_on(call: Call, jobs: int) -> Call:
    """``call`` saying it works on up to ``jobs`` jobs (:attr:`Call.jobs`: a count its arguments hold)."""
    return Call(call.script, call.keys, call.args, jobs)


def promote_call(qk: K.QueueKeys, batch: int) -> Call:
    return working_on(TR.PROMOTE.call(qk, batch=batch), batch)


def cron_tick_call(qk: K.QueueKeys, name: str, tick_ms: int, mode: str, keep_runs: int, job: NewJob,
                   overlap: bool = True) -> Call:
    """Offer one tick of periodic job ``name``; ``mode`` is "fire", "resume" or "skip"; ``overlap=False``
    skips the tick while the previous run has not ended (cron_tick.lua). Mode "manual" takes the pending
    run-now request whose ms is ``tick_ms`` instead of a tick."""
    fields = job.named()
    del fields["flag"]  # cron_tick's overlap flag takes its place
    return TR.CRON_TICK.call(qk, keys={"cron_runs": qk.cron_runs(name), "run_now": qk.cron_run_now(name)},
                             name=name, tick_ms=tick_ms, mode=mode,
                             keep_runs=keep_runs, overlap=_flag(overlap), **fields)


def parse_promote(reply: Sequence[Any]) -> tuple[int, float | None]:
    """Split a promote reply into (jobs promoted, seconds until the next scheduled job is due or None).

    The delay is measured on the server's clock, so the worker's clock does not matter."""
    parsed = TR.parse_promote_reply(reply)
    return parsed.promoted, parsed.due_in_s


def lease_call(qk: K.QueueKeys, count: int, lease_ms: int, worker: str, failure_keep_ms: int) -> Call:
    return working_on(TR.LEASE.call(qk, lease_ms=lease_ms, count=count, worker=worker,
                                    failure_keep_ms=failure_keep_ms), count)


def parse_lease(queue: str, reply: Sequence[Any]) -> tuple[int, list[LeasedJob]]:
    """Split a lease reply into (jobs still pending, leased jobs)."""
    parsed = parse_lease_reply(queue, reply)
    return parsed.remaining, parsed.jobs


def complete_call(qk: K.QueueKeys, outcomes: Iterable[Outcome]) -> Call:
    return TR.COMPLETE.call(qk, (outcome.argv() for outcome in outcomes), keys=_counts(qk))


def extend_call(qk: K.QueueKeys, leases: Iterable[tuple[str, int]], lease_ms: int) -> Call:
    return TR.EXTEND.call(qk, leases, lease_ms=lease_ms)


def release_call(qk: K.QueueKeys, leases: Iterable[tuple[str, int]]) -> Call:
    return TR.RELEASE.call(qk, leases)


def requeue_expired_call(qk: K.QueueKeys, batch: int, max_attempts: int, failure_keep_ms: int) -> Call:
    return working_on(TR.REQUEUE_EXPIRED.call(qk, keys=_counts(qk), batch=batch, max_attempts=max_attempts,
                                              failure_keep_ms=failure_keep_ms), batch)


def trim_call(registry_key: str, batch: int) -> Call:
    return TR.TRIM.call(None, keys={"registry": registry_key}, batch=batch)


def cancel_call(qk: K.QueueKeys, job_id: str, keep_ms: int, dependents: str = "canceled") -> Call:
    """``dependents``: what the job's dependents are told, ``canceled`` or ``ok`` (enqueue_dependents)."""
    return TR.CANCEL.call(qk, job_id=job_id, keep_ms=keep_ms, dependents=dependents)


def delete_call(qk: K.QueueKeys, job_id: str, dependents: str = "deleted") -> Call:
    """``dependents``: what the job's dependents are told, ``deleted`` or ``purge`` (delete_dependents)."""
    return TR.DELETE.call(qk, job_id=job_id, dependents=dependents)


def requeue_call(qk: K.QueueKeys, job_id: str, at_front: bool = False) -> Call:
    return TR.REQUEUE.call(qk, job_id=job_id, at_front=_flag(at_front))


def stop_call(qk: K.QueueKeys, job_id: str, reason: str) -> Call:
    return TR.STOP.call(qk, job_id=job_id, reason=reason)


def take_call(qk: K.QueueKeys, job_id: str, lease_ms: int, worker: str) -> Call:
    return TR.TAKE.call(qk, job_id=job_id, lease_ms=lease_ms, worker=worker)


def set_fields_call(qk: K.QueueKeys, job_id: str, fields: dict[str, Any]) -> Call:
    return TR.SET_FIELDS.call(qk, fields.items(), keys={"job": qk.job(job_id)})


def drain_call(qk: K.QueueKeys, batch: int) -> Call:
    return TR.DRAIN.call(qk, batch=batch)


def debounce_call(qk: K.QueueKeys, key: str, job: NewJob, window_ms: int, pointer_ttl_ms: int) -> Call:
    return TR.DEBOUNCE.call(qk, keys={"debounce": qk.debounce(key)}, window_ms=window_ms,
                            pointer_ttl_ms=pointer_ttl_ms, **job.named())


def configure_call(qk: K.QueueKeys, fields: dict[str, Any]) -> Call:
    """Set (or, with value "", clear) fields of the queue's control hash and wake its workers."""
    return TR.CONFIGURE.call(qk, fields.items())


def purge_registry_call(qk: K.QueueKeys, registry_key: str, batch: int) -> Call:
    return TR.PURGE_REGISTRY.call(qk, keys={"registry": registry_key}, batch=batch)


def results_call(qk: K.QueueKeys, job_id: str, limit: int = MAX_RESULT_HISTORY) -> Call:
    """Read (only) a job's latest result and up to ``limit`` earlier ones, atomically."""
    return TR.RESULTS.call(qk, job_id=job_id, limit=limit)


def defer_call(qk: K.QueueKeys, job: NewJob, parents: Sequence[tuple[str, bool]], at_front: bool = False) -> Call:
    """Create ``job`` deferred until its ``parents`` (``(handle, allow_failure)``) end."""
    return TR.DEFER.call(qk, ((handle, "a" if allow_failure else "w") for handle, allow_failure in parents),
                         at_front=_flag(at_front), job_width=len(TR.JOB_FIELDS), **job.named())


def register_call(qk: K.QueueKeys, dependent: str, parent_ids: Sequence[str]) -> Call:
    """Add ``dependent`` (an outbox dependent entry, see :mod:`clusterq.state.outbox`) to jobs of ``qk``."""
    return TR.REGISTER.call(qk, ((parent_id,) for parent_id in parent_ids), dependent=dependent)


def resolve_call(qk: K.QueueKeys, child_id: str, parent_handle: str, ended: str, failure_keep_ms: int) -> Call:
    return TR.RESOLVE.call(qk, child_id=child_id, parent_handle=parent_handle, ended=ended,
                           failure_keep_ms=failure_keep_ms)


def ack_call(qk: K.QueueKeys, entry: str, dependents_of: str | None = None, applied: Sequence[str] = ()) -> Call:
    keys = {} if dependents_of is None else {"dependents": qk.dependents(dependents_of)}
    return TR.ACK.call(qk, ((done,) for done in applied), keys=keys, entry=entry)


def outbox_due_call(qk: K.QueueKeys, min_age_ms: int, limit: int) -> Call:
    return TR.OUTBOX_DUE.call(qk, min_age_ms=min_age_ms, limit=limit)


def group_open_call(qk: K.QueueKeys, group_id: str, keep_ms: int, added: int = 0) -> Call:
    """Create a group (``added`` 0), or add ``added`` to its member count."""
    return TR.GROUP_OPEN.call(qk, keys={"group": qk.group(group_id)}, keep_ms=keep_ms, added=added)


def _group_keys(qk: K.QueueKeys, group_id: str) -> dict[str, str]:
    return {"group": qk.group(group_id), "group_seen": qk.group_seen(group_id)}


def group_close_call(qk: K.QueueKeys, group_id: str, callback_id: str | None) -> Call:
    return TR.GROUP_CLOSE.call(qk, keys=_group_keys(qk, group_id), callback_id=callback_id or "")


def group_done_call(qk: K.QueueKeys, group_id: str, member_handle: str, ended: str) -> Call:
    return TR.GROUP_DONE.call(qk, keys=_group_keys(qk, group_id), member=member_handle, ended=ended)


class Store:
    """Runs transitions on a synchronous redis-py client (standalone, Sentinel master or cluster)."""

    def __init__(self, client: Client, *, slot_migration_wait_s: float = SLOT_MIGRATION_WAIT_S,
                 fail_fast: bool = False) -> None:
        self.client = client
        self.slot_migration_wait_s = slot_migration_wait_s
        # fail_fast (a worker's store): in run_many, a call to a Cluster node that cannot be reached fails at
        # once unless a refreshed slot map sends it to another node, instead of waiting out redis-py's
        # retries (seconds of back-off): the caller sets that queue aside and goes on with the others.
        self.fail_fast = fail_fast
        self._next_refresh = 0.0

    # --- running scripts ------------------------------------------------------------------------

    def run(self, call: Call) -> Any:
        """Run one transition; on NOSCRIPT send the source (which caches it on that server).

        On a cluster, a call refused because its slot is being migrated is retried with a back-off
        (10 ms doubling to 200 ms) for up to ``slot_migration_wait_s``.
        """
        backoff: MigrationBackoff | None = None  # made at the first refusal: nothing extra on the hot path
        while True:
            try:
                return self._run_once(call)
            except (TryAgainError, ClusterError) as exc:
                backoff = backoff or MigrationBackoff(self.slot_migration_wait_s)
                delay = backoff.next_delay() if slot_is_moving(exc) else None
                if delay is None:
                    raise
                time.sleep(delay)

    _packed_direct: tuple[Any, bool] = (None, False)
    """(client, whether :meth:`run_packed` sends to it directly), for the client it was decided for."""

    def run_packed(self, call: Call) -> Any:
        """:meth:`run` for a call that is safe to send twice (an enqueue), packed whole
        (:mod:`clusterq.connection.packed`) and sent on a pooled connection of the server that holds its
        keys (on a cluster, the primary of its slot), without redis-py's per-argument encoding. Anything
        this path does not handle goes to :meth:`run`, which does what it always did: NOSCRIPT (it sends the
        source), on a cluster a redirection, a slot being migrated or a node that cannot be reached, a
        client or an argument that cannot be sent packed (:func:`~clusterq.connection.packed.packable`).
        """
        client: Any = self.client
        direct = self._packed_direct
        if direct[0] is not client:  # decided once per client: no isinstance of RedisCluster per call
            direct = self._packed_direct = (client, not isinstance(client, RedisCluster) and packable(client))
        if direct[1]:  # a plain client (standalone, Sentinel): the one-job enqueue's hot path
            packed = pack_command(("EVALSHA", call.script.sha, len(call.keys), *call.keys, *call.args))
            if packed is None:
                return self.run(call)
            reply = exchange_one(client, packed)
            if reply.__class__ is list:
                return reply
            if isinstance(reply, ResponseError):
                if isinstance(reply, NoScriptError):
                    return self.run(call)
                raise reply
            return reply
        cluster = isinstance(client, RedisCluster)
        if cluster:
            if type(client).execute_command is not RedisCluster.execute_command:
                return self.run(call)
            try:
                client = self._client_for(call.keys[0])
            except REDIS_ERRORS:
                return self.run(call)
        if not packable(client):
            return self.run(call)
        packed = pack_command(("EVALSHA", call.script.sha, len(call.keys), *call.keys, *call.args))
        if packed is None:
            return self.run(call)
        try:
            reply = exchange_one(client, packed)
        except REDIS_ERRORS:
            if cluster:  # the cluster client reconnects, refreshes its slot map and retries
                return self.run(call)
            raise
        if isinstance(reply, ResponseError):
            if isinstance(reply, NoScriptError) or (cluster and isinstance(reply, _RETRY_THROUGH_CLUSTER)):
                return self.run(call)
            raise reply
        return reply

    def _run_once(self, call: Call) -> Any:
        n = len(call.keys)
        try:
            return self.client.evalsha(call.script.sha, n, *call.keys, *call.args)
        except NoScriptError:
            return self.client.eval(call.script.source.decode(), n, *call.keys, *call.args)

    def run_many(self, calls: Sequence[Call], *, raise_on_error: bool = True, packed: bool = False,
                 while_waiting: Callable[[], None] | None = None, write_jobs: int | None = None) -> list[Any]:
        """Run several transitions in one pipeline per server; results in the order of ``calls``.

        With ``raise_on_error=False`` a failed call's slot holds its exception instead of raising, so
        the caller can tell which transitions happened. ``packed``: the calls are safe to send twice (an
        enqueue), and each is packed whole (:meth:`run_packed`). ``while_waiting`` (with ``packed``, on a
        standalone or Sentinel server): called once while the server runs them, between sending and
        reading (:func:`~clusterq.connection.packed.exchange`); it may not be called at all.
        ``write_jobs``: the calls go to each server in writes of at most this many jobs (:attr:`Call.jobs`;
        a heavier call goes alone; :func:`writes_of`), pipelined a few writes ahead
        (:func:`~clusterq.connection.packed.exchange`): the server runs one write's calls back to back, so
        its other clients wait for about one or two writes, not all of them.
        """
        if not calls:
            return []
        if isinstance(self.client, RedisCluster) or not packed:
            while_waiting = None
        if len(calls) == 1 and while_waiting is None and not (self.fail_fast and isinstance(self.client, RedisCluster)):
            try:
                results: list[Any] = [self.run_packed(calls[0]) if packed else self.run(calls[0])]
            except REDIS_ERRORS as exc:
                results = [exc]
        elif isinstance(self.client, RedisCluster):
            results = self._run_many_cluster(calls, packed, write_jobs)
        else:
            results = self._pipeline(self.client, calls, packed, while_waiting, write_jobs)
        if raise_on_error:
            for result in results:
                if isinstance(result, BaseException):
                    raise result
        return results

    def _pipeline(self, client: redis.Redis, calls: Sequence[Call], packed: bool = False,
                  while_waiting: Callable[[], None] | None = None, write_jobs: int | None = None) -> list[Any]:
        results = self._packed_pipeline(client, calls, while_waiting, write_jobs) if packed else None
        if results is not None:
            return results
        results = []
        at = 0
        for size in writes_of(calls, write_jobs):  # one pipeline per write
            pipe = client.pipeline(transaction=False)
            for call in calls[at : at + size]:
                pipe.execute_command("EVALSHA", call.script.sha, len(call.keys), *call.keys, *call.args)
            at += size
            results += pipe.execute(raise_on_error=False)
        for index, result in enumerate(results):
            if isinstance(result, NoScriptError):
                results[index] = self._run_or_error(calls[index])
        return results

    def _packed_pipeline(self, client: redis.Redis, calls: Sequence[Call],
                         while_waiting: Callable[[], None] | None = None,
                         write_jobs: int | None = None) -> list[Any] | None:
        """:meth:`_pipeline` with each call packed whole; None if the client or the first call cannot be
        (the caller pipelines through redis-py).

        Without ``while_waiting`` each call is sent as soon as it is packed
        (:func:`~clusterq.connection.packed.exchange_stream`): the server runs the first chunks of an
        ``enqueue_many`` while the next are packed, and a later call that cannot be packed, with those
        after it, goes through redis-py's pipeline once the replies of those sent are read. With
        ``while_waiting`` or ``write_jobs`` (the worker's round trips) every call is packed first and sent
        with :func:`~clusterq.connection.packed.exchange`, in writes of at most ``write_jobs`` jobs
        (:func:`writes_of`; else one write), and ``while_waiting`` runs while the server works."""
        if not packable(client):
            return None
        first = pack_command(("EVALSHA", calls[0].script.sha, len(calls[0].keys), *calls[0].keys, *calls[0].args))
        if first is None:
            return None
        if while_waiting is not None or write_jobs:
            packed = [first]
            for call in calls[1:]:
                command = pack_command(("EVALSHA", call.script.sha, len(call.keys), *call.keys, *call.args))
                if command is None:
                    return None
                packed.append(command)
            results = exchange(client, packed, while_waiting, writes_of(calls, write_jobs) if write_jobs else None)
        else:
            def commands() -> Iterator[bytes | None]:
                yield first
                for call in calls[1:]:
                    yield pack_command(("EVALSHA", call.script.sha, len(call.keys), *call.keys, *call.args))

            results = exchange_stream(client, commands())
        for index, result in enumerate(results):
            if isinstance(result, NoScriptError):
                results[index] = self._run_or_error(calls[index])
        if len(results) < len(calls):
            results += self._pipeline(client, calls[len(results):], write_jobs=write_jobs)
        return results

    def run_and_wait(self, calls: Sequence[Call], marker_key: str, replicas: int,
                     timeout_ms: int) -> tuple[list[Any], int]:
        """Run ``calls`` (all in one slot), then ``WAIT`` for ``replicas`` replicas; return (results, how
        many replicas acknowledged).

        WAIT counts the replicas that reached the last write *of its own connection*, so the calls and the
        WAIT go in one pipeline, on one connection to the slot's primary (on a cluster, straight to the
        node that owns the slot). A script that writes nothing (an enqueue of ids that already exist, as
        when the caller retries) would leave WAIT nothing to wait for, while the first attempt's write may
        not have reached a replica yet; so the pipeline also bumps a counter on ``marker_key`` (in the
        same slot), whose offset is at or after every earlier write to that primary.
        """
        if is_proxy(self.client):
            raise ServerError("wait_replicas needs WAIT, which a proxy does not relay (it would close the "
                              "connection); use wait_replicas=0 through a proxy")
        rounds = WaitRounds(calls, self.slot_migration_wait_s, isinstance(self.client, RedisCluster))
        while True:
            pipe = self._client_for(marker_key).pipeline(transaction=False)
            for command in rounds.commands():
                pipe.execute_command(*command)
            pipe.execute_command("HINCRBY", marker_key, "qd", 1)
            pipe.execute_command("WAIT", replicas, timeout_ms)
            action, value = rounds.settle(pipe.execute(raise_on_error=False))
            if action == "done":
                return rounds.results, int(value)
            if action == "moved":
                self.client.nodes_manager.initialize()  # type: ignore[union-attr]
            elif action == "sleep":
                time.sleep(value)

    def _client_for(self, key: str) -> redis.Redis:
        """The client whose connections reach the primary holding ``key``."""
        if not isinstance(self.client, RedisCluster):
            return self.client
        node = self.client.get_node_from_key(key)
        return node.redis_connection or self.client.get_redis_connection(node)

    def _run_many_cluster(self, calls: Sequence[Call], packed: bool = False,
                          write_jobs: int | None = None) -> list[Any]:
        """One plain pipeline per primary, straight to the node that owns each call's slot.

        redis-py's ClusterPipeline asks the server ``COMMAND GETKEYS`` for every EVALSHA it routes (one
        extra round trip per call), so we route by our own keys instead. Anything the node refuses or
        cannot answer (MOVED/ASK during resharding, a failover, NOSCRIPT) is retried through the cluster
        client, which follows redirections and refreshes its slot map.
        """
        cluster: RedisCluster = self.client  # type: ignore[assignment]
        by_node: dict[str, tuple[Any, list[int]]] = {}
        for index, call in enumerate(calls):
            node = cluster.get_node_from_key(call.keys[0])
            by_node.setdefault(node.name, (node, []))[1].append(index)
        results: list[Any] = [None] * len(calls)
        unreachable: list[list[int]] = []  # per node whose whole pipeline failed to connect
        for node, indexes in by_node.values():
            client = node.redis_connection or cluster.get_redis_connection(node)
            try:
                node_results = self._pipeline(client, [calls[i] for i in indexes], packed, write_jobs=write_jobs)
            except REDIS_ERRORS as exc:
                node_results = [exc] * len(indexes)
                if isinstance(exc, _UNREACHABLE):
                    unreachable.append(indexes)
            for index, result in zip(indexes, node_results):
                results[index] = result
        # A node that cannot be reached: redis-py's retries through the cluster client (reconnecting and
        # refreshing the slot map, with back-off) take seconds. Try one of its calls that way; if the slot
        # has not moved to a live node (a failover), the node's other calls get the same error at once
        # instead of seconds each, so the calls to the live nodes are not held up.
        handled: set[int] = set()
        for indexes in unreachable:
            handled.update(indexes)
            if self.fail_fast:
                self._reroute(calls, indexes, results)
                continue
            first = results[indexes[0]] = self._run_or_error(calls[indexes[0]])
            for index in indexes[1:]:
                results[index] = first if isinstance(first, _UNREACHABLE) else self._run_or_error(calls[index])
        for index, result in enumerate(results):
            if index not in handled and isinstance(result, _RETRY_THROUGH_CLUSTER):
                results[index] = self._run_or_error(calls[index])
        return results

    def _reroute(self, calls: Sequence[Call], indexes: list[int], results: list[Any]) -> None:
        """Calls to a node that cannot be reached: refresh the slot map (at most once a second) and run
        those whose slot is now served elsewhere (a replica took over); the others keep their error."""
        cluster: RedisCluster = self.client  # type: ignore[assignment]
        dead = cluster.get_node_from_key(calls[indexes[0]].keys[0]).name
        now = time.monotonic()
        if now >= self._next_refresh:
            self._next_refresh = now + 1.0
            try:
                cluster.nodes_manager.initialize(disconnect_startup_nodes_pools=False, last_failed_node_name=dead)
            except REDIS_ERRORS:
                return
        for index in indexes:
            if cluster.get_node_from_key(calls[index].keys[0]).name != dead:
                results[index] = self._run_or_error(calls[index])

    def _run_or_error(self, call: Call) -> Any:
        try:
            return self.run(call)
        except REDIS_ERRORS as exc:
            return exc

    # --- reads (never write) ----------------------------------------------------------------------

    def read_job(self, qk: K.QueueKeys, job_id: str) -> dict[str, bytes] | None:
        """The job's fields (only those set), or None if it has no record. Bounded: a fixed field list."""
        key = qk.job(job_id)
        try:
            values = self.client.hmget(key, JOB_FIELDS)
        except redis.ResponseError as exc:
            if "WRONGTYPE" in str(exc):
                kind = _text(self.client.type(key))
                return {"s": b"failed", "f": b"", "e": f"malformed job record: {key} holds a {kind}".encode()}
            raise
        # _raw: a client made with decode_responses=True hands back str; records are read as bytes.
        fields = {name: _raw(value) for name, value in zip(JOB_FIELDS, values) if value is not None}
        return fields or None

    def read_latest(self, qk: K.QueueKeys, job_id: str) -> list[Any]:
        """The record's latest-result fields (:data:`LATEST_FIELDS`). One HMGET."""
        return list(self.client.hmget(qk.job(job_id), LATEST_FIELDS))

    def count(self, qk: K.QueueKeys) -> int:
        """Jobs waiting in the queue: the list length and the prio set's size, plus jobs set aside by a
        concurrency limit, less canceled/deleted ids still in the list. O(1), one round trip."""
        pipe = self.client.pipeline(transaction=False)
        pipe.llen(qk.pending)
        pipe.zcard(qk.prio)
        pipe.hmget(qk.stats, ("tomb", "lwait"))
        length, prio, (tomb, aside) = pipe.execute()
        return max(0, int(length) + int(prio) + int(aside or 0) - int(tomb or 0))

    def read_many(self, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
        """Plain read commands on keys of any slots (a partitioned queue's sums), in one pipeline per node;
        replies in order."""
        pipe = self.client.pipeline(transaction=False)
        for command in commands:
            pipe.execute_command(*command)
        return list(pipe.execute())

    def control(self, qk: K.QueueKeys) -> dict[str, str]:
        """The queue's control hash (suspend flag, limits). Bounded: one field per configured limit."""
        raw = self.client.hgetall(qk.control)
        return {_text(k): _text(v) for k, v in raw.items()}

    def job_ids(self, qk: K.QueueKeys, offset: int, length: int) -> list[str]:
        """A page of the waiting ids, in the order they will run: the pending list, then the prio set.
        ``length`` is the caller's bounded page size."""
        ids = decode_all(self.client.lrange(qk.pending, offset, offset + length - 1))
        if len(ids) < length:  # past the list: go on in the prio set
            start = max(0, offset - int(self.client.llen(qk.pending)))
            ids += decode_all(self.client.zrange(qk.prio, start, start + length - len(ids) - 1))
        return ids

    def exists_many(self, keys: Sequence[str]) -> list[int]:
        """EXISTS of each key (in any slots), in one pipeline: for the bounded id-only job lookup."""
        pipe = self.client.pipeline(transaction=False)
        for key in keys:
            pipe.exists(key)
        return [int(hit) for hit in pipe.execute()] if keys else []

    def first_members(self, keys: Sequence[str], count: int) -> list[Any]:
        """The first ``count`` members of each sorted set in ``keys`` (one pipeline; a failed read holds
        its exception, and a pipeline that failed whole gives its exception for every key)."""
        pipe = self.client.pipeline(transaction=False)
        for key in keys:
            pipe.zrange(key, 0, count - 1)
        try:
            return list(pipe.execute(raise_on_error=False))
        except REDIS_ERRORS as exc:
            return [exc] * len(keys)
