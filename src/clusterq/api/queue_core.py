"""What :class:`~clusterq.api.queue.Queue` and :class:`~clusterq.api.aio_queue.AsyncQueue` share: the
queue's options, how a job record is built (the enqueue options themselves are in
:mod:`clusterq.api.enqueue_options`, the checks of their values in :mod:`clusterq.api.options`), how
replies are read, and every operation written once as a plan (:mod:`clusterq.state.plan`) that the sync
front end runs on a :class:`~clusterq.state.store.Store` and the asyncio one awaits on an
:class:`~clusterq.state.aio_store.AsyncStore`.

A feature that changes what an enqueue writes (an option, a header, a hook) changes :class:`QueueCore`
(``_new_job`` or ``_enqueue_plan``) and so reaches both APIs at once; the front ends only say how a plan
is run and wrap job ids in their own job handles.
"""

from __future__ import annotations

import dataclasses
import json
import math
import operator
import os
import time
from collections.abc import Callable, Sequence
from datetime import date, datetime, timedelta
from itertools import chain
from typing import Any, Generic, TypeVar

from clusterq.api import options as O
from clusterq.api.callbacks import encode_callbacks
from clusterq.api.dependency import parse_depends_on
from clusterq.api.enqueue_options import (
    _DATA_FIELDS,
    _RESERVED,
    _UNSUPPORTED,
    DEBOUNCE_POINTER_TTL_S,
    MAX_PRIORITY,
    EnqueueData,
    _check_debounce,
    _refuse_debounce,
    make_enqueue_data,
    parse_duration,
    refuse_depends_on,
    split_enqueue_options,
    validate_job_id,
    validate_result_history,
)
from clusterq.api.hooks import HookSet
from clusterq.api.job_core import DEFAULT_FAILURE_TTL_S
from clusterq.api.registry_core import PAGE_LIMIT, purge_registry_plan
from clusterq.api.retry import Repeat, Retry
from clusterq.exceptions import DuplicateJob, ReplicationTimeout, explain_server_error
from clusterq.serializers import Serializer, resolve_serializer
from clusterq.signing import Signer, SigningKey, make_signer
from clusterq.state import keys as K
from clusterq.state import scripts as S
from clusterq.state import store as T
from clusterq.state import transitions as TR
from clusterq.state.outbox import Forwarder, registration_entry
from clusterq.state.plan import SERVER_ERRORS, Plan, client_step, store_step
from clusterq.utils import function_path

ENQUEUE_CHUNK = 500
"""Jobs per enqueue script call in ``enqueue_many``: large enough to amortise the call, small enough
that one call never holds the server for long."""
DRAIN_BATCH = 1000
PARTITIONED_FRONTS: dict[str, Any] = {}
"""``Queue(..., partitions=P)`` / ``AsyncQueue(..., partitions=P)`` build these (registered by
:mod:`clusterq.api.partitioned_queue`, which imports the plain queues: so no import cycle)."""


def partitioned_front(kind: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """The partitioned queue ``Queue(*args, partitions=P, **kwargs)`` stands for."""
    front = PARTITIONED_FRONTS.get(kind)
    if front is None:
        raise RuntimeError("partitioned queues need clusterq.api.partitioned_queue imported (clusterq/__init__.py "
                           "does)")
    return front(*args, **kwargs)

ID_ATTEMPTS = 5
"""Generated ids tried per job before giving up: the enqueue script refuses a generated id that another
job has (it never overwrites one), and the client draws another; a uuid4 collision is never expected."""

_OPTION_NAMES = frozenset((*_RESERVED, *_UNSUPPORTED))
"""Keyword names ``enqueue`` reads as options: a call passing none of them takes the fast path."""
_PLAIN_FIELDS = tuple(sorted(_DATA_FIELDS - {"func", "args", "kwargs"}))
_plain_values = operator.attrgetter(*_PLAIN_FIELDS)
_PLAIN_DEFAULTS = _plain_values(EnqueueData("fast.path"))
"""An :class:`EnqueueData` whose options all equal these has none: ``enqueue_many`` writes it directly."""
_DUPLICATE = int(TR.Created.DUPLICATE)


_UUID_VARIANT = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}


def new_job_id() -> str:
    """A generated job id: a random (version 4) UUID's 32 hex digits, as ``uuid.uuid4().hex`` gives, without
    building a UUID object (a third of the cost, on the hot path of every enqueue without a job_id): 16
    random bytes in hex, the version digit set to 4 and the variant digit to one of 8, 9, a, b."""
    digits = os.urandom(16).hex()
    return digits[:12] + "4" + digits[13:16] + _UUID_VARIANT[digits[16]] + digits[17:]


