"""What :class:`~clusterq.api.job.Job` and :class:`~clusterq.api.aio_job.AsyncJob` share: how a job's
record is decoded (status, arguments, options, dates, meta, progress) and every change of a job written
once as a plan (:mod:`clusterq.state.plan`): cancel, stop, delete and requeue with their reply codes,
telling dependents, saving meta and progress, reading results.

The front ends differ only in how a plan runs and in when a record is read: a sync ``Job`` reads it on
first use, an ``AsyncJob`` only when awaited (reading a field before raises rather than block the loop).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from enum import Enum
from typing import Any
from urllib.parse import quote, unquote

from clusterq.api.hooks import decode_headers
from clusterq.api.results import Result, parse_latest, parse_results
from clusterq.api.rq_compat import queue_of_job_plan
from clusterq.exceptions import InvalidJobOperation, NoSuchJobError
from clusterq.serializers import Serializer
from clusterq.state import keys as K
from clusterq.state import store as T
from clusterq.state import transitions as TR
from clusterq.state.outbox import Forwarder, ended_entry, split_dependents
from clusterq.state.plan import Plan, client_step, store_step
from clusterq.utils import now_ms


class JobStatus(str, Enum):
    """Where a job is in its life. ``started`` means leased by a worker."""

    QUEUED = "queued"
    STARTED = "started"
    FINISHED = "finished"
    FAILED = "failed"
    CANCELED = "canceled"
    STOPPED = "stopped"
    SCHEDULED = "scheduled"
    DEFERRED = "deferred"


TERMINAL = frozenset({JobStatus.FINISHED, JobStatus.FAILED, JobStatus.CANCELED, JobStatus.STOPPED})

DEFAULT_RESULT_TTL_S = 500
"""Seconds a finished job's record and result are kept (RQ's default)."""
DEFAULT_FAILURE_TTL_S = 365 * 24 * 3600
"""Seconds a failed or canceled job's record is kept (RQ's default: one year)."""


def _ms_to_datetime(value: bytes | None) -> datetime | None:
    if value is None:
        return None
    return datetime.fromtimestamp(int(float(value)) / 1000, tz=timezone.utc)


@dataclass(frozen=True)
class Progress:
    """What a running job last reported with ``set_progress``."""

    value: Any
    message: str | None
    updated_at: datetime | None


def decode_progress(raw: bytes | None) -> Progress | None:
    """The progress stored in a job's ``pg`` field (JSON written by ``set_progress``)."""
    if not raw:
        return None
    try:
        data = json.loads(raw)
        return Progress(data.get("v"), data.get("m"), _ms_to_datetime(str(data.get("t", 0)).encode()))
    except (ValueError, AttributeError, TypeError):
        return None


def make_handle(queue: str, job_id: str) -> str:
    """``<queue, percent-escaped>/<id>``: enough to find the job with no other context."""
    return f"{quote(queue, safe='')}/{job_id}"


def parse_handle(handle: str) -> tuple[str, str]:
    queue, sep, job_id = handle.partition("/")
    if not sep or not queue or not job_id:
        raise NoSuchJobError(f"{handle!r} is not a job handle (expected 'queue/job_id', see Job.handle)")
    return unquote(queue), job_id


def options_of(fields: dict[str, bytes] | None) -> dict[str, Any]:
    """The job's options (the ``o`` field, JSON), or {}."""
    raw = (fields or {}).get("o")
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def status_of(fields: dict[str, bytes] | None) -> JobStatus | None:
    raw = (fields or {}).get("s")
    if raw is None:
        return None
    try:
        return JobStatus(raw.decode())
    except ValueError:
        return None


