"""Execution pools: where leased jobs run. The worker (supervisor) leases, feeds a pool, and records
what comes out; a pool only runs jobs and reports.

    solo     jobs run one by one in the supervisor's own thread (fastest, no isolation, soft limits only)
    process  N long-lived child processes, recycled after max_jobs_per_child jobs or max_memory_mb
    fork     a fresh child process per job (RQ's isolation)
    thread   N threads in the supervisor's process
    asyncio  ``async def`` jobs on one event loop, at most N at once; plain functions in threads

Every pool reports :class:`Finished` records. A job whose process died under it comes back with no
outcome and ``crashed`` set: the supervisor hands it to the lease rules (retried, attempt counted, and
failed as abandoned past the limit). A job that never started (the pool was stopped at once) comes
back with ``handback`` set: it returns to its queue without counting an attempt.

Time limits: a job's ``job_timeout`` is raised inside the job as :class:`JobTimeoutError` (soft; in
the process pools and solo via SIGALRM, in asyncio by cancelling the task). In the process and fork
pools a job still running ``hard_grace_s`` after its limit is killed from outside with its process,
which is replaced. Threads cannot be killed: a thread job past its limit is sent the exception
asynchronously (it lands at the next Python bytecode, not inside a blocking C call) and its outcome is
recorded as failed either way; a thread that stays stuck keeps its slot busy until it returns.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from clusterq.exceptions import JobStopped, StopRequested
from clusterq.state.store import LeasedJob, Outcome
from clusterq.worker.pools.aio import AsyncioPool
from clusterq.worker.pools.base import DEFAULT_HARD_GRACE_S, POOL_KINDS, Finished, Notifier, Pool
from clusterq.worker.pools.process import ForkPool, ProcessPool
from clusterq.worker.pools.thread import ThreadPool, interrupt_thread, withdraw_async_exception

log = logging.getLogger(__name__)

UNSENT_STOP_RETRY_S = 2.0
"""How long ``SoloPool.stop`` keeps trying to interrupt a job that is inside an import."""

# --- solo ------------------------------------------------------------------------------------------

class SoloPool(Pool):
    """Runs each batch to completion inside ``submit``, in the supervisor's thread."""

    kind = "solo"

    def __init__(self, concurrency: int = 1, **kwargs: Any) -> None:
        super().__init__(1, **kwargs)
        self._done: list[Finished] = []
        self.current: LeasedJob | None = None
        # job.stop() arrives on another thread (the waker): these are shared with it, under _lock.
        self._lock = threading.Lock()
        self._batch: list[LeasedJob] = []
        self._skip: dict[tuple[str, str], str] = {}
        self._interrupt: str | None = None  # the reason sent (as JobStopped) to the running job
        self._thread_id = 0

    def free(self) -> int:
        return 1

    def busy(self) -> int:
        return len(self._done)

    def submit(self, jobs: list[LeasedJob]) -> None:
        assert self.executor is not None
        self._thread_id = threading.get_ident()
        with self._lock:
            self._batch = list(jobs)
        try:
            for index, job in enumerate(jobs):
                if self.draining:
                    self._done.extend(Finished(j, handback=True) for j in jobs[index:])
                    return
                try:
                    outcome = self._run_one(job)
                except StopRequested:
                    self._done.extend(Finished(j, handback=True) for j in jobs[index:])
                    raise
                self._done.append(Finished(job, outcome))
        finally:
            with self._lock:
                self._batch = []
                self._skip.clear()

    def _run_one(self, job: LeasedJob) -> Outcome:
        assert self.executor is not None
        with self._lock:
            skipped = self._skip.pop((job.queue, job.id), None)
            if skipped is None:
                self.current = job
        if skipped is not None:
            return self.executor.stopped(job, skipped)
        outcome: Outcome | None = None
        reason: str | None = None
        # JobStopped is raised asynchronously: it may land anywhere up to the moment _settle withdraws it.
        try:
            try:
                outcome = self.executor.execute(job)
            except JobStopped:
                pass
            finally:
                reason = self._settle()
        except JobStopped:
            reason = self._settle() or reason
        if reason is not None or outcome is None:
            return self.executor.stopped(job, reason or "stop requested")
        return outcome

    def _settle(self) -> str | None:
        """Clear ``current``; return the stop reason if the job was sent JobStopped, withdrawing the
        exception if it has not landed yet (if it lands in here, before the withdrawal, go again)."""
        found: str | None = None
        while True:
            try:
                with self._lock:
                    self.current = None
                    if self._interrupt is not None:
                        found = self._interrupt
                        withdraw_async_exception(self._thread_id)
                        self._interrupt = None
                return found
            except JobStopped:
                continue

    def stop(self, queue: str, job_id: str, reason: str) -> bool:
        """Thread-safe. The running job gets :class:`JobStopped` raised in it (at its next Python
        bytecode: a blocking C call, e.g. ``time.sleep``, finishes first); a job later in the batch is
        recorded as stopped without running."""
        with self._lock:
            current = self.current
            if current is None or (current.queue, current.id) != (queue, job_id):
                if any((j.queue, j.id) == (queue, job_id) for j in self._batch):
                    self._skip[(queue, job_id)] = reason
                    return True
                return False
            if self._interrupt is not None:
                return True  # already told
            self._interrupt = reason  # from now on its outcome is "stopped", whenever it ends
            if interrupt_thread(self._thread_id, JobStopped):
                return True
        # The job is inside an import: try again for a while, outside the lock so that it can end meanwhile.
        deadline = time.monotonic() + UNSENT_STOP_RETRY_S
        while time.monotonic() < deadline:
            time.sleep(0.002)
            with self._lock:
                if self.current is not current or self._interrupt is None:
                    return True  # it ended (and was recorded stopped)
                if interrupt_thread(self._thread_id, JobStopped):
                    return True
        log.warning("%s: job %s stayed inside an import for %g s: it runs on, and is recorded stopped when it "
                    "ends", queue, job_id, UNSENT_STOP_RETRY_S)
        return True

    def collect(self) -> list[Finished]:
        done, self._done = self._done, []
        return done

    def close(self, now: bool) -> list[Finished]:
        return self.collect()


def make_pool(kind: str, concurrency: int | None = None, **options: Any) -> Pool:
    """A pool by name (``process``, ``fork``, ``thread``, ``asyncio``, ``solo``)."""
    classes: dict[str, Callable[..., Pool]] = {
        "process": ProcessPool, "fork": ForkPool, "thread": ThreadPool, "asyncio": AsyncioPool, "solo": SoloPool,
    }
    if kind not in classes:
        raise ValueError(f"unknown pool {kind!r}; expected one of {', '.join(POOL_KINDS)}")
    if kind in ("thread", "asyncio", "solo"):
        options.pop("max_jobs_per_child", None)
        options.pop("max_memory_mb", None)
        options.pop("memory_limit_mb", None)
    if concurrency is None:
        concurrency = {"process": os.cpu_count() or 2, "fork": os.cpu_count() or 2, "thread": 8,
                       "asyncio": 100, "solo": 1}[kind]
    return classes[kind](concurrency, **options)


__all__ = ["DEFAULT_HARD_GRACE_S", "POOL_KINDS", "AsyncioPool", "Finished", "ForkPool", "Notifier", "Pool",
           "ProcessPool", "SoloPool", "ThreadPool", "make_pool"]
