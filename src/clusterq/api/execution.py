"""Running one leased job: find its function, decode its arguments, call it within its time limit, and
turn what happened into an :class:`~clusterq.state.store.Outcome`. Nothing here talks to Redis.

Every way a job can go wrong ends as a failed outcome whose text names the problem (unknown function,
undecodable payload, wrong arguments, a result the serializer cannot carry, time limit); only
:class:`~clusterq.exceptions.StopRequested` escapes, because the worker must hand the job back.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import fnmatch
import functools
import inspect
import json
import logging
import math
import signal
import sys
import threading
import time
import traceback
import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from clusterq.api.callbacks import callback_name, decode_callbacks
from clusterq.api.context import JobConnection, enter_job, leave_job
from clusterq.api.job import DEFAULT_FAILURE_TTL_S, DEFAULT_RESULT_TTL_S, Job
from clusterq.api.retry import RetryJob, draw, plan_template, retry_job_plan
from clusterq.exceptions import DeserializationError, FunctionNotFound, JobTimeoutError, SerializationError
from clusterq.serializers import Serializer
from clusterq.signing import Signer
from clusterq.state.store import RESULT_HISTORY, LeasedJob, Outcome
from clusterq.utils import import_attribute

log = logging.getLogger(__name__)

DEFAULT_JOB_TIMEOUT_S = 180.0
"""A job's time limit when neither the job nor its queue sets one (RQ's default)."""


class FunctionResolver:
    """Imports job functions by dotted path, once each, within an optional allowlist.

    ``allow`` holds patterns (``fnmatch`` style, e.g. ``"myapp.tasks.*"``); when given, a path that
    matches none is refused before anything is imported, so a payload cannot make the worker import an
    arbitrary module.
    """

    def __init__(self, allow: Sequence[str] | None = None) -> None:
        self.allow = tuple(allow) if allow else None
        self._cache: dict[str, Callable[..., Any]] = {}

    def resolve(self, path: str) -> Callable[..., Any]:
        func = self._cache.get(path)
        if func is not None:
            return func
        if self.allow is not None and not any(fnmatch.fnmatchcase(path, p) for p in self.allow):
            raise FunctionNotFound(f"function {path!r} is not in this worker's allowlist {list(self.allow)}")
        found = import_attribute(path)
        if self.allow is not None and _passes_through_a_module(path):
            # "pkg.tasks:os.system" matches "pkg.tasks*" yet reaches os.system through a module that
            # imported os: the allowlist names where functions are defined, not what they import.
            raise FunctionNotFound(f"function {path!r} reaches into another module; this worker's allowlist "
                                   f"{list(self.allow)} only allows functions of the modules it names")
        if not callable(found):
            raise FunctionNotFound(f"{path!r} is a {type(found).__name__}, not a function")
        self._cache[path] = found
        return found


def _passes_through_a_module(path: str) -> bool:
    """True if ``module:attr.attr...`` walks through a module object on its way (``mod:os.system``)."""
    module_name, sep, attr_path = path.partition(":")
    if not sep or "." not in attr_path:
        return False
    obj: Any = sys.modules.get(module_name)
    for part in attr_path.split(".")[:-1]:
        obj = getattr(obj, part, None)
        if obj is None or isinstance(obj, types.ModuleType):
            return True
    return False


@dataclass(frozen=True)
class JobSpec:
    """A leased job's options, decoded."""

    timeout_s: float
    result_keep_ms: int
    failure_keep_ms: int
    serializer: str
    retry: str = ""  # the Retry's plan template ("max;ms,ms,..."; see clusterq.api.retry), or ""
    repeat: str = ""  # the Repeat's plan, or ""
    history: int = RESULT_HISTORY  # results the job keeps, the latest included
    callbacks: dict[str, tuple[str, float]] = dataclasses.field(default_factory=dict)  # code -> (path, limit)


def _keep_ms(seconds: Any, default_s: float) -> int:
    value = default_s if seconds is None else float(seconds)
    return -1 if value < 0 else int(value * 1000)


def decode_options(raw: bytes, default_timeout_s: float) -> tuple[JobSpec, str | None]:
    """Decode a job's options; on garbage fall back to defaults and return a problem description."""
    problem = None
    options: dict[str, Any] = {}
    if raw:
        try:
            decoded = json.loads(raw)
            if isinstance(decoded, dict):
                options = decoded
            else:
                problem = f"job options are a {type(decoded).__name__}, not an object"
        except ValueError as exc:
            problem = f"job options are not valid JSON ({exc})"
    try:
        spec = JobSpec(
            timeout_s=float(options.get("timeout") or default_timeout_s),
            result_keep_ms=_keep_ms(options.get("result_ttl"), DEFAULT_RESULT_TTL_S),
            failure_keep_ms=_keep_ms(options.get("failure_ttl"), DEFAULT_FAILURE_TTL_S),
            serializer=str(options.get("ser", "json")),
            retry=plan_template(options.get("retry")),
            repeat=plan_template(options.get("repeat")),
            history=int(options.get("hist") or RESULT_HISTORY),
            callbacks=decode_callbacks(options.get("cb")),
        )
    except (TypeError, ValueError) as exc:
        problem = f"job options are malformed ({exc})"
        spec = JobSpec(default_timeout_s, DEFAULT_RESULT_TTL_S * 1000, DEFAULT_FAILURE_TTL_S * 1000, "json")
    return spec, problem