class JobCore:
    """A job's identity, its decoded record and its changes as plans. Subclasses provide ``_field``
    (how a field is read: lazily for ``Job``, from the last await for ``AsyncJob``)."""

    queue_name: str
    id: str
    serializer: Serializer
    _keys: K.QueueKeys
    _fields: dict[str, bytes] | None
    _headers: dict[str, str] | None = None  # set from the lease for the running job: no read

    def _field(self, name: str) -> bytes | None:
        raise NotImplementedError

    @property
    def handle(self) -> str:
        """A string that finds this job from nothing else: pass it to ``Job.fetch`` or ``AsyncJob.fetch``."""
        return make_handle(self.queue_name, self.id)

    def get_id(self) -> str:
        """RQ 1.x's accessor for :attr:`id`."""
        return self.id

    @classmethod
    def key_for(cls, handle_or_id: str, queue: str | None = None) -> str:
        """The Redis key of a job's record. A job's key depends on its queue (its slot): pass a handle, or
        an id with ``queue``."""
        if queue is None:
            if "/" not in handle_or_id:
                raise TypeError(f"{cls.__name__}.key_for({handle_or_id!r}) needs the job's queue: a clusterq "
                                "job's key is in its queue's slot; pass queue='name' or a handle ('queue/id')")
            queue, handle_or_id = parse_handle(handle_or_id)
        return K.QueueKeys(K.validate_queue_name(queue)).job(handle_or_id)

    @property
    def key(self) -> str:
        return self._keys.job(self.id)

    def _missing(self) -> NoSuchJobError:
        return NoSuchJobError(f"no job {self.id!r} in queue {self.queue_name!r}")

    # --- the record, decoded ----------------------------------------------------------------------

    def _options(self) -> dict[str, Any]:
        return options_of({"o": raw} if (raw := self._field("o")) else None)

    @property
    def func_name(self) -> str:
        return (self._field("f") or b"").decode("utf-8", "replace")

    def _call_data(self) -> tuple[list[Any], dict[str, Any]]:
        raw = self._field("p")
        if not raw:
            return [], {}
        args, kwargs = self.serializer.loads(raw)
        return list(args), dict(kwargs)

    @property
    def args(self) -> list[Any]:
        return self._call_data()[0]

    @property
    def kwargs(self) -> dict[str, Any]:
        return self._call_data()[1]

    @property
    def description(self) -> str:
        described = self._options().get("description")
        if described:
            return str(described)
        args, kwargs = self._call_data()
        params = [repr(a) for a in args] + [f"{k}={v!r}" for k, v in kwargs.items()]
        return f"{self.func_name}({', '.join(params)})"

    @property
    def timeout(self) -> float | None:
        return self._options().get("timeout")

    @property
    def result_ttl(self) -> int | None:
        return self._options().get("result_ttl")

    @property
    def failure_ttl(self) -> int | None:
        return self._options().get("failure_ttl")

    @property
    def attempts(self) -> int:
        """How many times a worker has leased this job."""
        return int(self._field("n") or 0)

    @property
    def worker_name(self) -> str | None:
        raw = self._field("w")
        return raw.decode() if raw else None

    @property
    def enqueued_at(self) -> datetime | None:
        return _ms_to_datetime(self._field("c"))

    @property
    def created_at(self) -> datetime | None:
        """When the job's record was created (RQ's name; the same time as :attr:`enqueued_at`)."""
        return _ms_to_datetime(self._field("c"))

    @property
    def started_at(self) -> datetime | None:
        return _ms_to_datetime(self._field("ts"))

    @property
    def ended_at(self) -> datetime | None:
        return _ms_to_datetime(self._field("te"))

    @property
    def exc_info(self) -> str | None:
        """The failure's reason and traceback, once the job failed."""
        raw = self._field("e")
        return raw.decode("utf-8", "replace") if raw is not None else None

    @property
    def retries(self) -> int:
        """How many times the job was run again after a failure (``Retry``, ``RetryJob``)."""
        return int(self._field("rt") or 0)

    @property
    def retries_left(self) -> int | None:
        """Retries its ``Retry`` still allows (RQ's name), or None for a job enqueued without one (and
        without ``retries_left`` set)."""
        capped = self._field("rx")
        cap = None if capped is None else max(0, int(capped) - self.retries)
        retry = self._options().get("retry")
        if not isinstance(retry, list) or not retry:
            return cap
        try:
            left = max(0, int(retry[0]) - self.retries)
        except (TypeError, ValueError):
            return cap
        return left if cap is None else min(left, cap)

    @property
    def repeats(self) -> int:
        """How many times the job was run again after a success (``Repeat``)."""
        return int(self._field("yr") or 0)

    @property
    def callback_error(self) -> str | None:
        """Why the last callback that failed (raised or ran past its timeout) failed, if one did."""
        raw = self._field("kc")
        return raw.decode("utf-8", "replace") if raw is not None else None

    @property
    def progress(self) -> Progress | None:
        """The job's last reported progress (from the last read: refresh to see a newer one)."""
        return decode_progress(self._field("pg"))

    @property
    def headers(self) -> dict[str, str]:
        """The headers the ``before_enqueue`` hooks gave the job (:mod:`clusterq.api.hooks`), {} for none.
        Read-only (a copy): they are covered by the job's signature."""
        if self._headers is None:  # fixed at enqueue: read once
            self._headers = decode_headers(self._field("hd"))
        return dict(self._headers)

    @property
    def meta(self) -> dict[str, Any]:
        """User data stored with the job; change it and save it with ``save_meta``."""
        if not hasattr(self, "_meta"):
            raw = self._field("m")
            self._meta: dict[str, Any] = self.serializer.loads(raw) if raw else {}
        return self._meta

    def _value(self) -> Any:
        raw = self._field("r")
        return None if raw is None else self.serializer.loads(raw)

    # --- plans ------------------------------------------------------------------------------------

    def _refresh_plan(self) -> Plan[None]:
        fields = yield store_step("read_job", self._keys, self.id)
        if fields is None:
            raise NoSuchJobError(f"no job {self.id!r} in queue {self.queue_name!r} (deleted or expired)")
        self._fields = fields

    def _status_plan(self) -> Plan[JobStatus | None]:
        """Read the record; its status, or None if it no longer exists."""
        fields = yield store_step("read_job", self._keys, self.id)
        if fields is not None:
            self._fields = fields
        return status_of(fields)

    def _tell_dependents_plan(self, ended: str) -> Plan[None]:
        # The script wrote the intent to this queue's outbox: apply it now. Should this process die
        # first, a worker of this queue replays it.
        yield from Forwarder(None, DEFAULT_FAILURE_TTL_S * 1000).forward_plan(
            [(self.queue_name, ended_entry(ended, self.id))])

    def _cancel_plan(self, enqueue_dependents: bool) -> Plan[None]:
        fields = self._fields if self._fields is not None else (yield store_step("read_job", self._keys, self.id))
        keep_s = options_of(fields).get("failure_ttl")  # no record: the script reports the job missing
        keep_s = DEFAULT_FAILURE_TTL_S if keep_s is None else keep_s
        told = "ok" if enqueue_dependents else "canceled"
        code = TR.CANCEL.code((yield store_step("run", T.cancel_call(self._keys, self.id, int(keep_s * 1000), told))))
        self._fields = None
        if code is TR.CancelCode.NOTIFY:
            yield from self._tell_dependents_plan(told)
        if code is TR.CancelCode.NO_SUCH_JOB:
            raise self._missing()
        if code is TR.CancelCode.ALREADY_ENDED:
            status = yield from self._status_plan()
            raise InvalidJobOperation(f"job {self.id!r} is already {status.value if status else 'gone'}")

    def _stop_plan(self, reason: str | None) -> Plan[None]:
        code = TR.STOP.code((yield store_step("run", T.stop_call(self._keys, self.id, reason or "stop requested"))))
        self._fields = None
        if code is TR.StopCode.NO_SUCH_JOB:
            raise self._missing()
        if code is TR.StopCode.NOT_RUNNING:
            status = yield from self._status_plan()
            raise InvalidJobOperation(f"job {self.id!r} is not running (it is {status.value if status else 'gone'}); "
                                      "only a started job can be stopped (cancel() a queued or scheduled one)")

    def _delete_plan(self, delete_dependents: bool) -> Plan[None]:
        told = "purge" if delete_dependents else "deleted"
        code = TR.DELETE.code((yield store_step("run", T.delete_call(self._keys, self.id, told))))
        self._fields = None
        if code is TR.DeleteCode.NOTIFY:
            yield from self._tell_dependents_plan(told)

    def _requeue_plan(self, at_front: bool) -> Plan[None]:
        code = TR.REQUEUE.code((yield store_step("run", T.requeue_call(self._keys, self.id, at_front))))
        if code is TR.RequeueCode.NO_SUCH_JOB:
            raise self._missing()
        if code is TR.RequeueCode.NOT_ENDED:
            raise InvalidJobOperation(f"job {self.id!r} is queued or running; only ended jobs can be requeued")
        self._fields = None

    def _set_fields_plan(self, fields: dict[str, Any]) -> Plan[None]:
        code = TR.SET_FIELDS.code((yield store_step("run", T.set_fields_call(self._keys, self.id, fields))))
        if code is TR.SetFieldsCode.NO_SUCH_JOB:
            raise self._missing()

    def _set_retries_left_plan(self, value: int) -> Plan[None]:
        """Allow at most ``value`` more retries (``0``: a failure now is final): a cap (field ``rx``) on
        the retries done so far plus ``value``, which complete.lua checks; it can only lower what the
        ``Retry`` allows."""
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"retries_left must be an int >= 0, got {value!r}")
        yield from self._refresh_plan()  # the retries done so far, as of now
        cap = str(self.retries + value)
        yield from self._set_fields_plan({"rx": cap})
        if self._fields is not None:
            self._fields["rx"] = cap.encode()

    def _save_meta_plan(self) -> Plan[None]:
        yield from self._set_fields_plan({"m": self.serializer.dumps(self.meta)})

    def _set_progress_plan(self, value: Any, message: str | None) -> Plan[None]:
        if message is not None and not isinstance(message, str):
            raise TypeError(f"progress message must be a str, got {type(message).__name__}")
        try:
            data = json.dumps({"v": value, "m": message, "t": now_ms()}, separators=(",", ":"))
        except (TypeError, ValueError) as exc:
            raise TypeError(f"progress value must be JSON data (a number, a string...): {exc}") from None
        yield from self._set_fields_plan({"pg": data})
        if self._fields is not None:
            self._fields["pg"] = data.encode()

    def _results_plan(self) -> Plan[list[Result]]:
        reply = yield store_step("run", T.results_call(self._keys, self.id))
        return parse_results(self.id, reply, self.serializer)

    def _latest_plan(self) -> Plan[Result | None]:
        return parse_latest(self.id, (yield store_step("read_latest", self._keys, self.id)), self.serializer)

    def _dependency_handles_plan(self) -> Plan[list[str]]:
        """Handles of the jobs this one waits for, sorted (one field per parent, scanned in pages)."""
        handles: list[str] = []
        cursor: Any = 0
        while True:
            cursor, page = yield client_step("hscan", self.key, cursor, match="d:*", count=1000)
            for name in page:
                text = name.decode("utf-8", "surrogateescape") if isinstance(name, bytes) else name
                handles.append(text[2:])
            if not int(cursor):
                return sorted(handles)

    def _dependents_plan(self, limit: int) -> Plan[tuple[list[str], list[str]]]:
        """``(jobs, groups)`` waiting for this job: the first ``limit`` entries of its dependents set."""
        return split_dependents((yield client_step("zrange", self._keys.dependents(self.id), 0, max(0, limit - 1))))

    def _dependencies_met_plan(self) -> Plan[bool]:
        return int((yield client_step("hget", self.key, "dn")) or 0) <= 0


def locate_plan(handle_or_id: str, queue: str | None) -> Plan[tuple[str, str]]:
    """``(queue, id)`` of the job ``Job.fetch``/``AsyncJob.fetch`` is given: a handle, an id with
    ``queue``, or (as RQ's ``Job.fetch(id, connection)`` takes it) an id alone, looked up through the known
    queues: one EXISTS per queue, never a scan of jobs (see :mod:`clusterq.api.rq_compat`)."""
    if queue is not None:
        return queue, handle_or_id
    if "/" in handle_or_id:
        return parse_handle(handle_or_id)
    return (yield from queue_of_job_plan(handle_or_id)), handle_or_id