def new_job_ids(n: int) -> list[str]:
    """``n`` ids as :func:`new_job_id` makes them, from one read of the random source (``enqueue_many``)."""
    digits = os.urandom(16 * n).hex()
    variant = _UUID_VARIANT
    return [digits[i : i + 12] + "4" + digits[i + 13 : i + 16] + variant[digits[i + 16]] + digits[i + 17 : i + 32]
            for i in range(0, 32 * n, 32)]


def check_duplicates(queue: str, new: Sequence[T.NewJob], codes: Sequence[TR.Created], jobs: list[Any]) -> None:
    """Raise :class:`DuplicateJob` for the unique jobs the script refused (``Created.DUPLICATE``)."""
    refused = [job.id for job, code in zip(new, codes) if code is TR.Created.DUPLICATE]
    if refused:
        shown = ", ".join(repr(i) for i in refused[:5]) + (" ..." if len(refused) > 5 else "")
        raise DuplicateJob(f"queue {queue!r} already has a waiting or running job with id {shown} "
                           f"(unique=True); {len(new) - len(refused)} other job(s) of the call were enqueued",
                           refused, jobs)


def _job_codes(reply: Any, *, schedule: bool = False) -> list[TR.Created]:
    """The per-job codes of an enqueue, schedule or defer (one job, a bare code) reply."""
    if not isinstance(reply, list):
        return [TR.parse_defer(reply)]
    return TR.parse_schedule(reply).codes if schedule else TR.parse_created(reply)


def _raise_first_error(results: Sequence[Any], doing: str, skip: int = 0) -> None:
    """Raise the first failed call's error, saying how many jobs the other calls created.

    Each call is one script (at most ENQUEUE_CHUNK jobs) and a script runs whole or not at all (a full
    server refuses it before it starts), so no job is ever half-written; but of several calls, some may
    have gone through. Ids the caller chose can simply be enqueued again: existing ones are skipped.
    ``skip``: 1 for schedule replies (their run-at time comes first), 0 for enqueue and defer replies.
    """
    errors = [r for r in results if isinstance(r, BaseException)]
    if not errors:
        return
    error = explain_server_error(errors[0], doing)
    done = [r for r in results if not isinstance(r, BaseException)]
    if done:
        created = sum(code is TR.Created.CREATED for reply in done for code in _job_codes(reply, schedule=bool(skip)))
        error.args = (f"{error.args[0]} ({len(done)} of {len(results)} script calls went through whole and "
                      f"created {created} job(s); no job is half-written)",)
    raise error from errors[0]


J = TypeVar("J")


