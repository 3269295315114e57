"""The job handle: find a job from its queue and id (or its handle string alone) and act on it.

A job's record is one hash in its queue's slot. A :class:`Job` reads it lazily and caches what it read;
``refresh()`` reads again. Every state change goes through a store transition (one script).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from enum import Enum
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote

from clusterq.api.hooks import decode_headers
from clusterq.api.results import Result, ResultWaiter, parse_latest, parse_results
from clusterq.api.rq_compat import queue_of_job
from clusterq.connection.sync import ConnectionLike, connect
from clusterq.exceptions import InvalidJobOperation, NoSuchJobError
from clusterq.serializers import Serializer, resolve_serializer
from clusterq.state import keys as K
from clusterq.state import store as T
from clusterq.state import transitions as TR
from clusterq.state.outbox import Forwarder, ended_entry, split_dependents
from clusterq.utils import now_ms

if TYPE_CHECKING:
    from clusterq.state.store import Store


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
    """The progress stored in a job's ``pg`` field (JSON written by :meth:`Job.set_progress`)."""
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


class Job:
    """A handle on one job. Cheap to create; reads Redis only when asked."""

    def __init__(
        self,
        queue: str,
        id: str,
        connection: ConnectionLike = None,
        *,
        serializer: Serializer | str | None = None,
        store: Store | None = None,
    ) -> None:
        self.queue_name = K.validate_queue_name(queue)
        self.id = id
        self._keys = K.QueueKeys(queue)
        self._store = store or T.Store(connect(connection))
        self.serializer = resolve_serializer(serializer)
        self._fields: dict[str, bytes] | None = None

    @classmethod
    def trusted(cls, queue: str, job_id: str, keys: K.QueueKeys, store: Store, serializer: Serializer) -> Job:
        """A handle built from parts a Queue already validated (enqueue_many makes thousands of these)."""
        job = cls.__new__(cls)
        job.queue_name, job.id, job._keys, job._store, job.serializer = queue, job_id, keys, store, serializer
        job._fields = None
        return job

    def __repr__(self) -> str:
        return f"Job({self.queue_name!r}, {self.id!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Job) and (other.queue_name, other.id) == (self.queue_name, self.id)

    def __hash__(self) -> int:
        return hash((self.queue_name, self.id))

    # --- finding jobs -------------------------------------------------------------------------

    @classmethod
    def fetch(
        cls,
        handle_or_id: str,
        connection: ConnectionLike = None,
        *,
        queue: str | None = None,
        serializer: Serializer | str | None = None,
    ) -> Job:
        """Load a job from its handle (``job.handle``), or from its id and ``queue``.

        An id alone (no ``/``, no ``queue``), as RQ's ``Job.fetch(id, connection)`` takes it, is looked up
        through the known queues: one EXISTS per queue, never a scan of jobs (see
        :mod:`clusterq.api.rq_compat`). Raises :class:`NoSuchJobError` if there is no such job.
        """
        if queue is None and "/" not in handle_or_id:
            client = connect(connection)
            return cls.fetch(handle_or_id, client, queue=queue_of_job(client, handle_or_id), serializer=serializer)
        if queue is None:
            queue, job_id = parse_handle(handle_or_id)
        else:
            job_id = handle_or_id
        job = cls(queue, job_id, connection, serializer=serializer)
        job.refresh()
        return job

    @classmethod
    def fetch_many(
        cls,
        job_ids: list[str],
        connection: ConnectionLike = None,
        *,
        queue: str | None = None,
        serializer: Serializer | str | None = None,
    ) -> list[Job | None]:
        """RQ's ``Job.fetch_many``: one :meth:`fetch` per handle or id, None where there is no such job."""
        client = connect(connection)
        jobs: list[Job | None] = []
        for job_id in job_ids:
            try:
                jobs.append(cls.fetch(job_id, client, queue=queue, serializer=serializer))
            except NoSuchJobError:
                jobs.append(None)
        return jobs

    @classmethod
    def key_for(cls, handle_or_id: str, queue: str | None = None) -> str:
        """The Redis key of a job's record. A job's key depends on its queue (its slot): pass a handle, or
        an id with ``queue``."""
        if queue is None:
            if "/" not in handle_or_id:
                raise TypeError(f"Job.key_for({handle_or_id!r}) needs the job's queue: a clusterq job's key "
                                "is in its queue's slot; pass queue='name' or a handle ('queue/id')")
            queue, handle_or_id = parse_handle(handle_or_id)
        return K.QueueKeys(K.validate_queue_name(queue)).job(handle_or_id)

    def get_id(self) -> str:
        """RQ 1.x's accessor for :attr:`id`."""
        return self.id

    @property
    def handle(self) -> str:
        """A string that finds this job from nothing else: pass it to :meth:`Job.fetch`."""
        return make_handle(self.queue_name, self.id)

    @property
    def key(self) -> str:
        return self._keys.job(self.id)

    # --- reading ------------------------------------------------------------------------------

    def refresh(self) -> Job:
        """Read the job's record again. Raises :class:`NoSuchJobError` if it is gone."""
        fields = self._store.read_job(self._keys, self.id)
        if fields is None:
            raise NoSuchJobError(f"no job {self.id!r} in queue {self.queue_name!r} (deleted or expired)")
        self._fields = fields
        return self

    def exists(self) -> bool:
        return self._store.read_job(self._keys, self.id) is not None

    def _field(self, name: str) -> bytes | None:
        if self._fields is None:
            self.refresh()
        assert self._fields is not None
        return self._fields.get(name)

    def _options(self) -> dict[str, Any]:
        raw = self._field("o")
        if not raw:
            return {}
        try:
            value = json.loads(raw)
        except ValueError:
            return {}
        return value if isinstance(value, dict) else {}

    def get_status(self, refresh: bool = True) -> JobStatus | None:
        """The job's status, or None if its record no longer exists."""
        if refresh:
            try:
                self.refresh()
            except NoSuchJobError:
                return None
        raw = self._field("s")
        if raw is None:
            return None
        try:
            return JobStatus(raw.decode())
        except ValueError:
            return None

    @property
    def is_finished(self) -> bool:
        return self.get_status() == JobStatus.FINISHED

    @property
    def is_failed(self) -> bool:
        return self.get_status() == JobStatus.FAILED

    @property
    def is_queued(self) -> bool:
        return self.get_status() == JobStatus.QUEUED

    @property
    def is_started(self) -> bool:
        return self.get_status() == JobStatus.STARTED

    @property
    def is_canceled(self) -> bool:
        return self.get_status() == JobStatus.CANCELED

    @property
    def is_scheduled(self) -> bool:
        return self.get_status() == JobStatus.SCHEDULED

    @property
    def is_deferred(self) -> bool:
        """Waiting for the jobs it depends on (``depends_on``)."""
        return self.get_status() == JobStatus.DEFERRED

    @property
    def dependency_handles(self) -> list[str]:
        """Handles of the jobs this one was enqueued to wait for (``depends_on``), sorted; read from its
        record (one field per parent, scanned in pages)."""
        handles = []
        for name, _ in self._store.client.hscan_iter(self.key, match="d:*", count=1000):
            text = name.decode("utf-8", "surrogateescape") if isinstance(name, bytes) else name
            handles.append(text[2:])
        return sorted(handles)

    @property
    def dependency_ids(self) -> list[str]:
        """Ids of the jobs this one waits for (RQ's name); they may be in other queues: see
        :attr:`dependency_handles`."""
        return [handle.partition("/")[2] for handle in self.dependency_handles]

    def dependents(self, limit: int = 100) -> tuple[list[str], list[str]]:
        """``(jobs, groups)``: handles of the jobs waiting for this one (``depends_on``) and of the groups it
        is a member of, the first ``limit`` entries in all (one bounded read of its dependents set)."""
        return split_dependents(self._store.client.zrange(self._keys.dependents(self.id), 0, max(0, limit - 1)))

    def dependencies_are_met(self) -> bool:
        """True once every job this one depends on has finished (or ended, for a dependency with
        ``allow_failure``); True for a job without dependencies. One read."""
        return int(self._store.client.hget(self.key, "dn") or 0) <= 0

    @property
    def is_stopped(self) -> bool:
        return self.get_status() == JobStatus.STOPPED

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

    def return_value(self, refresh: bool = True) -> Any:
        """The job's result once it finished, else None."""
        if refresh:
            self.refresh()
        raw = self._field("r")
        return None if raw is None else self.serializer.loads(raw)

    result = property(return_value)

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

    @retries_left.setter
    def retries_left(self, value: int) -> None:
        """Allow at most ``value`` more retries (``0``: a failure now is final), written at once (no
        ``save()``), from inside the job or anywhere else. It can only lower what the ``Retry`` allows."""
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"retries_left must be an int >= 0, got {value!r}")
        self.refresh()  # the retries done so far, as of now
        cap = str(self.retries + value)
        if not self._store.run(T.set_fields_call(self._keys, self.id, {"rx": cap})):
            raise NoSuchJobError(f"no job {self.id!r} in queue {self.queue_name!r}")
        assert self._fields is not None
        self._fields["rx"] = cap.encode()

    @property
    def repeats(self) -> int:
        """How many times the job was run again after a success (``Repeat``)."""
        return int(self._field("yr") or 0)

    @property
    def callback_error(self) -> str | None:
        """Why the last callback that failed (raised or ran past its timeout) failed, if one did."""
        raw = self._field("kc")
        return raw.decode("utf-8", "replace") if raw is not None else None

    # --- results ------------------------------------------------------------------------------

    def results(self) -> list[Result]:
        """Every result the job keeps, newest first: the latest and up to ``result_history - 1`` earlier
        ones (retried attempts, earlier repeats, runs before a requeue). Empty before the first result."""
        reply = self._store.run(T.results_call(self._keys, self.id))
        return parse_results(self.id, reply, self.serializer)

    def _latest(self) -> Result | None:
        return parse_latest(self.id, self._store.read_latest(self._keys, self.id), self.serializer)

    def latest_result(self, timeout: float = 0) -> Result | None:
        """The job's latest result, or None if it has none yet.

        With ``timeout`` (seconds), a job without a result yet is waited for, up to that long, without
        polling: the worker that records the result publishes the job's id to waiters. Raises
        :class:`NoSuchJobError` when waiting for a job that does not exist.
        """
        latest = self._latest()
        if latest is not None or not timeout or timeout <= 0:
            return latest
        # Subscribe, then mark the record as waited for, then look: a result recorded after the look
        # is published to a subscription that already exists, so it cannot be missed.
        waiter = ResultWaiter(self._store.client, self._keys)
        try:
            code = TR.SET_FIELDS.code(self._store.run(T.set_fields_call(self._keys, self.id, {"hw": "1"})))
            if code is TR.SetFieldsCode.NO_SUCH_JOB:
                raise NoSuchJobError(f"no job {self.id!r} in queue {self.queue_name!r}")
            latest = self._latest()
            if latest is None and waiter.wait(self.id, timeout):
                latest = self._latest()
        finally:
            waiter.close()
        return latest

    # --- progress ---------------------------------------------------------------------------------

    @property
    def progress(self) -> Progress | None:
        """The job's last reported progress (from the last read: ``refresh()`` to see a newer one)."""
        return decode_progress(self._field("pg"))

    def set_progress(self, value: Any, message: str | None = None) -> None:
        """Store the job's progress: any JSON value (a fraction, a count...) and an optional message.

        Called from inside the job (``get_current_job().set_progress(...)`` or ``clusterq.set_progress``);
        one small write. Raises :class:`NoSuchJobError` if the job is gone.
        """
        if message is not None and not isinstance(message, str):
            raise TypeError(f"progress message must be a str, got {type(message).__name__}")
        try:
            data = json.dumps({"v": value, "m": message, "t": now_ms()}, separators=(",", ":"))
        except (TypeError, ValueError) as exc:
            raise TypeError(f"progress value must be JSON data (a number, a string...): {exc}") from None
        code = TR.SET_FIELDS.code(self._store.run(T.set_fields_call(self._keys, self.id, {"pg": data})))
        if code is TR.SetFieldsCode.NO_SUCH_JOB:
            raise NoSuchJobError(f"no job {self.id!r} in queue {self.queue_name!r}")
        if self._fields is not None:
            self._fields["pg"] = data.encode()

    # --- meta ---------------------------------------------------------------------------------

    @property
    def headers(self) -> dict[str, str]:
        """The headers the ``before_enqueue`` hooks gave the job (:mod:`clusterq.api.hooks`), {} for none.
        Read-only (a copy): they are covered by the job's signature."""
        if not hasattr(self, "_headers"):
            self._headers = decode_headers(self._field("hd"))
        return dict(self._headers)

    @property
    def meta(self) -> dict[str, Any]:
        """User data stored with the job; change it and call :meth:`save_meta`."""
        if not hasattr(self, "_meta"):
            raw = self._field("m")
            self._meta: dict[str, Any] = self.serializer.loads(raw) if raw else {}
        return self._meta

    def get_meta(self, refresh: bool = True) -> dict[str, Any]:
        if refresh:
            self.refresh()
            self.__dict__.pop("_meta", None)
        return self.meta

    def save_meta(self) -> None:
        """Write :attr:`meta` to Redis (only that field). Raises NoSuchJobError if the job is gone."""
        data = self.serializer.dumps(self.meta)
        code = TR.SET_FIELDS.code(self._store.run(T.set_fields_call(self._keys, self.id, {"m": data})))
        if code is TR.SetFieldsCode.NO_SUCH_JOB:
            raise NoSuchJobError(f"no job {self.id!r} in queue {self.queue_name!r}")

    # --- changing -----------------------------------------------------------------------------

    def cancel(self, enqueue_dependents: bool = False) -> None:
        """Stop the job from running (again). A running job's outcome will no longer be recorded.

        Jobs that depend on it are canceled in turn (unless their dependency allows failure); with
        ``enqueue_dependents=True`` they count this job as finished instead, and run once their other
        dependencies are met. Raises :class:`InvalidJobOperation` if it already finished, failed or was
        canceled.
        """
        try:
            keep_s = self.failure_ttl
        except NoSuchJobError:
            keep_s = None  # the script will report the job missing
        keep_s = DEFAULT_FAILURE_TTL_S if keep_s is None else keep_s
        told = "ok" if enqueue_dependents else "canceled"
        code = TR.CANCEL.code(self._store.run(T.cancel_call(self._keys, self.id, int(keep_s * 1000), told)))
        if code is TR.CancelCode.NOTIFY:
            self._tell_dependents(told)
        if code is TR.CancelCode.NO_SUCH_JOB:
            raise NoSuchJobError(f"no job {self.id!r} in queue {self.queue_name!r}")
        if code is TR.CancelCode.ALREADY_ENDED:
            status = self.get_status()
            raise InvalidJobOperation(f"job {self.id!r} is already {status.value if status else 'gone'}")
        self._fields = None

    def stop(self, reason: str | None = None) -> None:
        """Stop the job while it runs: its worker interrupts it at once and it ends ``stopped`` (in the
        failed registry, with ``reason`` in ``exc_info``), without being retried.

        Raises :class:`InvalidJobOperation` if the job is not running (cancel a queued job instead).
        """
        reason = reason or "stop requested"
        code = TR.STOP.code(self._store.run(T.stop_call(self._keys, self.id, reason)))
        if code is TR.StopCode.NO_SUCH_JOB:
            raise NoSuchJobError(f"no job {self.id!r} in queue {self.queue_name!r}")
        if code is TR.StopCode.NOT_RUNNING:
            status = self.get_status()
            raise InvalidJobOperation(f"job {self.id!r} is not running (it is {status.value if status else 'gone'}); "
                                      "only a started job can be stopped (cancel() a queued or scheduled one)")
        self._fields = None

    def delete(self, delete_dependents: bool = False) -> None:
        """Delete the job's record and its registry entries. Deleting a missing job is not an error.

        Jobs still waiting for it are canceled (unless their dependency allows failure), or deleted too
        with ``delete_dependents=True``.
        """
        told = "purge" if delete_dependents else "deleted"
        if TR.DELETE.code(self._store.run(T.delete_call(self._keys, self.id, told))) is TR.DeleteCode.NOTIFY:
            self._tell_dependents(told)
        self._fields = None

    def _tell_dependents(self, ended: str) -> None:
        # The script wrote the intent to this queue's outbox: apply it now. Should this process die
        # first, a worker of this queue replays it.
        Forwarder(self._store, DEFAULT_FAILURE_TTL_S * 1000).forward([(self.queue_name, ended_entry(ended, self.id))])

    def requeue(self, at_front: bool = False) -> Job:
        """Put a failed, canceled or finished job back on its queue."""
        code = TR.REQUEUE.code(self._store.run(T.requeue_call(self._keys, self.id, at_front)))
        if code is TR.RequeueCode.NO_SUCH_JOB:
            raise NoSuchJobError(f"no job {self.id!r} in queue {self.queue_name!r}")
        if code is TR.RequeueCode.NOT_ENDED:
            raise InvalidJobOperation(f"job {self.id!r} is queued or running; only ended jobs can be requeued")
        self._fields = None
        return self


def send_stop_job_command(connection: ConnectionLike, handle: str, reason: str | None = None) -> None:
    """RQ's name for ``Job.fetch(handle, connection).stop()``: stop a running job by its handle."""
    queue, job_id = parse_handle(handle)
    Job(queue, job_id, connection).stop(reason)
