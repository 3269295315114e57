"""The ``asyncio`` pool: ``async def`` jobs as tasks on one event loop in its own thread."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import Any

from clusterq.api.execution import Executor
from clusterq.state.store import LeasedJob
from clusterq.worker.pools.base import Finished, Notifier, Pool


class AsyncioPool(Pool):
    """``async def`` jobs as tasks on one event loop (in its own thread), at most N at once.

    A job past its limit is cancelled (``asyncio.wait_for``), which stops it at its next ``await``.
    Plain functions run in the loop's default thread pool, with the thread pool's caveats.
    """

    kind = "asyncio"
    batches = False

    def __init__(self, concurrency: int = 100, **kwargs: Any) -> None:
        super().__init__(concurrency, **kwargs)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="clusterq-asyncio", daemon=True)
        self._lock = threading.Lock()
        self._running: dict[tuple[str, str], tuple[LeasedJob, Any]] = {}
        self._done: list[Finished] = []
        self._stopping: dict[tuple[str, str], str] = {}  # job.stop() requests: (queue, id) -> reason

    def start(self, executor: Executor, notifier: Notifier) -> None:
        super().start(executor, notifier)
        self._thread.start()

    def free(self) -> int:
        with self._lock:
            return self.concurrency - len(self._running)

    def busy(self) -> int:
        with self._lock:
            return len(self._running) + len(self._done)

    def submit(self, jobs: list[LeasedJob]) -> None:
        for job in jobs:
            with self._lock:  # registered before it can finish, or a quick job would never leave _running
                self._running[(job.queue, job.id)] = (job, None)
                self._running[(job.queue, job.id)] = (
                    job, asyncio.run_coroutine_threadsafe(self._run(job), self._loop))

    async def _run(self, job: LeasedJob) -> None:
        assert self.executor is not None and self.notifier is not None
        try:
            outcome = await self.executor.execute_async(job, self._loop)
        except asyncio.CancelledError:
            with self._lock:
                reason = self._stopping.pop((job.queue, job.id), None)
            if reason is None:
                raise  # cancelled by close(now=True): handed back there
            # Off the loop: the on_stopped callback runs in executor.stopped().
            outcome = await self._loop.run_in_executor(None, self.executor.stopped, job, reason)
        with self._lock:
            self._stopping.pop((job.queue, job.id), None)
            self._running.pop((job.queue, job.id), None)
            self._done.append(Finished(job, outcome))
        self.notifier.notify()

    def stop(self, queue: str, job_id: str, reason: str) -> bool:
        """Cancel the job's task (it stops at its next ``await``). A plain function running in the loop's
        thread pool is abandoned, not stopped: its thread runs on, its outcome is ``stopped``."""
        with self._lock:
            entry = self._running.get((queue, job_id))
            if entry is None or entry[1] is None:
                return False
            self._stopping[(queue, job_id)] = reason
            future = entry[1]
        future.cancel()  # thread-safe: cancels the task on the loop
        return True

    def collect(self) -> list[Finished]:
        with self._lock:
            done, self._done = self._done, []
        return done

    def close(self, now: bool) -> list[Finished]:
        with self._lock:
            running = list(self._running.values())
        if now:
            for _, future in running:
                if future is not None:
                    future.cancel()
            with self._lock:
                self._done.extend(Finished(job, handback=True) for job, _ in running)
                self._running.clear()
        else:
            for _, future in running:
                while future is not None and not future.done() and not self.abort:
                    with contextlib.suppress(Exception):
                        future.result(timeout=0.2)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        return self.collect()