class QueueCore(Generic[J]):
    """The state and the rules of a queue, without I/O. ``J`` is the front end's job handle type
    (:class:`~clusterq.api.job.Job` or :class:`~clusterq.api.aio_job.AsyncJob`)."""

    name: str
    keys: K.QueueKeys
    serializer: Serializer
    signer: Signer | None

    def _setup(self, name: str, *, serializer: Serializer | str | None, default_timeout: float | int | str | None,
               result_ttl: float | int | str | None, failure_ttl: float | int | str | None,
               max_attempts: int | None, signing_key: SigningKey | Signer | None, result_history: int | None,
               wait_replicas: int, wait_timeout_s: float, hooks: Sequence[Any], job_class: None) -> None:
        """Check and keep the options both front ends take (bad options fail here, before any I/O)."""
        if job_class is not None:
            raise TypeError(f"{type(self).__name__}(job_class=...) is not supported: clusterq has one Job class. "
                            "Move what a Job subclass did into callbacks (on_success/on_failure/on_stopped), "
                            "meta, or a helper that takes the Job (see docs/migrating-from-rq.md, custom classes)")
        if not isinstance(wait_replicas, int) or isinstance(wait_replicas, bool) or wait_replicas < 0:
            raise ValueError(f"wait_replicas must be an int >= 0, got {wait_replicas!r}")
        if not isinstance(wait_timeout_s, (int, float)) or isinstance(wait_timeout_s, bool) or wait_timeout_s <= 0:
            raise ValueError(f"wait_timeout_s must be a positive number of seconds, got {wait_timeout_s!r}")
        self.name = K.validate_queue_name(name)
        self.keys = K.QueueKeys(name)
        self.signer = make_signer(signing_key)
        self.hooks = HookSet(hooks)  # with the process-wide ones (clusterq.hooks.register, entry points)
        self.serializer = resolve_serializer(serializer)
        self.default_timeout = parse_duration(default_timeout, "default_timeout")
        self.result_ttl = parse_duration(result_ttl, "result_ttl")
        self.failure_ttl = parse_duration(failure_ttl, "failure_ttl")
        self.max_attempts = O.max_attempts(max_attempts)
        self.result_history = validate_result_history(result_history)
        self.wait_replicas = wait_replicas
        self.wait_timeout_s = float(wait_timeout_s)
        self._registered = False
        # The fast path (_fast_argv): function paths already checked, and what a job without options
        # gets in this queue (built on first use by _new_job itself, so both paths write the same record).
        self._paths: dict[Any, tuple[str, bytes]] = {}
        self._plain: tuple[str, bytes, bytes] | None = None
        self._keys_at: tuple[int, tuple[Any, ...]] = (-1, ())

    def _job(self, job_id: str) -> J:
        """The front end's handle on a job of this queue."""
        raise NotImplementedError

    @property
    def key(self) -> str:
        """Refused: RQ's ``q.key`` is the list of waiting ids, so ``conn.llen(q.key)`` counts a queue. A
        clusterq queue is several keys (a list, a priority set, tombstones of canceled ids), and no single
        key gives the count: ``q.count`` does. ``q.keys.base`` is the prefix all its keys share."""
        raise AttributeError(f"{type(self).__name__}.key does not exist in clusterq: no single Redis key holds "
                             f"queue {self.name!r}. Use q.count for the waiting jobs, q.get_job_ids() to list "
                             f"them, q.keys.base ({self.keys.base!r}) for the prefix of its keys")

    @property
    def slot(self) -> int:
        return K.queue_slot(self.name)

    # --- building jobs (pure) -------------------------------------------------------------------

    @staticmethod
    def prepare_data(func: Callable[..., Any] | str, args: Sequence[Any] | None = None,
                     kwargs: dict[str, Any] | None = None, **options: Any) -> EnqueueData:
        """Describe a job for ``enqueue_many`` (RQ's ``Queue.prepare_data``); callable on the class, as
        RQ's docs do, or on a queue. Takes the options of :class:`EnqueueData`; ``timeout`` means
        ``job_timeout``. Raises TypeError naming an unknown option, and checks the values here."""
        return make_enqueue_data(func, args, kwargs, options)

    def _new_job(self, data: EnqueueData) -> T.NewJob:
        """The record the enqueue script stores for ``data``, with this queue's defaults."""
        job_id = validate_job_id(data.job_id) if data.job_id is not None else new_job_id()
        payload = self.serializer.dumps([list(data.args), data.kwargs]) if (data.args or data.kwargs) else b""
        options: dict[str, Any] = {}
        timeout = parse_duration(data.job_timeout, "job_timeout") or self.default_timeout
        if timeout is not None:
            options["timeout"] = timeout
        for name, value, default in (
            ("result_ttl", data.result_ttl, self.result_ttl),
            ("failure_ttl", data.failure_ttl, self.failure_ttl),
        ):
            seconds = parse_duration(value, name)
            seconds = default if seconds is None else seconds
            if seconds is not None:
                options[name] = seconds
        if data.description:
            options["description"] = O.text(str(data.description), "description")
        if data.retry is not None:
            if not isinstance(data.retry, Retry):
                raise TypeError(f"retry must be a clusterq.Retry, got {type(data.retry).__name__}")
            options["retry"] = data.retry.encode()
            if data.retry.on:
                options["ron"] = data.retry.on_names()
        if data.repeat is not None:
            if not isinstance(data.repeat, Repeat):
                raise TypeError(f"repeat must be a clusterq.Repeat, got {type(data.repeat).__name__}")
            options["repeat"] = data.repeat.encode()
        history = validate_result_history(data.result_history)
        history = self.result_history if history is None else history
        if history is not None and history != T.RESULT_HISTORY:
            options["hist"] = history
        callbacks = encode_callbacks(data.on_success, data.on_failure, data.on_stopped)
        if callbacks:
            options["cb"] = callbacks
        if self.serializer.name != "json":
            options["ser"] = self.serializer.name
        ttl = O.seconds(data.ttl, "ttl", positive=True)
        max_attempts = O.max_attempts(data.max_attempts if data.max_attempts is not None else self.max_attempts)
        priority = data.priority or 0
        if isinstance(priority, bool) or not isinstance(priority, int) or not 0 <= priority <= MAX_PRIORITY:
            raise ValueError(f"priority must be an int from 1 (runs first) to {MAX_PRIORITY}, or 0/None for "
                             f"none; got {data.priority!r}")
        concurrency_key = O.text(data.concurrency_key or "", "concurrency_key", max_bytes=256)
        if data.unique and data.job_id is None:
            raise ValueError("unique=True needs a job_id: uniqueness is by id")
        func = O.function_path(function_path(data.func))
        options_json = json.dumps(options, separators=(",", ":")) if options else ""
        # Last, once the job is valid: a hook sees only jobs that will be written, and may refuse them.
        # Here, so every enqueue (plain, scheduled, debounced, deferred, a group's callback) on either API
        # runs the before_enqueue hooks and stores their headers.
        headers = (self.hooks.before_enqueue(self.name, job_id, func, data.args, data.kwargs)
                   if self.hooks.enqueue else "")
        return T.NewJob(
            id=job_id,
            func=func,
            payload=payload,
            options=options_json,
            meta=self.serializer.dumps(data.meta) if data.meta else b"",
            ttl_s=math.ceil(ttl) if ttl else 0,
            max_attempts=max_attempts,
            fresh_id=data.job_id is None,
            signature=self.signer.sign(self.name, job_id, func, payload, options_json, headers) if self.signer else "",
            unique=bool(data.unique),
            priority=priority,
            concurrency_key=concurrency_key,
            headers=headers,
        )

    # --- the fast path: a job without options ---------------------------------------------------
    # Most enqueues pass a function and its arguments only. Their record differs from job to job only by
    # id, function and payload, so the script's arguments are built here directly: no EnqueueData, no
    # NewJob, no plan, no per-option checks (the queue's defaults were checked once). Anything else (an
    # option, a hook that sees the job, wait_replicas, the queue's first enqueue, which registers it)
    # takes the general path, which writes the same record.

    def _plain_parts(self) -> tuple[str, bytes, bytes]:
        """The options JSON (str, and encoded) and the max_attempts argument (encoded) of a job without
        options in this queue (built once, by :meth:`_new_job` itself)."""
        if self._plain is None:
            job = self._new_job(EnqueueData("clusterq.fast_path"))
            self._plain = (job.options, job.options.encode(),
                           b"" if job.max_attempts is None else str(job.max_attempts).encode())
        return self._plain

    def _enqueue_keys(self, now: float) -> tuple[Any, ...]:
        """The enqueue script's keys at ``now`` (``time.time()``; its history key changes every half hour)."""
        half_hour = int(now) // K.HISTORY_KEY_S
        if self._keys_at[0] != half_hour:
            keys = T.enqueue_call(self.keys, (), now=now).keys
            self._keys_at = (half_hour, tuple(key.encode() for key in keys))  # encoded once, not per call
        return self._keys_at[1]

    def _plain_func(self, f: Callable[..., Any] | str) -> tuple[str, bytes]:
        """``f``'s checked function path, and encoded (cached per queue: a handful of functions per
        application; an unhashable ``f`` raises TypeError)."""
        try:
            return self._paths[f]
        except KeyError:
            path = O.function_path(function_path(f))
            if len(self._paths) < 1024:
                self._paths[f] = (path, path.encode())
            return path, path.encode()

    def _plain_argv(self, func: tuple[str, bytes], args: Sequence[Any], kwargs: dict[str, Any]) -> list[Any]:
        """One job's 12 enqueue arguments (:data:`~clusterq.state.transitions.JOB_FIELDS`), id generated;
        encoded here already (constants as bytes), so the client's per-argument encoding is the cheap case."""
        options, options_arg, max_attempts = self._plain or self._plain_parts()
        job_id = new_job_id()
        payload = self.serializer.dumps([list(args), kwargs]) if (args or kwargs) else b""
        signature = self.signer.sign(self.name, job_id, func[0], payload, options, "").encode() if self.signer else b""
        return [job_id, func[1], payload, options_arg, b"", b"0", max_attempts, b"1", signature, b"0", b"", b""]

    def _fast_argv(self, f: Callable[..., Any] | str, args: tuple[Any, ...], kwargs: dict[str, Any]
                   ) -> list[Any] | None:
        """``enqueue(f, *args, **kwargs)``'s 12 script arguments when it takes the fast path, else None."""
        if not self._registered or self.hooks.enqueue or self.wait_replicas or (
                kwargs and not _OPTION_NAMES.isdisjoint(kwargs)):
            return None
        try:
            func = self._plain_func(f)
        except TypeError:  # unhashable: the general path says what is wrong with it
            return None
        return self._plain_argv(func, args, kwargs)

    def _fast_call(self, argv: list[Any]) -> T.Call:
        now = time.time()  # one clock read: the history key's half hour and the script's now_ms agree
        now_ms = int(now * 1000)
        return T.Call(S.ENQUEUE, self._enqueue_keys(now), (b"0", now_ms, now_ms // 60000, *argv))

    def _renamed_argv(self, argv: list[Any]) -> list[Any]:
        """``argv`` with another generated id (and its signature): its id belongs to another job."""
        job_id = new_job_id()
        signature = self.signer.sign(self.name, job_id, argv[1].decode(), argv[2], argv[3], argv[11]).encode() \
            if self.signer else b""
        return [job_id, *argv[1:8], signature, *argv[9:]]

    def _fast_settle(self, argv: list[Any], reply: Any, attempt: int) -> list[Any] | None:
        """None once the fast enqueue's ``reply`` says the job is written; else the arguments to send
        again, with another id (the generated one was another job's)."""
        if int(reply[0]) != _DUPLICATE:
            return None
        if attempt + 1 >= ID_ATTEMPTS:
            raise RuntimeError(f"queue {self.name!r}: {ID_ATTEMPTS} generated job ids in a row were already "
                               "taken by other jobs; is the random source broken?")
        return self._renamed_argv(argv)

    def _plain_jobs(self, jobs: Sequence[EnqueueData]) -> list[list[Any]] | None:
        """``enqueue_many``'s jobs as script arguments when none has an option (nor a hook to see it);
        else None. One pass, the argument lists built as :meth:`_plain_argv` builds them (ids drawn
        together: one read of the random source)."""
        if self.hooks.enqueue:
            return None
        plain = _plain_values
        defaults = _PLAIN_DEFAULTS
        options, options_arg, max_attempts = self._plain or self._plain_parts()
        paths = self._paths
        dumps = self.serializer.dumps
        signer = self.signer
        name = self.name
        argvs: list[list[Any]] = []
        append = argvs.append
        try:
            for data, job_id in zip(jobs, new_job_ids(len(jobs))):
                if type(data) is not EnqueueData or plain(data) != defaults:
                    return None
                f = data.func
                func = paths.get(f) or self._plain_func(f)  # an unhashable f: TypeError
                args, kwargs = data.args, data.kwargs
                payload = dumps([list(args), kwargs]) if (args or kwargs) else b""
                signature = signer.sign(name, job_id, func[0], payload, options, "").encode() if signer else b""
                append([job_id, func[1], payload, options_arg, b"", b"0", max_attempts, b"1", signature, b"0", b"",
                        b""])
        except TypeError:
            return None
        return argvs

    def _enqueue_plain_plan(self, argvs: list[list[Any]], at_front: bool) -> Plan[tuple[list[J], list[bool]]]:
        """``enqueue_many`` of jobs without options: one flat argument list per chunk of
        :data:`ENQUEUE_CHUNK`, all in one pipeline."""
        doing = f"enqueue to queue {self.name!r}"
        try:
            yield from self._register_plan()
        except SERVER_ERRORS as exc:
            raise explain_server_error(exc, doing) from exc
        flag = "1" if at_front else "0"
        codes: list[int] = []
        pending = list(range(len(argvs)))
        for attempt in range(ID_ATTEMPTS):
            chunks = [pending[i : i + ENQUEUE_CHUNK] for i in range(0, len(pending), ENQUEUE_CHUNK)]
            if at_front:
                chunks.reverse()  # later chunks first, so the whole batch keeps its order at the head
            now = time.time()
            keys, now_ms = self._enqueue_keys(now), int(now * 1000)
            calls = [T.Call(S.ENQUEUE, keys, (flag, now_ms, now_ms // 60000,
                                              *chain.from_iterable([argvs[k] for k in chunk])))
                     for chunk in chunks]
            try:
                results = yield from self._write_plan(calls, [argvs[k][0] for k in pending], doing, packed=True)
            except SERVER_ERRORS as exc:
                raise explain_server_error(exc, doing) from exc
            if not codes:
                codes = [0] * len(argvs)
            for chunk, reply in zip(chunks, results):
                for k, code in zip(chunk, reply):
                    codes[k] = int(code)
            pending = [k for k in pending if codes[k] == _DUPLICATE]  # generated ids other jobs had
            if not pending:
                break
            if attempt + 1 >= ID_ATTEMPTS:
                raise RuntimeError(f"queue {self.name!r}: {ID_ATTEMPTS} generated job ids in a row were already "
                                   "taken by other jobs; is the random source broken?")
            for k in pending:
                argvs[k] = self._renamed_argv(argvs[k])
        job = self._job
        return [job(argv[0]) for argv in argvs], [code == 1 for code in codes]

    # --- enqueue plans --------------------------------------------------------------------------

    def _register_plan(self) -> Plan[None]:
        # The set of known queues is a global key: written once per queue object, never in a script.
        if not self._registered:
            yield client_step("sadd", K.QUEUES, self.name)
            self._registered = True

    def _write_plan(self, calls: list[T.Call], ids: Sequence[str], doing: str, skip: int = 0, *,
                    packed: bool = False) -> Plan[list[Any]]:
        """Run the calls that create ``new`` and return their replies; with ``wait_replicas``, also wait
        for the replicas. ``packed``: enqueue calls (safe to send twice), sent packed whole
        (``Store.run_packed``)."""
        if not self.wait_replicas:
            results = yield store_step("run_many", calls, raise_on_error=False, **({"packed": True} if packed else {}))
            _raise_first_error(results, doing, skip)
            return list(results)
        results, acknowledged = yield store_step("run_and_wait", calls, self.keys.stats, self.wait_replicas,
                                                 max(1, int(self.wait_timeout_s * 1000)))
        if acknowledged < self.wait_replicas:
            ids = list(ids)
            raise ReplicationTimeout(
                f"queue {self.name!r}: {len(ids)} job(s) ({', '.join(ids[:3])}{', ...' if len(ids) > 3 else ''}) "
                f"were written to the primary, but only {acknowledged} of {self.wait_replicas} replica(s) "
                f"acknowledged them within {self.wait_timeout_s:g} s; they will run unless the primary fails "
                "before a replica has them, so they may or may not survive a failover (retrying with the same "
                "job_id is safe)", job_ids=ids, acknowledged=acknowledged, wanted=self.wait_replicas)
        return list(results)

    def _enqueue_plan(self, jobs: Sequence[EnqueueData], at_front: bool) -> Plan[tuple[list[J], list[bool]]]:
        """Enqueue ``jobs`` (chunks of :data:`ENQUEUE_CHUNK` per script call, in one pipeline; a job with
        ``depends_on`` deferred and registered with its parents). Returns the jobs and, per job, whether
        it was created (False: the id existed)."""
        _refuse_debounce(jobs)
        new = [self._new_job(data) for data in jobs]  # bad input fails before any I/O
        deferred = [(job, parse_depends_on(data.depends_on, self.name))
                    for job, data in zip(new, jobs) if data.depends_on is not None]
        deferred = [(job, spec) for job, spec in deferred if spec[0]]  # depends_on=[]: nothing to wait for
        waiting = {job.id for job, _ in deferred}
        ready = [job for job in new if job.id not in waiting]
        doing = f"enqueue to queue {self.name!r}"
        try:
            yield from self._register_plan()
        except SERVER_ERRORS as exc:
            raise explain_server_error(exc, doing) from exc
        calls = [T.enqueue_call(self.keys, ready[i : i + ENQUEUE_CHUNK], at_front)
                 for i in range(0, len(ready), ENQUEUE_CHUNK)]
        if at_front:
            calls.reverse()  # later chunks first, so the whole batch keeps its order at the head
        defer_calls = [T.defer_call(self.keys, job, parents, at_front or front) for job, (parents, front) in deferred]
        try:
            results = yield from self._write_plan([*calls, *defer_calls], [job.id for job in new], doing)
            enqueue_replies, defer_replies = T.split_results(results, calls, defer_calls)
            deferred_codes = [TR.parse_defer(reply) for reply in defer_replies]
            # Register each new child with its parents now; if this process dies first, a worker serving
            # this queue replays the registrations from the outbox.
            yield from Forwarder(None, DEFAULT_FAILURE_TTL_S * 1000).forward_plan(
                [(self.name, registration_entry(handle, job.id))
                 for (job, (parents, _)), created in zip(deferred, deferred_codes)
                 if created is TR.Created.CREATED for handle, _ in parents])
        except SERVER_ERRORS as exc:
            raise explain_server_error(exc, doing) from exc
        chunks = [TR.parse_created(reply) for reply in enqueue_replies]
        codes = [code for reply in (reversed(chunks) if at_front else chunks) for code in reply]
        if any(code is TR.Created.DUPLICATE and job.fresh_id for job, code in zip(ready, codes)):
            renamed = yield from self._rename_collided_plan(ready, codes, at_front, doing)
            new = [renamed.get(job.id, job) for job in new]
        enqueued = [self._job(job.id) for job in new]
        check_duplicates(self.name, [*ready, *(job for job, _ in deferred)], [*codes, *deferred_codes], enqueued)
        done = {job.id: code is TR.Created.CREATED  # not EXISTED, nor a DUPLICATE refused (unique)
                for job, code in zip([*ready, *(job for job, _ in deferred)], [*codes, *deferred_codes])}
        return enqueued, [done.get(job.id, False) for job in new]

    def _rename_collided_plan(self, ready: list[T.NewJob], codes: list[TR.Created], at_front: bool, doing: str
                              ) -> Plan[dict[str, T.NewJob]]:
        """Enqueue again, each with another generated id, the jobs of ``ready`` whose generated id the
        script refused (another job had it: ``DUPLICATE`` for a generated id); updates ``ready`` and
        ``codes`` in place and returns the renamed jobs by their first id."""
        renamed: dict[str, T.NewJob] = {}
        for attempt in range(ID_ATTEMPTS):
            collided = [k for k, (job, code) in enumerate(zip(ready, codes))
                        if job.fresh_id and code is TR.Created.DUPLICATE]
            if not collided:
                return renamed
            if attempt + 1 >= ID_ATTEMPTS:
                break
            for k in collided:
                old = ready[k]
                job_id = new_job_id()
                signature = (self.signer.sign(self.name, job_id, old.func, old.payload, old.options, old.headers)
                             if self.signer else "")
                ready[k] = dataclasses.replace(old, id=job_id, signature=signature)
                first = next((first for first, job in renamed.items() if job is old), old.id)
                renamed[first] = ready[k]
            call = T.enqueue_call(self.keys, [ready[k] for k in collided], at_front)
            try:
                results = yield from self._write_plan([call], [ready[k].id for k in collided], doing)
            except SERVER_ERRORS as exc:
                raise explain_server_error(exc, doing) from exc
            for k, code in zip(collided, TR.parse_created(results[0])):
                codes[k] = code
        raise RuntimeError(f"queue {self.name!r}: {ID_ATTEMPTS} generated job ids in a row were already "
                           "taken by other jobs; is the random source broken?")

    def _schedule_plan(self, jobs: Sequence[EnqueueData], at_front: bool, *, at_ms: int | None = None,
                       delay_ms: int | None = None) -> Plan[list[J]]:
        """Create scheduled jobs (status ``scheduled``, in the scheduled registry)."""
        _refuse_debounce(jobs)
        refuse_depends_on(jobs, "enqueue_at/enqueue_in")
        new = [self._new_job(data) for data in jobs]
        calls = [T.schedule_call(self.keys, new[i : i + ENQUEUE_CHUNK], at_ms=at_ms, delay_ms=delay_ms,
                                 at_front=at_front) for i in range(0, len(new), ENQUEUE_CHUNK)]
        doing = f"schedule a job in queue {self.name!r}"
        try:
            yield from self._register_plan()
            results = yield from self._write_plan(calls, [job.id for job in new], doing, skip=1)
        except SERVER_ERRORS as exc:
            raise explain_server_error(exc, doing) from exc
        jobs_out = [self._job(job.id) for job in new]
        check_duplicates(self.name, new, [code for reply in results for code in TR.parse_schedule(reply).codes],
                         jobs_out)
        return jobs_out

    def _debounce_plan(self, data: EnqueueData) -> Plan[J]:
        """One job per window for ``data.debounce = (key, window_s)``: the first call schedules it at the
        end of the window, later calls in the window replace its arguments (the latest wins)."""
        key, window_s = _check_debounce(data)
        job = self._new_job(data)
        job_id = job.id
        try:
            yield from self._register_plan()
            for _ in range(5):
                call = T.debounce_call(self.keys, key, job, int(window_s * 1000), DEBOUNCE_POINTER_TTL_S * 1000)
                reply = TR.parse_debounce((yield store_step("run", call)))
                job_id = reply.job_id
                if reply.code is not TR.DebounceCode.OTHER_ID:
                    break
                # A signing queue signs the job's id too: sign the update for the id the key points at.
                job = self._new_job(dataclasses.replace(data, job_id=job_id))
        except SERVER_ERRORS as exc:
            raise explain_server_error(exc, f"enqueue (debounced) to queue {self.name!r}") from exc
        return self._job(job_id)

    def _enqueue_one_plan(self, f: Callable[..., Any] | str, args: tuple[Any, ...], kwargs: dict[str, Any]
                          ) -> Plan[J]:
        """``enqueue(f, *args, **kwargs)``: split the options, then enqueue (or debounce) one job."""
        data, at_front = split_enqueue_options(f, args, kwargs)
        if data.debounce is not None:
            return (yield from self._debounce_plan(data))
        jobs, _ = yield from self._enqueue_plan([data], at_front)
        return jobs[0]

    def _enqueue_at_plan(self, scheduled_time: datetime | date | str, f: Callable[..., Any] | str,
                         args: tuple[Any, ...], kwargs: dict[str, Any]) -> Plan[J]:
        """``enqueue_at``: ``scheduled_time`` is a datetime (naive: local time), a date (its local
        midnight) or an ISO 8601 string, read on this machine's clock."""
        data, at_front = split_enqueue_options(f, args, kwargs)
        refuse_depends_on([data], "enqueue_at")
        jobs = yield from self._schedule_plan([data], at_front, at_ms=O.run_at_ms(scheduled_time))
        return jobs[0]

    def _enqueue_in_plan(self, time_delta: timedelta | float | int, f: Callable[..., Any] | str,
                         args: tuple[Any, ...], kwargs: dict[str, Any]) -> Plan[J]:
        """``enqueue_in``: ``time_delta`` (a timedelta or seconds) is measured on the server's clock."""
        delay_ms = O.delay_ms(time_delta)
        data, at_front = split_enqueue_options(f, args, kwargs)
        refuse_depends_on([data], "enqueue_in")
        jobs = yield from self._schedule_plan([data], at_front, delay_ms=delay_ms)
        return jobs[0]

    # --- reading --------------------------------------------------------------------------------

    def _job_ids_plan(self, offset: int, length: int) -> Plan[list[str]]:
        if length < 0 or length > PAGE_LIMIT:
            raise ValueError(f"length must be between 0 and {PAGE_LIMIT}; page through longer queues")
        if length == 0:
            return []
        return list((yield store_step("job_ids", self.keys, offset, length)))

    def _retried_count_plan(self) -> Plan[int]:
        return int((yield client_step("hget", self.keys.stats, "retried")) or 0)

    def _exists_plan(self) -> Plan[bool]:
        return bool((yield client_step("sismember", K.QUEUES, self.name)))

    # --- removing -------------------------------------------------------------------------------

    def _empty_plan(self) -> Plan[int]:
        removed = 0
        while True:
            n = TR.parse_count((yield store_step("run", T.drain_call(self.keys, DRAIN_BATCH))))
            removed += n
            if not n:
                return removed

    def _delete_plan(self) -> Plan[None]:
        yield from self._empty_plan()
        for name in ("scheduled", "deferred", "finished", "failed", "canceled", "started"):
            yield from purge_registry_plan(self.keys, self.keys.registry(name))
        yield client_step("delete", self.keys.stats)
        yield client_step("srem", K.QUEUES, self.name)
        self._registered = False

    # --- control: suspend, limits ---------------------------------------------------------------

    def _configure_plan(self, fields: dict[str, Any], doing: str) -> Plan[None]:
        try:
            yield store_step("run", T.configure_call(self.keys, fields))
        except SERVER_ERRORS as exc:
            raise explain_server_error(exc, f"{doing} queue {self.name!r}") from exc

    def _suspend_plan(self, suspended: bool) -> Plan[None]:
        if suspended:
            return (yield from self._configure_plan({"sus": "1"}, "suspend"))
        return (yield from self._configure_plan({"sus": ""}, "resume"))

    def _is_suspended_plan(self) -> Plan[bool]:
        return "sus" in (yield store_step("control", self.keys))

    def _set_rate_limit_plan(self, max_jobs: int, per_s: float) -> Plan[None]:
        if isinstance(max_jobs, bool) or not isinstance(max_jobs, int) or max_jobs < 1:
            raise ValueError(f"max_jobs must be a positive int, got {max_jobs!r}")
        period_s = parse_duration(per_s, "per_s")
        if period_s is None or period_s < 0.001:
            raise ValueError(f"per_s must be at least 0.001 seconds, got {per_s!r}")
        yield from self._configure_plan({"rn": max_jobs, "rp": int(period_s * 1000), "rw": "", "rc": ""},
                                        "set the rate limit of")

    def _remove_rate_limit_plan(self) -> Plan[None]:
        yield from self._configure_plan({"rn": "", "rp": "", "rw": "", "rc": ""}, "remove the rate limit of")

    def _rate_limit_plan(self) -> Plan[tuple[int, float] | None]:
        control = yield store_step("control", self.keys)
        if "rn" not in control:
            return None
        return int(control["rn"]), int(control.get("rp", "1000")) / 1000

    def _set_concurrency_limit_plan(self, key: str | None, limit: int | None) -> Plan[None]:
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
            raise ValueError(f"limit must be a positive int or None, got {limit!r}")
        if key is not None and (not isinstance(key, str) or not key):
            raise ValueError(f"key must be a non-empty str or None (the default), got {key!r}")
        field_name = "cd" if key is None else f"c:{key}"
        yield from self._configure_plan({field_name: "" if limit is None else limit}, "set a concurrency limit of")

    def _concurrency_limits_plan(self) -> Plan[dict[str | None, int]]:
        control = yield store_step("control", self.keys)
        limits: dict[str | None, int] = {k[2:]: int(v) for k, v in control.items() if k.startswith("c:")}
        if "cd" in control:
            limits[None] = int(control["cd"])
        return limits
