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
from clusterq.api.hooks import EMPTY, HookSet
from clusterq.api.job import DEFAULT_FAILURE_TTL_S, DEFAULT_RESULT_TTL_S, Job
from clusterq.api.options import MAX_DURATION_S
from clusterq.api.retry import MAX_RETRY_ON, RetryJob, draw, plan_template, retries_on, retry_job_plan
from clusterq.exceptions import DeserializationError, FunctionNotFound, JobTimeoutError, SerializationError
from clusterq.serializers import Serializer
from clusterq.signing import Signer
from clusterq.state.store import MAX_RESULT_HISTORY, RESULT_HISTORY, LeasedJob, Outcome
from clusterq.utils import import_attribute

log = logging.getLogger(__name__)

DEFAULT_JOB_TIMEOUT_S = 180.0
"""A job's time limit when neither the job nor its queue sets one (RQ's default)."""


class FunctionResolver:
    """Imports job functions by dotted path, once each, within an optional allowlist.

    ``allow`` holds patterns (``fnmatch`` style, e.g. ``"myapp.tasks.*"``); when given, a path that
    matches none is refused before anything is imported, so a payload cannot make the worker import an
    arbitrary module. A pattern and a path match alike whether they write ``module:Class.method`` (the
    form clusterq generates for methods) or ``module.Class.method``.

    Whatever the allowlist, a path reaches only what a job may be: a module-level function, or a
    function (static method, class method) of a module-level class. No part of it may start with an
    underscore (``notify.__globals__``, ``Jobs.__class__``, ``_private``), and nothing on the way may be
    an instance or another module, so a path cannot walk from an allowed function to whatever it holds.
    """

    def __init__(self, allow: Sequence[str] | None = None) -> None:
        self.allow = tuple(allow) if allow else None
        self._patterns = tuple(p.replace(":", ".") for p in self.allow) if self.allow else None
        self._cache: dict[str, Callable[..., Any]] = {}

    def _allowed(self, path: str) -> bool:
        dotted = path.replace(":", ".")
        return self._patterns is None or any(fnmatch.fnmatchcase(dotted, p) for p in self._patterns)

    def resolve(self, path: str) -> Callable[..., Any]:
        func = self._cache.get(path)
        if func is not None:
            return func
        if not self._allowed(path):
            raise FunctionNotFound(f"function {path!r} is not in this worker's allowlist {list(self.allow or ())}")
        private = [part for part in path.replace(":", ".").split(".") if part.startswith("_")]
        if private:
            raise FunctionNotFound(f"function {path!r} names {private[0]!r}: a job's path never has a part "
                                   "starting with an underscore")
        found = import_attribute(path)
        if self.allow is not None and _passes_through_a_module(path):
            # "pkg.tasks:os.system" matches "pkg.tasks*" yet reaches os.system through a module that
            # imported os: the allowlist names where functions are defined, not what they import.
            raise FunctionNotFound(f"function {path!r} reaches into another module; this worker's allowlist "
                                   f"{list(self.allow)} only allows functions of the modules it names")
        if not callable(found):
            raise FunctionNotFound(f"{path!r} is a {type(found).__name__}, not a function")
        func = found
        refused = _not_a_job_function(path, func)
        if refused:
            raise FunctionNotFound(f"{path!r} {refused}")
        self._cache[path] = func
        return func


def _split(path: str) -> tuple[str, list[str]]:
    module_name, sep, attr_path = path.partition(":")
    if not sep:
        module_name, _, attr_path = path.rpartition(".")
    return module_name, attr_path.split(".")


def _passes_through_a_module(path: str) -> bool:
    """True if ``module:attr.attr...`` walks through a module object on its way (``mod:os.system``)."""
    module_name, parts = _split(path)
    if len(parts) < 2:
        return False
    obj: Any = sys.modules.get(module_name)
    for part in parts[:-1]:
        obj = getattr(obj, part, None)
        if obj is None or isinstance(obj, types.ModuleType):
            return True
    return False


