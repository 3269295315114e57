"""The job handle: find a job from its queue and id (or its handle string alone) and act on it.

A job's record is one hash in its queue's slot. A :class:`Job` reads it lazily and caches what it read;
``refresh()`` reads again. Every state change goes through a store transition (one script).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from clusterq.api.job_core import (  # noqa: F401 - re-exported: their historical home
    DEFAULT_FAILURE_TTL_S,
    DEFAULT_RESULT_TTL_S,
    TERMINAL,
    JobCore,
    JobStatus,
    Progress,
    _ms_to_datetime,
    decode_progress,
    locate_plan,
    make_handle,
    options_of,
    parse_handle,
    status_of,
)
from clusterq.api.results import Result, ResultWaiter, poll_delays
from clusterq.connection.sync import ConnectionLike, connect, is_proxy
from clusterq.exceptions import NoSuchJobError
from clusterq.serializers import Serializer, resolve_serializer
from clusterq.state import keys as K
from clusterq.state import store as T
from clusterq.state.plan import Plan, R, run_plan

if TYPE_CHECKING:
    from clusterq.state.store import Store


__all__ = [  # with the names job_core defines that callers import from here, their historical home
    "DEFAULT_FAILURE_TTL_S",
    "DEFAULT_RESULT_TTL_S",
    "TERMINAL",
    "Job",
    "JobStatus",
    "Progress",
    "decode_progress",
    "make_handle",
    "options_of",
    "parse_handle",
    "send_stop_job_command",
    "status_of",
]


class Job(JobCore):
    """A handle on one job. Cheap to create; reads Redis only when asked. (The rules are those of
    :class:`~clusterq.api.job_core.JobCore`, shared with :class:`~clusterq.api.aio_job.AsyncJob`.)"""

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

    def _run(self, plan: Plan[R]) -> R:
        return run_plan(plan, self._store)

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
        store = T.Store(connect(connection))
        queue_name, job_id = run_plan(locate_plan(handle_or_id, queue), store)
        job = cls(queue_name, job_id, serializer=serializer, store=store)
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

    # --- reading ------------------------------------------------------------------------------

    def refresh(self) -> Job:
        """Read the job's record again. Raises :class:`NoSuchJobError` if it is gone."""
        self._run(self._refresh_plan())
        return self

    def exists(self) -> bool:
        return self._store.read_job(self._keys, self.id) is not None

    def _field(self, name: str) -> bytes | None:
        if self._fields is None:
            self.refresh()
        assert self._fields is not None
        return self._fields.get(name)

    def get_status(self, refresh: bool = True) -> JobStatus | None:
        """The job's status, or None if its record no longer exists."""
        if refresh:
            return self._run(self._status_plan())
        return status_of({"s": raw} if (raw := self._field("s")) is not None else None)

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
        return self._run(self._dependency_handles_plan())

    @property
    def dependency_ids(self) -> list[str]:
        """Ids of the jobs this one waits for (RQ's name); they may be in other queues: see
        :attr:`dependency_handles`."""
        return [handle.partition("/")[2] for handle in self.dependency_handles]

    def dependents(self, limit: int = 100) -> tuple[list[str], list[str]]:
        """``(jobs, groups)``: handles of the jobs waiting for this one (``depends_on``) and of the groups it
        is a member of, the first ``limit`` entries in all (one bounded read of its dependents set)."""
        return self._run(self._dependents_plan(limit))

    def dependencies_are_met(self) -> bool:
        """True once every job this one depends on has finished (or ended, for a dependency with
        ``allow_failure``); True for a job without dependencies. One read."""
        return self._run(self._dependencies_met_plan())

    @property
    def is_stopped(self) -> bool:
        return self.get_status() == JobStatus.STOPPED

    def return_value(self, refresh: bool = True) -> Any:
        """The job's result once it finished, else None."""
        if refresh:
            self.refresh()
        return self._value()

    result = property(return_value)

    # --- results ------------------------------------------------------------------------------

    def results(self) -> list[Result]:
        """Every result the job keeps, newest first: the latest and up to ``result_history - 1`` earlier
        ones (retried attempts, earlier repeats, runs before a requeue). Empty before the first result."""
        return self._run(self._results_plan())

    def _latest(self) -> Result | None:
        return self._run(self._latest_plan())

    def latest_result(self, timeout: float = 0) -> Result | None:
        """The job's latest result, or None if it has none yet.

        With ``timeout`` (seconds), a job without a result yet is waited for, up to that long, without
        polling: the worker that records the result publishes the job's id to waiters. Raises
        :class:`NoSuchJobError` when waiting for a job that does not exist.
        """
        latest = self._latest()
        if latest is not None or not timeout or timeout <= 0:
            return latest
        if is_proxy(self._store.client):  # a proxy relays no pub/sub: look again, less often as time passes
            for delay in poll_delays(timeout):
                time.sleep(delay)
                latest = self._latest()
                if latest is not None:
                    break
            return latest
        # Subscribe, then mark the record as waited for, then look: a result recorded after the look
        # is published to a subscription that already exists, so it cannot be missed.
        waiter = ResultWaiter(self._store.client, self._keys)
        try:
            self._run(self._set_fields_plan({"hw": "1"}))
            latest = self._latest()
            if latest is None and waiter.wait(self.id, timeout):
                latest = self._latest()
        finally:
            waiter.close()
        return latest

    # --- retries ----------------------------------------------------------------------------------

    def _set_retries_left(self, value: int) -> None:
        """Allow at most ``value`` more retries (``0``: a failure now is final), written at once (no
        ``save()``), from inside the job or anywhere else. It can only lower what the ``Retry`` allows."""
        self._run(self._set_retries_left_plan(value))

    retries_left = JobCore.retries_left.setter(_set_retries_left)  # type: ignore[attr-defined]

    # --- progress ---------------------------------------------------------------------------------

    def set_progress(self, value: Any, message: str | None = None) -> None:
        """Store the job's progress: any JSON value (a fraction, a count...) and an optional message.

        Called from inside the job (``get_current_job().set_progress(...)`` or ``clusterq.set_progress``);
        one small write. Raises :class:`NoSuchJobError` if the job is gone.
        """
        self._run(self._set_progress_plan(value, message))

    # --- meta ---------------------------------------------------------------------------------

    def get_meta(self, refresh: bool = True) -> dict[str, Any]:
        if refresh:
            self.refresh()
            self.__dict__.pop("_meta", None)
        return self.meta

    def save_meta(self) -> None:
        """Write :attr:`meta` to Redis (only that field). Raises NoSuchJobError if the job is gone."""
        self._run(self._save_meta_plan())

    # --- changing -----------------------------------------------------------------------------

    def cancel(self, enqueue_dependents: bool = False) -> None:
        """Stop the job from running (again). A running job's outcome will no longer be recorded.

        Jobs that depend on it are canceled in turn (unless their dependency allows failure); with
        ``enqueue_dependents=True`` they count this job as finished instead, and run once their other
        dependencies are met. Raises :class:`InvalidJobOperation` if it already finished, failed or was
        canceled.
        """
        self._run(self._cancel_plan(enqueue_dependents))

    def stop(self, reason: str | None = None) -> None:
        """Stop the job while it runs: its worker interrupts it at once and it ends ``stopped`` (in the
        failed registry, with ``reason`` in ``exc_info``), without being retried.

        Raises :class:`InvalidJobOperation` if the job is not running (cancel a queued job instead).
        """
        self._run(self._stop_plan(reason))

    def delete(self, delete_dependents: bool = False) -> None:
        """Delete the job's record and its registry entries. Deleting a missing job is not an error.

        Jobs still waiting for it are canceled (unless their dependency allows failure), or deleted too
        with ``delete_dependents=True``.
        """
        self._run(self._delete_plan(delete_dependents))

    def requeue(self, at_front: bool = False) -> Job:
        """Put a failed, canceled or finished job back on its queue."""
        self._run(self._requeue_plan(at_front))
        return self


def send_stop_job_command(connection: ConnectionLike, handle: str, reason: str | None = None) -> None:
    """RQ's name for ``Job.fetch(handle, connection).stop()``: stop a running job by its handle."""
    queue, job_id = parse_handle(handle)
    Job(queue, job_id, connection).stop(reason)