_alarm_limit_s = 0.0


def _on_alarm(signum: int, frame: Any) -> None:
    raise JobTimeoutError(f"time limit exceeded: the job ran longer than {_alarm_limit_s:g} s")


class time_limit:
    """Raise :class:`JobTimeoutError` in the job if it runs past ``seconds``.

    Uses SIGALRM, so it only works in the main thread; elsewhere the limit is not enforced here (the
    process pools enforce theirs from outside the job). The handler is installed once and left in
    place: arming and disarming the timer is all a job pays (two system calls).
    """

    __slots__ = ("armed", "seconds")

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.armed = False

    def __enter__(self) -> None:
        global _alarm_limit_s
        if self.seconds <= 0 or threading.current_thread() is not threading.main_thread():
            return
        if signal.getsignal(signal.SIGALRM) is not _on_alarm:
            signal.signal(signal.SIGALRM, _on_alarm)
        _alarm_limit_s = self.seconds
        signal.setitimer(signal.ITIMER_REAL, self.seconds)
        self.armed = True

    def __exit__(self, *exc_info: Any) -> None:
        if self.armed:
            signal.setitimer(signal.ITIMER_REAL, 0)


def _failure(leased: LeasedJob, spec: JobSpec, reason: str, elapsed_s: float = 0.0, retry: str = "") -> Outcome:
    """A failed outcome; with a ``retry`` plan, complete.lua runs the job again if it has retries left."""
    return Outcome(leased.id, leased.token, "failed", reason.encode("utf-8", "replace"), spec.failure_keep_ms,
                   elapsed_s, retry, spec.history)


MAX_NOTE_CHARS = 4000
"""How much of a callback's failure (reason and traceback) is recorded on the job."""


def call_with_limit(func: Callable[..., Any], args: tuple[Any, ...], timeout_s: float) -> None:
    """Call ``func(*args)`` (an ``async def`` too) and raise :class:`JobTimeoutError` past ``timeout_s``.

    In the main thread the limit is SIGALRM, which interrupts the call; elsewhere the call runs in a
    thread of its own that is abandoned at the limit (a thread cannot be killed).
    """
    def call() -> None:
        value = func(*args)
        if inspect.isawaitable(value):
            asyncio.run(_awaited(value))

    if threading.current_thread() is threading.main_thread():
        with time_limit(timeout_s):
            call()
        return
    box: dict[str, BaseException] = {}

    def run() -> None:
        try:
            call()
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=run, name="clusterq-callback", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        raise JobTimeoutError(f"time limit exceeded: ran longer than {timeout_s:g} s")
    if "error" in box:
        raise box["error"]


