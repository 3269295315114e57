"""The forwarder: carries intents written to one queue's outbox over to another slot (design brief:
"crossing slots: outbox, then idempotent apply").

A script that must change another queue (a parent ended and its children wait in other queues; a child
was created and must be known to its parents) writes an intent into its own queue's outbox, in the same
atomic step. The forwarder applies the intent to the other slot with a script that ignores what it has
already applied, and only then removes the intent. A process dying between the two steps leaves the
intent in place; whoever forwards next (the producer, a worker right after its completions, or any
worker's maintenance replaying intents older than a few seconds) applies it again, which changes nothing
the second time. Never a script or transaction across slots.

Outbox entries (members of ``cq:{Q}:outbox``, scored by when they were written):

- ``r<TAB>parent handle<TAB>child id``: a child of queue Q must be registered with a parent;
- ``e<TAB>how it ended<TAB>job id``: a job of queue Q ended; tell every dependent in its dependents set
  (worked through in batches of :data:`DEPENDENTS_BATCH`; the entry goes once the set is empty).

Dependents (members of ``cq:{Q}:dep:<id>``): ``j<TAB>child handle`` or ``g<TAB>group handle``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote

from clusterq.state import keys as K
from clusterq.state import store as T
from clusterq.state import transitions as TR
from clusterq.state.plan import Plan, run_plan, store_step

log = logging.getLogger(__name__)

DEPENDENTS_BATCH = 100
"""Dependents told per parent per round: a parent with 10,000 children is forwarded in bounded steps."""
REPLAY_GRACE_S = 2.0
"""Maintenance replays intents at least this old: younger ones are normally being forwarded right now."""
REPLAY_BATCH = 100
FAULT_ENV = "CLUSTERQ_FAULT_POINT"
"""Test-only: ``after_outbox`` or ``after_apply`` makes a forwarding process exit (status 137) right after
the intent was written, or right after it was applied and before it is removed."""


def fault_point(name: str) -> None:
    if os.environ.get(FAULT_ENV) == name:
        log.error("fault point %s reached: exiting now (%s is set)", name, FAULT_ENV)
        os._exit(137)


def make_handle(queue: str, job_id: str) -> str:
    """Same form as :attr:`clusterq.Job.handle` (``quote(queue)/id``)."""
    return f"{quote(queue, safe='')}/{job_id}"


def split_handle(handle: str) -> tuple[str, str]:
    queue, sep, job_id = handle.partition("/")
    if not sep or not queue or not job_id:
        raise ValueError(f"{handle!r} is not a handle (expected 'queue/id')")
    return unquote(queue), job_id


def child_dependent(queue: str, job_id: str) -> str:
    return f"j\t{make_handle(queue, job_id)}"


def group_dependent(queue: str, group_id: str) -> str:
    return f"g\t{make_handle(queue, group_id)}"


def split_dependents(entries: Iterable[Any]) -> tuple[list[str], list[str]]:
    """Entries of a dependents set as ``(job handles, group handles)``."""
    jobs: list[str] = []
    groups: list[str] = []
    for raw in entries:
        kind, _, handle = _text(raw).partition("\t")
        (groups if kind == "g" else jobs).append(handle)
    return jobs, groups


def registration_entry(parent_handle: str, child_id: str) -> str:
    return f"r\t{parent_handle}\t{child_id}"


def ended_entry(ended: str, job_id: str) -> str:
    return f"e\t{ended}\t{job_id}"


@dataclass
class _Intent:
    queue: str
    entry: str
    kind: str  # "r" register a child with its parent, "e" tell an ended job's dependents
    detail: str  # parent handle (r) or how the job ended (e)
    job_id: str  # child id (r) or the ended job's id (e)
    dependents: list[str] | None = None  # e: the batch read this round
    ok: bool = True  # every call of this round succeeded
    more: bool = False  # e: dependents remain after this round


def _parse(queue: str, entry: str) -> _Intent | None:
    kind, _, rest = entry.partition("\t")
    detail, _, job_id = rest.partition("\t")
    if kind not in ("r", "e") or not detail or not job_id:
        return None
    return _Intent(queue, entry, kind, detail, job_id)


def _text(value: Any) -> str:
    return value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else str(value)


def _queue_keys(handle: str) -> tuple[K.QueueKeys, str] | None:
    try:
        queue, target = split_handle(handle)
        return K.QueueKeys(K.validate_queue_name(queue)), target
    except ValueError:
        return None


class Forwarder:
    """Applies outbox entries. ``failure_keep_ms``: how long a child canceled because its parent failed
    keeps its record when its own options do not say.

    The work is written once as a plan (:mod:`clusterq.state.plan`): :meth:`forward` runs it on the
    synchronous store given here; the asyncio API runs :meth:`forward_plan` with its own store."""

    def __init__(self, store: T.Store | None, failure_keep_ms: int) -> None:
        self.store = store
        self.failure_keep_ms = failure_keep_ms

    def forward(self, entries: Iterable[tuple[str, str]]) -> int:
        """Apply ``(queue, outbox entry)`` pairs until each is removed from its outbox (an entry whose
        calls failed is left for a replay). Returns how many entries were removed."""
        assert self.store is not None, "a Forwarder without a store only makes plans"
        return run_plan(self.forward_plan(entries), self.store)

    def forward_plan(self, entries: Iterable[tuple[str, str]]) -> Plan[int]:
        """:meth:`forward`, as a plan that either API runs."""
        todo: list[_Intent] = []
        seen: set[tuple[str, str]] = set()

        def add(intents: Iterable[_Intent]) -> None:
            for intent in intents:
                if (intent.queue, intent.entry) not in seen:
                    seen.add((intent.queue, intent.entry))
                    todo.append(intent)

        for queue, entry in entries:
            intent = _parse(queue, entry)
            if intent is None:
                log.warning("queue %r: dropping malformed outbox entry %r", queue, entry)
                yield store_step("run", T.ack_call(K.QueueKeys(queue), entry))
            else:
                add([intent])
        done = 0
        while todo:
            current, todo = todo, []
            cascade = yield from self._round(current)
            done += sum(1 for i in current if i.ok and not i.more)
            todo.extend(i for i in current if i.ok and i.more)
            add(cascade)
        return done

    def replay(self, queues: Sequence[str], min_age_s: float = REPLAY_GRACE_S) -> tuple[int, float | None]:
        """Forward the intents of ``queues`` at least ``min_age_s`` old (one bounded batch per queue).

        Returns (entries removed, seconds until the oldest remaining intent is old enough, or None)."""
        assert self.store is not None
        results = self.store.run_many(self.due_calls(queues, min_age_s), raise_on_error=False)
        return self.forward_due(queues, results, min_age_s)

    @staticmethod
    def due_calls(queues: Sequence[str], min_age_s: float = REPLAY_GRACE_S) -> list[T.Call]:
        """The reads :meth:`forward_due` needs, one per queue (a worker sends them with its maintenance)."""
        return [T.outbox_due_call(K.QueueKeys(q), int(min_age_s * 1000), REPLAY_BATCH) for q in queues]

    def forward_due(self, queues: Sequence[str], results: Sequence[Any],
                    min_age_s: float = REPLAY_GRACE_S) -> tuple[int, float | None]:
        """Forward what the :meth:`due_calls` of ``queues`` returned; see :meth:`replay`."""
        entries: list[tuple[str, str]] = []
        next_s: float | None = None
        for queue, result in zip(queues, results):
            if isinstance(result, Exception):
                log.warning("queue %r: cannot read its outbox: %s", queue, result)
                continue
            reply = TR.parse_outbox_due(result)
            due = reply.entries
            entries.extend((queue, _text(e)) for e in due)
            if len(due) >= REPLAY_BATCH:
                next_s = 0.0
            elif reply.oldest_ms >= 0 and not due:
                wait = max(0.0, (reply.oldest_ms + min_age_s * 1000 - reply.now_ms) / 1000)
                next_s = wait if next_s is None else min(next_s, wait)
        done = self.forward(entries) if entries else 0
        if done:
            log.info("forwarded %d outbox intent(s) left behind", done)
        return done, next_s

    # --- one round: read, apply, remove ---------------------------------------------------------

    def _round(self, intents: list[_Intent]) -> Plan[list[_Intent]]:
        for intent in intents:
            intent.ok, intent.more = True, False
        fault_point("after_outbox")
        # 1. Registrations go to the parents' slots; ended jobs' dependents are read (a batch each).
        registered = yield from self._register([i for i in intents if i.kind == "r"])
        ending = [i for i in intents if i.kind == "e"]
        yield from self._read_dependents(ending)
        # 2. Apply each intent to the other slot, idempotently.
        applies: list[tuple[_Intent, str | None, str, T.Call]] = []  # intent, dependent, target queue, call
        applied: dict[int, list[str]] = {id(i): [] for i in ending}
        for intent, ended in registered:
            if ended:  # the parent had already ended: apply its outcome to the child here
                applies.append((intent, None, intent.queue, T.resolve_call(
                    K.QueueKeys(intent.queue), intent.job_id, intent.detail, ended, self.failure_keep_ms)))
        for intent in ending:
            parent = make_handle(intent.queue, intent.job_id)
            for dependent in intent.dependents or ():
                target = self._apply_call(dependent, parent, intent.detail)
                if target is None:  # malformed: nothing to apply, remove it with the others
                    applied[id(intent)].append(dependent)
                else:
                    applies.append((intent, dependent, *target))
        results = (yield store_step("run_many", [a[3] for a in applies], raise_on_error=False)) if applies else []
        cascade: list[_Intent] = []
        for (intent, applied_dependent, queue, call), result in zip(applies, results):
            if isinstance(result, Exception):
                log.warning("applying %r of queue %r failed: %s", intent.entry, intent.queue, result)
                intent.ok = False
                continue
            if applied_dependent is not None:
                applied[id(intent)].append(applied_dependent)
            if call.script is TR.RESOLVE.script:
                code = TR.RESOLVE.code(result)
                if code in (TR.ResolveCode.CANCELED, TR.ResolveCode.DELETED):  # the child ended: its dependents next
                    ended = "canceled" if code is TR.ResolveCode.CANCELED else "deleted"
                    child = _parse(queue, ended_entry(ended, str(TR.RESOLVE.arg(call, "child_id"))))
                    if child is not None:
                        cascade.append(child)
        fault_point("after_apply")
        # 3. Remove what was applied; an ended job's entry stays until its dependents set is empty.
        acks: list[tuple[_Intent, T.Call]] = []
        for intent in intents:
            if intent.ok:
                qk = K.QueueKeys(intent.queue)
                dependents_of = intent.job_id if intent.kind == "e" else None
                acks.append((intent, T.ack_call(qk, intent.entry, dependents_of, applied.get(id(intent), ()))))
        results = (yield store_step("run_many", [c for _, c in acks], raise_on_error=False)) if acks else []
        for (intent, _), result in zip(acks, results):
            if isinstance(result, Exception):
                log.warning("queue %r: removing outbox entry %r failed: %s", intent.queue, intent.entry, result)
                intent.ok = False
            else:
                intent.more = TR.parse_count(result) > 0  # dependents left
        return cascade

    def _register(self, intents: list[_Intent]) -> Plan[list[tuple[_Intent, str]]]:
        """Register children with their parents; returns (intent, how the parent ended or "")."""
        out: list[tuple[_Intent, str]] = []
        calls: list[tuple[_Intent, T.Call]] = []
        for intent in intents:
            parent = _queue_keys(intent.detail)
            if parent is None:
                log.warning("queue %r: outbox entry %r names no valid parent; treated as a parent with no "
                            "record", intent.queue, intent.entry)
                out.append((intent, "deleted"))
            else:
                calls.append((intent, T.register_call(
                    parent[0], child_dependent(intent.queue, intent.job_id), [parent[1]])))
        results = (yield store_step("run_many", [c for _, c in calls], raise_on_error=False)) if calls else []
        for (intent, _), result in zip(calls, results):
            if isinstance(result, Exception):
                log.warning("registering %s with parent %s failed: %s", intent.job_id, intent.detail, result)
                intent.ok = False
            else:
                (ended,) = TR.parse_register(result)  # one parent per call
                out.append((intent, ended))
        return out

    def _read_dependents(self, intents: list[_Intent]) -> Plan[None]:
        if not intents:
            return
        # A pipeline that failed whole gives its error for each: every intent waits for a replay.
        results = yield store_step("first_members", [K.QueueKeys(i.queue).dependents(i.job_id) for i in intents],
                                   DEPENDENTS_BATCH)
        for intent, result in zip(intents, results):
            if isinstance(result, Exception):
                log.warning("queue %r: cannot read the dependents of %s: %s", intent.queue, intent.job_id, result)
                intent.ok = False
            else:
                intent.dependents = [_text(d) for d in result]

    def _apply_call(self, dependent: str, parent_handle: str, ended: str) -> tuple[str, T.Call] | None:
        kind, _, handle = dependent.partition("\t")
        target = _queue_keys(handle)
        if target is None or kind not in ("j", "g"):
            log.warning("dropping malformed dependent %r of %s", dependent, parent_handle)
            return None
        qk, target_id = target
        if kind == "j":
            return qk.name, T.resolve_call(qk, target_id, parent_handle, ended, self.failure_keep_ms)
        return qk.name, T.group_done_call(qk, target_id, parent_handle, ended)