def _not_a_job_function(path: str, func: Any) -> str | None:
    """Why ``func`` (found at ``path``) is not a job function, or None: only functions of a module, or
    of a class of a module, are (not a bound method of an instance, not a class, not a callable object)."""
    module_name, parts = _split(path)
    owner: Any = sys.modules.get(module_name)
    for part in parts[:-1]:
        owner = getattr(owner, part, None)
        if not isinstance(owner, type):
            return f"reaches {part!r}, a {type(owner).__name__}: only functions of a module or of its classes run"
    if isinstance(func, types.FunctionType):
        return None
    if isinstance(func, types.BuiltinFunctionType) and (func.__self__ is None
                                                         or isinstance(func.__self__, (types.ModuleType, type))):
        return None  # a C function of a module (math.sqrt), not a method bound to some object ({}.get)
    if isinstance(func, types.MethodType) and isinstance(func.__self__, type):
        return None  # a classmethod, reached through its class
    return f"is a {type(func).__name__}, not a function: only functions of a module or of its classes run"


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
    retry_on: tuple[str, ...] = ()  # Retry(on=...): the exception classes retried ("module.QualName"), () all


def _bounded(value: Any, what: str) -> float:
    """A stored number of seconds, as enqueue checks it (:func:`clusterq.api.options.seconds`)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"{what} is {value!r}, not a number")
    number = float(value)
    if not math.isfinite(number) or abs(number) > MAX_DURATION_S:
        raise ValueError(f"{what} is {value!r}, not a finite number of at most {MAX_DURATION_S} s")
    return number


def _keep_ms(seconds: Any, default_s: float, what: str) -> int:
    value = default_s if seconds is None else _bounded(seconds, what)
    return -1 if value < 0 else int(value * 1000)


def decode_options(raw: bytes, default_timeout_s: float) -> tuple[JobSpec, str | None]:
    """Decode a job's options; on garbage fall back to defaults and return a problem description.

    Never raises: a record written by an older version or forged (``result_ttl`` of 1e999, a NaN time
    limit, a retry plan of the wrong shape) gives the defaults and a problem, which fails that one job
    with the problem as its reason. The worker and its pools (the supervisor reads time limits here)
    rely on this.
    """
    problem = None
    options: dict[str, Any] = {}
    if raw:
        try:
            decoded = json.loads(raw)
            if isinstance(decoded, dict):
                options = decoded
            else:
                problem = f"job options are a {type(decoded).__name__}, not an object"
        except (ValueError, RecursionError) as exc:
            problem = f"job options are not valid JSON ({exc})"
    try:
        spec = JobSpec(
            timeout_s=_bounded(options["timeout"], "timeout") if options.get("timeout") else default_timeout_s,
            result_keep_ms=_keep_ms(options.get("result_ttl"), DEFAULT_RESULT_TTL_S, "result_ttl"),
            failure_keep_ms=_keep_ms(options.get("failure_ttl"), DEFAULT_FAILURE_TTL_S, "failure_ttl"),
            serializer=str(options.get("ser", "json")),
            retry=plan_template(options.get("retry")),
            repeat=plan_template(options.get("repeat")),
            history=_history(options.get("hist")),
            callbacks=decode_callbacks(options.get("cb")),
            retry_on=_retry_on(options.get("ron")),
        )
    except Exception as exc:  # whatever the record holds, one job fails, not the worker
        problem = f"job options are malformed ({type(exc).__name__}: {exc})"
        spec = JobSpec(default_timeout_s, DEFAULT_RESULT_TTL_S * 1000, DEFAULT_FAILURE_TTL_S * 1000, "json")
    return spec, problem


def _retry_on(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if (not isinstance(value, list) or not 1 <= len(value) <= MAX_RETRY_ON
            or not all(isinstance(name, str) and 0 < len(name) <= 500 for name in value)):
        raise ValueError(f"ron is {value!r}, not a list of 1 to {MAX_RETRY_ON} exception class names")
    return tuple(value)


ExceptionHandler = Callable[..., Any]
"""RQ's exception handler: ``handler(job, exc_type, exc_value, traceback)``; returning ``False`` stops the
chain (``None`` or anything else goes on to the next handler)."""


def _history(value: Any) -> int:
    if value is None or value == 0:
        return RESULT_HISTORY
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_RESULT_HISTORY:
        raise ValueError(f"hist is {value!r}, not an int from 1 to {MAX_RESULT_HISTORY}")
    return value


_alarm_limit_s = 0.0
# The handler as installed: signal.getsignal converts it to an enum member when it can (a failed lookup,
# ~5 us per job); the raw function is all the check needs.
_getsignal: Callable[[int], Any] = getattr(sys.modules.get("_signal"), "getsignal", signal.getsignal)


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
        if _getsignal(signal.SIGALRM) is not _on_alarm:
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
                 time_limits: bool = True, signer: Signer | None = None, hooks: HookSet = EMPTY,
                 exception_handlers: Sequence[ExceptionHandler] = ()) -> None:
        self.exception_handlers = tuple(exception_handlers)
        self.connection = connection
        self.job_connection = job_connection
        self.time_limits = time_limits
        self.signer = signer
        self.hooks = hooks
        # Runs whose outcome a pool recorded from outside (the thread pool's hard limit): when their thread
        # ends the run anyway, its outcome is dropped, and so are its failure hooks (one report per run).
        self.taken_over: set[tuple[str, str, int]] = set()
        self.resolver = resolver
        self.serializer = serializer
        self.default_timeout_s = default_timeout_s
        self.connection = connection
        self.time_limits = time_limits
        self._timeouts: dict[bytes, float] = {}
        self._verdicts: dict[tuple[str, str, int], str | None] = {}  # (queue, id, lease token) -> refusal
        self._default_spec = decode_options(b"", default_timeout_s)[0]
        # The payload of a call without arguments and the data of a None result, as this serializer
        # writes them: most jobs carry the one or return the other, and need not go through the codec.
        self._no_arguments = _encoded(serializer, [[], {}])
        self._none_data = _encoded(serializer, None)

    def prepare(self, leased: LeasedJob) -> tuple[JobSpec, Callable[..., Any] | None, Any, Any, str | None]:
        """Everything needed to call the job, or a reason why it cannot be called."""
        # Before anything of the job is looked at: an unsigned job imports nothing and decodes nothing.
        refused = self.refusal(leased)
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
            if not leased.payload or leased.payload == self._no_arguments:
                decoded: Any = [[], {}]
            else:
                decoded = self.serializer.loads(leased.payload)
            # Check the shape before unpacking: unpacking a dict or a 3-list would blame the wrong thing.
            if not (isinstance(decoded, (list, tuple)) and len(decoded) == 2
                    and isinstance(decoded[0], list) and isinstance(decoded[1], dict)):
                raise DeserializationError(f"payload is not [args, kwargs]: {leased.payload[:80]!r}")
            args, kwargs = decoded
        except (DeserializationError, TypeError, ValueError) as exc:
            return spec, None, None, None, f"DeserializationError: cannot decode the job's arguments: {exc}"
        return spec, func, args, kwargs, None

    def refusal(self, leased: LeasedJob) -> str | None:
        """Why this worker must not trust anything of the record (its signature does not check out), or None.

        Every reader of a record's fields goes through here first (the supervisor reading a time limit, a
        failure or stop outcome built outside the job's process), so a forged record costs one failed job
        with the defaults, whatever its options say. The verdict is cached per lease (the supervisor asks
        for a running job's deadline on every turn of its loop)."""
        if self.signer is None:
            return None
        lease = (leased.queue, leased.id, leased.token)
        if lease in self._verdicts:
            return self._verdicts[lease]
        verdict = self.signer.problem(leased.queue, leased.id, leased.func, leased.payload, leased.options,
                                      leased.signature, leased.headers)
        if len(self._verdicts) >= 1024:
            self._verdicts.clear()
        self._verdicts[lease] = verdict
        return verdict

    def trusted_options(self, leased: LeasedJob) -> bytes:
        """The record's options if its signature checks out (or the worker checks none), else none: the
        defaults apply."""
        return b"" if self.refusal(leased) else leased.options

    def timeout_of(self, leased: LeasedJob) -> float:
        """The job's time limit in seconds, ``inf`` for none (cached per distinct options value)."""
        options = self.trusted_options(leased)
        timeout = self._timeouts.get(options)
        if timeout is None:
            spec = decode_options(options, self.default_timeout_s)[0]
            timeout = spec.timeout_s if spec.timeout_s > 0 else math.inf  # job_timeout=-1: no limit (as in RQ)
            # A callback runs after the job, in the same slot, within its own limit: the hard limit allows it.
            timeout += max((limit for _, limit in spec.callbacks.values()), default=0.0)
            if len(self._timeouts) < 1024:
                self._timeouts[options] = timeout
        return timeout

    def failure(self, leased: LeasedJob, reason: str, *, outside: bool = False) -> Outcome:
        """A failed outcome with ``reason``, kept as long as the job's failure_ttl says; it is final, and
        the failure hooks hear of it here. ``outside``: the pool stopped the job at its hard limit and
        records this outcome (the job's own thread, if it goes on, stays silent: :attr:`taken_over`)."""
        outcome = _failure(leased, decode_options(self.trusted_options(leased), self.default_timeout_s)[0], reason)
        if self.hooks.perform and (outside or run_key(leased) not in self.taken_over):
            self.hooks.failed(self.hooks.info(leased, trusted=not self.refusal(leased)), None, reason, "")
        return outcome

    def execute(self, leased: LeasedJob) -> Outcome:
        """Run the job in this thread (time limit by SIGALRM in the main thread); never raises but
        :class:`StopRequested`. An ``async def`` job runs to completion on a fresh event loop."""
        started = time.perf_counter()
        spec, func, args, kwargs, problem = self.prepare(leased)
        if problem is not None or func is None:
            return self._unrunnable(leased, spec, problem or "cannot run job")
        hooks = self.hooks if self.hooks.perform else None
        value: Any = None
        error: Exception | None = None
        token = enter_job(leased, self.job_connection, self.serializer)
        try:
            if hooks is not None:
                job = hooks.info(leased, args, kwargs)
                entered = hooks.enter(job)
            try:
                with time_limit(spec.timeout_s if self.time_limits else 0):
                    value = func(*args, **kwargs)
                    if value is not None and inspect.isawaitable(value):
                        value = asyncio.run(_awaited(value))
            except Exception as exc:
                error = exc
            except BaseException as exc:  # stopped (StopRequested, JobStopped): the around-hooks end too
                if hooks is not None:
                    hooks.leave(job, entered, None, exc)
                raise
            if hooks is not None:
                hooks.leave(job, entered, value, error)
        finally:
            leave_job(token)
        outcome = self._outcome(leased, spec, value, error, time.perf_counter() - started)
        if hooks is not None and outcome.status == "failed" and run_key(leased) not in self.taken_over:
            hooks.failed(job, error, outcome.data.decode("utf-8", "replace"), outcome.plan)
        if _handled(error):  # RQ's order: the on_failure callback (in _outcome), then the exception handlers
            assert error is not None
            outcome = self._handle_exception(leased, outcome, error)
        return outcome

    def _outcome(self, leased: LeasedJob, spec: JobSpec, value: Any, error: Exception | None,
                 elapsed_s: float) -> Outcome:
        """What the call's return ``value`` or ``error`` makes of the job (its callback run)."""
        if error is None:
            return self._after_success(leased, spec, self._finish(leased, spec, value, elapsed_s), value)
        if isinstance(error, RetryJob):
            return _failure(leased, spec, f"RetryJob: {error}", elapsed_s, retry_job_plan(spec.retry, error))
        reason = (f"JobTimeoutError: {error}" if isinstance(error, JobTimeoutError)
                  else describe_exception(error, leased.func))
        outcome = _failure(leased, spec, reason, elapsed_s, self._plan(spec, error))
        return self._callback(leased, spec, outcome, "f", type(error), error, error.__traceback__)

    def _unrunnable(self, leased: LeasedJob, spec: JobSpec, problem: str) -> Outcome:
        """A job that cannot be called fails at once, for good; the failure hooks hear of it (without the
        headers of a job whose signature failed: nothing of it is trusted)."""
        outcome = _failure(leased, spec, problem)
        if self.hooks.perform:
            self.hooks.failed(self.hooks.info(leased, trusted=not problem.startswith("SignatureError")), None,
                              problem, "")
        return outcome

    async def execute_async(self, leased: LeasedJob, loop: asyncio.AbstractEventLoop) -> Outcome:
        """Run the job on ``loop``: ``async def`` jobs as coroutines, cancelled at their time limit;
        plain functions in the loop's thread pool (waited for up to the limit, not stoppable)."""
        started = time.perf_counter()
        spec, func, args, kwargs, problem = self.prepare(leased)
        if problem is not None or func is None:
            return self._unrunnable(leased, spec, problem or "cannot run job")
        enter_job(leased, self.job_connection, self.serializer)  # this task's own context: nothing to reset
        hooks = self.hooks if self.hooks.perform else None
        if hooks is not None:  # entered in the task's context, which a plain function's thread gets a copy of
            job = hooks.info(leased, args, kwargs)
            entered = hooks.enter(job)
        value: Any = None
        error: Exception | None = None
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
        except asyncio.TimeoutError:
            how = "was cancelled" if inspect.iscoroutinefunction(func) else "was abandoned (its thread runs on)"
            error = JobTimeoutError(f"time limit exceeded: the job ran longer than {spec.timeout_s:g} s and {how}")
        except Exception as exc:
            error = exc
        except BaseException as exc:  # cancelled (job.stop(), close): the around-hooks end too
            if hooks is not None:
                hooks.leave(job, entered, None, exc)
            raise
        if hooks is not None:
            hooks.leave(job, entered, value, error)
        elapsed_s = time.perf_counter() - started
        if error is None and not spec.callbacks:
            outcome = self._finish(leased, spec, value, elapsed_s)
        elif error is not None and "f" not in spec.callbacks:
            outcome = self._outcome(leased, spec, value, error, elapsed_s)
        else:  # a callback runs: off the loop
            outcome = await loop.run_in_executor(None, self._outcome, leased, spec, value, error, elapsed_s)
        if hooks is not None and outcome.status == "failed":
            hooks.failed(job, error, outcome.data.decode("utf-8", "replace"), outcome.plan)
        if self.exception_handlers and _handled(error):
            assert error is not None
            outcome = await loop.run_in_executor(None, self._handle_exception, leased, outcome, error)
        return outcome

    # --- after a failure: the plan and the exception handlers -------------------------------------

    @staticmethod
    def _plan(spec: JobSpec, exc: BaseException) -> str:
        """The retry plan sent with a failure: none for :class:`NoRetry` or an exception ``Retry(on=...)``
        does not name."""
        return draw(spec.retry) if spec.retry and retries_on(spec.retry_on, exc) else ""

    def _handle_exception(self, leased: LeasedJob, outcome: Outcome, exc: BaseException) -> Outcome:
        """Walk the worker's exception handlers (RQ's chain), here, in the process that ran the job. A
        handler returning ``False`` stops the chain; one that raises is noted on the job and the chain goes
        on. A handler's verdict on retrying is ``job.retries_left = 0`` (written before the outcome is)."""
        if not self.exception_handlers:
            return outcome
        job = Job(leased.queue, leased.id, self.connection, serializer=self.serializer)
        for handler in self.exception_handlers:
            try:
                if handler(job, type(exc), exc, exc.__traceback__) is False:
                    break
            except Exception as err:
                name = getattr(handler, "__qualname__", repr(handler))
                note = f"exception handler {name} failed: {describe_exception(err, name)}"
                log.warning("%s: job %s: %s (the job's outcome stands)", leased.queue, leased.id,
                            note.splitlines()[0])
                outcome = dataclasses.replace(outcome, note=note[:MAX_NOTE_CHARS])
        return outcome

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
        spec = decode_options(self.trusted_options(leased), self.default_timeout_s)[0]
        outcome = Outcome(leased.id, leased.token, "stopped", f"JobStopped: {reason}".encode("utf-8", "replace"),
                          spec.failure_keep_ms, history=spec.history)
        if self.refusal(leased):
            return outcome  # its on_stopped path comes from a record no key holder wrote: never import it
        return self._callback(leased, spec, outcome, "t")

    def _finish(self, leased: LeasedJob, spec: JobSpec, value: Any, elapsed_s: float) -> Outcome:
        try:
            data = self._none_data if value is None and self._none_data is not None else self.serializer.dumps(value)
        except SerializationError as exc:
            return _failure(leased, spec, f"SerializationError: the job's return value cannot be stored: {exc}")
        return Outcome(leased.id, leased.token, "finished", data, spec.result_keep_ms, elapsed_s, spec.repeat,
                       spec.history)


def _encoded(serializer: Serializer, value: Any) -> bytes | None:
    """``value`` as ``serializer`` writes it, if that is always the same bytes (decoded, the same value), or
    None: the bytes then stand for the value without a call to the codec."""
    try:
        data = serializer.dumps(value)
        same = serializer.dumps(value) == data and serializer.loads(data) == value
    except Exception:  # a serializer that cannot carry it: the codec is called each time, as before
        return None
    return data if same and isinstance(data, bytes) else None


def _handled(error: Exception | None) -> bool:
    """Whether the worker's exception handlers hear of this error (a RetryJob is a request, not a failure)."""
    return error is not None and not isinstance(error, RetryJob)


def run_key(leased: LeasedJob) -> tuple[str, str, int]:
    """One run of one job: its queue, id and lease token."""
    return (leased.queue, leased.id, leased.token)


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