class Executor:
    """Turns leased jobs into outcomes, in the calling thread.

    ``connection`` is what callbacks receive (and their ``Job`` handle uses); the worker sets it.
    ``job_connection`` is how a running job reaches Redis (``get_current_job()``: in a forked child, a
    client of its own). ``time_limits=False`` runs jobs without arming SIGALRM (a queue's synchronous
    mode, inside the user's own process).
    """

    def __init__(self, resolver: FunctionResolver, serializer: Serializer, default_timeout_s: float,
                 connection: Any = None, *, job_connection: JobConnection | None = None,
                 time_limits: bool = True, signer: Signer | None = None) -> None:
        self.connection = connection
        self.job_connection = job_connection
        self.time_limits = time_limits
        self.signer = signer
        self.resolver = resolver
        self.serializer = serializer
        self.default_timeout_s = default_timeout_s
        self.connection = connection
        self.time_limits = time_limits
        self._timeouts: dict[bytes, float] = {}
        self._default_spec = decode_options(b"", default_timeout_s)[0]

    def prepare(self, leased: LeasedJob) -> tuple[JobSpec, Callable[..., Any] | None, Any, Any, str | None]:
        """Everything needed to call the job, or a reason why it cannot be called."""
        if self.signer is not None:
            # Before anything of the job is looked at: an unsigned job imports nothing and decodes nothing.
            refused = self.signer.problem(leased.queue, leased.id, leased.func, leased.payload, leased.options,
                                          leased.signature)
            if refused:  # its options are not trusted either: default time limit and failure TTL
                return self._default_spec, None, None, None, refused
        if leased.options:
            spec, problem = decode_options(leased.options, self.default_timeout_s)
        else:  # most jobs carry no options: skip the JSON decode
            spec, problem = self._default_spec, None
        if problem:
            return spec, None, None, None, f"malformed job record: {problem}"
        if spec.serializer != self.serializer.name:
            return spec, None, None, None, (
                f"job was written with the {spec.serializer!r} serializer but this worker decodes "
                f"{self.serializer.name!r}"
            )
        if not leased.func:
            return spec, None, None, None, "malformed job record: no function path"
        try:
            func = self.resolver.resolve(leased.func)
        except FunctionNotFound as exc:
            return spec, None, None, None, f"FunctionNotFound: {exc}"
        try:
            decoded = self.serializer.loads(leased.payload) if leased.payload else [[], {}]
            # Check the shape before unpacking: unpacking a dict or a 3-list would blame the wrong thing.
            if not (isinstance(decoded, (list, tuple)) and len(decoded) == 2
                    and isinstance(decoded[0], list) and isinstance(decoded[1], dict)):
                raise DeserializationError(f"payload is not [args, kwargs]: {leased.payload[:80]!r}")
            args, kwargs = decoded
        except (DeserializationError, TypeError, ValueError) as exc:
            return spec, None, None, None, f"DeserializationError: cannot decode the job's arguments: {exc}"
        return spec, func, args, kwargs, None

    def timeout_of(self, leased: LeasedJob) -> float:
        """The job's time limit in seconds, ``inf`` for none (cached per distinct options value)."""
        timeout = self._timeouts.get(leased.options)
        if timeout is None:
            spec = decode_options(leased.options, self.default_timeout_s)[0]
            timeout = spec.timeout_s if spec.timeout_s > 0 else math.inf  # job_timeout=-1: no limit (as in RQ)
            # A callback runs after the job, in the same slot, within its own limit: the hard limit allows it.
            timeout += max((limit for _, limit in spec.callbacks.values()), default=0.0)
            if len(self._timeouts) < 1024:
                self._timeouts[leased.options] = timeout
        return timeout

    def failure(self, leased: LeasedJob, reason: str) -> Outcome:
        """A failed outcome with ``reason``, kept as long as the job's failure_ttl says."""
        return _failure(leased, decode_options(leased.options, self.default_timeout_s)[0], reason)

    def execute(self, leased: LeasedJob) -> Outcome:
        """Run the job in this thread (time limit by SIGALRM in the main thread); never raises but
        :class:`StopRequested`. An ``async def`` job runs to completion on a fresh event loop."""
        started = time.perf_counter()
        spec, func, args, kwargs, problem = self.prepare(leased)
        if problem is not None or func is None:
            return _failure(leased, spec, problem or "cannot run job")
        token = enter_job(leased, self.job_connection, self.serializer)
        try:
            with time_limit(spec.timeout_s if self.time_limits else 0):
                value = func(*args, **kwargs)
                if inspect.isawaitable(value):
                    value = asyncio.run(_awaited(value))
        except JobTimeoutError as exc:
            outcome = _failure(leased, spec, f"JobTimeoutError: {exc}", time.perf_counter() - started,
                               draw(spec.retry))
            return self._callback(leased, spec, outcome, "f", type(exc), exc, exc.__traceback__)
        except RetryJob as exc:
            return _failure(leased, spec, f"RetryJob: {exc}", time.perf_counter() - started,
                            retry_job_plan(spec.retry, exc))
        except Exception as exc:
            outcome = _failure(leased, spec, describe_exception(exc, leased.func), time.perf_counter() - started,
                               draw(spec.retry))
            return self._callback(leased, spec, outcome, "f", type(exc), exc, exc.__traceback__)
        finally:
            leave_job(token)
        return self._after_success(leased, spec, self._finish(leased, spec, value, time.perf_counter() - started),
                                   value)

    async def execute_async(self, leased: LeasedJob, loop: asyncio.AbstractEventLoop) -> Outcome:
        """Run the job on ``loop``: ``async def`` jobs as coroutines, cancelled at their time limit;
        plain functions in the loop's thread pool (waited for up to the limit, not stoppable)."""
        started = time.perf_counter()
        spec, func, args, kwargs, problem = self.prepare(leased)
        if problem is not None or func is None:
            return _failure(leased, spec, problem or "cannot run job")
        enter_job(leased, self.job_connection, self.serializer)  # this task's own context: nothing to reset
        try:
            limit = spec.timeout_s if spec.timeout_s > 0 else None  # job_timeout=-1: no limit
            if inspect.iscoroutinefunction(func):
                value = await asyncio.wait_for(func(*args, **kwargs), limit)
            else:
                # run_in_executor does not carry the context to the thread: hand it over explicitly.
                call = functools.partial(contextvars.copy_context().run, func, *args, **kwargs)
                value = await asyncio.wait_for(loop.run_in_executor(None, call), limit)
                if inspect.isawaitable(value):
                    value = await asyncio.wait_for(value, limit)
        except asyncio.TimeoutError as exc:
            how = "was cancelled" if inspect.iscoroutinefunction(func) else "was abandoned (its thread runs on)"
            outcome = _failure(leased, spec, f"JobTimeoutError: time limit exceeded: the job ran longer than "
                                             f"{spec.timeout_s:g} s and {how}", time.perf_counter() - started,
                               draw(spec.retry))
            error: BaseException = JobTimeoutError(str(exc) or "time limit exceeded")
        except RetryJob as exc:
            return _failure(leased, spec, f"RetryJob: {exc}", time.perf_counter() - started,
                            retry_job_plan(spec.retry, exc))
        except Exception as exc:
            outcome = _failure(leased, spec, describe_exception(exc, leased.func), time.perf_counter() - started,
                               draw(spec.retry))
            error = exc
        else:
            outcome = self._finish(leased, spec, value, time.perf_counter() - started)
            if not spec.callbacks:
                return outcome
            return await loop.run_in_executor(None, self._after_success, leased, spec, outcome, value)
        if "f" not in spec.callbacks:
            return outcome
        return await loop.run_in_executor(None, self._callback, leased, spec, outcome, "f", type(error), error,
                                          error.__traceback__)

    # --- callbacks ------------------------------------------------------------------------------

    def _after_success(self, leased: LeasedJob, spec: JobSpec, outcome: Outcome, value: Any) -> Outcome:
        if outcome.status != "finished":
            return outcome  # the result could not be stored: the job failed after all
        return self._callback(leased, spec, outcome, "s", value)

    def _callback(self, leased: LeasedJob, spec: JobSpec, outcome: Outcome, code: str, *args: Any) -> Outcome:
        """Run the job's callback ``code`` ("s", "f", "t") with ``(job, connection, *args)``; its failure
        is logged and noted on the outcome, never changes it."""
        entry = spec.callbacks.get(code)
        if entry is None:
            return outcome
        path, limit_s = entry
        name = callback_name(code)
        try:
            func = self.resolver.resolve(path)
            job = Job(leased.queue, leased.id, self.connection, serializer=self.serializer)
            call_with_limit(func, (job, self.connection, *args), limit_s)
            return outcome
        except JobTimeoutError:
            note = f"{name} {path}: time limit exceeded: the callback ran longer than {limit_s:g} s"
        except Exception as exc:
            note = f"{name} {path} failed: {describe_exception(exc, path)}"
        log.warning("%s: job %s: %s (the job's outcome stands)", leased.queue, leased.id, note.splitlines()[0])
        return dataclasses.replace(outcome, note=note[:MAX_NOTE_CHARS])

    def stopped(self, leased: LeasedJob, reason: str) -> Outcome:
        """The outcome of a job stopped on request (status ``stopped``), after its ``on_stopped`` callback,
        which runs here, in the calling thread, within its own limit."""
        spec = decode_options(leased.options, self.default_timeout_s)[0]
        outcome = Outcome(leased.id, leased.token, "stopped", f"JobStopped: {reason}".encode("utf-8", "replace"),
                          spec.failure_keep_ms, history=spec.history)
        if self.signer is not None and self.signer.problem(leased.queue, leased.id, leased.func, leased.payload,
                                                           leased.options, leased.signature):
            return outcome  # its on_stopped path comes from a record no key holder wrote: never import it
        return self._callback(leased, spec, outcome, "t")

    def _finish(self, leased: LeasedJob, spec: JobSpec, value: Any, elapsed_s: float) -> Outcome:
        try:
            data = self.serializer.dumps(value)
        except SerializationError as exc:
            return _failure(leased, spec, f"SerializationError: the job's return value cannot be stored: {exc}")
        return Outcome(leased.id, leased.token, "finished", data, spec.result_keep_ms, elapsed_s, spec.repeat,
                       spec.history)


async def _awaited(value: Any) -> Any:
    return await value


def describe_exception(exc: BaseException, func_path: str) -> str:
    """``Type: message`` then the traceback; a call with wrong arguments says so first."""
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    head = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, TypeError) and exc.__traceback__ is not None and exc.__traceback__.tb_next is None:
        # Raised by the call itself, not inside the function: the arguments do not fit its signature.
        head = f"wrong arguments for {func_path}: {exc}"
    return f"{head}\n{text}"
