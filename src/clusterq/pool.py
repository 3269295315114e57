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

import os
from collections.abc import Callable
from typing import Any

from .exceptions import StopRequested
from .pool_asyncio import AsyncioPool
from .pool_base import DEFAULT_HARD_GRACE_S, POOL_KINDS, Finished, Notifier, Pool
from .pool_process import ForkPool, ProcessPool
from .pool_thread import ThreadPool
from .store import LeasedJob

# --- solo ------------------------------------------------------------------------------------------

class SoloPool(Pool):
    """Runs each batch to completion inside ``submit``, in the supervisor's thread."""

    kind = "solo"

    def __init__(self, concurrency: int = 1, **kwargs: Any) -> None:
        super().__init__(1, **kwargs)
        self._done: list[Finished] = []
        self.current: LeasedJob | None = None

    def free(self) -> int:
        return 1

    def busy(self) -> int:
        return len(self._done)

    def submit(self, jobs: list[LeasedJob]) -> None:
        assert self.executor is not None
        for index, job in enumerate(jobs):
            if self.draining:
                self._done.extend(Finished(j, handback=True) for j in jobs[index:])
                return
            self.current = job
            try:
                outcome = self.executor.execute(job)
            except StopRequested:
                self._done.extend(Finished(j, handback=True) for j in jobs[index:])
                raise
            finally:
                self.current = None
            self._done.append(Finished(job, outcome))

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
