"""The ``thread`` pool: N threads in the worker's process (no isolation; a stuck thread cannot be killed)."""

from __future__ import annotations

import _imp
import ctypes
import gc
import queue as queue_mod
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from clusterq.api.execution import Executor, run_key
from clusterq.exceptions import JobStopped, JobTimeoutError
from clusterq.state.store import LeasedJob, Outcome
from clusterq.worker.pools.base import Finished, Notifier, Pool


def raise_in_thread(thread_id: int, exc_type: type[BaseException]) -> None:
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), ctypes.py_object(exc_type))


def withdraw_async_exception(thread_id: int) -> None:
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), None)


def _current_frame(thread_id: int) -> Any:
    """The frame ``thread_id`` runs now (None if it is gone), from ``sys._current_frames()``.

    On CPython before 3.12 that call can hang the whole process: it holds the runtime's lock on the list
    of threads while it makes frame objects, a garbage collection can start on one of those allocations,
    and freeing a thread-local in that collection takes the same lock again (CPython gh-106883, not fixed
    in 3.11). So the collector is paused around it there (and only if it was on: an application that
    turned it off keeps it off)."""
    if sys.version_info >= (3, 12) or not gc.isenabled():
        return sys._current_frames().get(thread_id)
    gc.disable()
    try:
        return sys._current_frames().get(thread_id)
    finally:
        gc.enable()


def _importing(thread_id: int) -> bool:
    frame = _current_frame(thread_id)
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False


def interrupt_thread(thread_id: int, exc_type: type[BaseException]) -> bool:
    """Raise ``exc_type`` in a thread, unless the thread is inside the import machinery; returns whether
    it was sent (if not, try again later).

    An exception landing in importlib between a lock's acquire and its ``try`` leaks that lock, and every
    later import in the process hangs (seen: a job stopped while its first call imported its module).
    Holding the global import lock while we look keeps the thread from entering the lock-taking part of
    an import meanwhile; a thread seen outside importlib meets the exception at its next function entry,
    before any import lock is taken. If it got into importlib while we looked, the exception is taken back.
    """
    _imp.acquire_lock()
    try:
        if _importing(thread_id):
            return False
        raise_in_thread(thread_id, exc_type)
        if _importing(thread_id):
            withdraw_async_exception(thread_id)
            return False
        return True
    finally:
        _imp.release_lock()


UNSENT_RETRY_S = 0.005
"""How soon to try again to interrupt a thread that was inside an import."""


@dataclass
class _Slot:
    thread: threading.Thread
    inbox: queue_mod.SimpleQueue[list[LeasedJob] | None]
    batch: deque[LeasedJob] = field(default_factory=deque)
    current_since: float = 0.0
    timed_out: set[str] = field(default_factory=set)  # ids whose outcome (timeout, stop) is recorded already
    # The job the thread is running now: only it may be sent an exception (a job still waiting in the
    # inbox is not running yet; an exception sent then would land in the thread's loop and kill it).
    running: LeasedJob | None = None


class ThreadPool(Pool):
    """N threads. Light and fast for I/O-bound jobs; no isolation, and a stuck thread cannot be killed."""

    kind = "thread"

    def __init__(self, concurrency: int = 4, **kwargs: Any) -> None:
        super().__init__(concurrency, **kwargs)
        self._slots: list[_Slot] = []
        self._lock = threading.Lock()
        self._done: list[Finished] = []
        self._skip: dict[tuple[str, str], str] = {}  # stopped before they started: (queue, id) -> reason
        self._unsent_stops: dict[int, LeasedJob] = {}  # id(slot) -> stopped job whose JobStopped waits to be sent

    def start(self, executor: Executor, notifier: Notifier) -> None:
        super().start(executor, notifier)
        self._slots = [self._new_slot() for _ in range(self.concurrency)]

    def _new_slot(self) -> _Slot:
        inbox: queue_mod.SimpleQueue[list[LeasedJob] | None] = queue_mod.SimpleQueue()
        slot = _Slot(threading.Thread(target=lambda: None), inbox)
        slot.thread = threading.Thread(target=self._run, args=(slot,), name="clusterq-job", daemon=True)
        slot.thread.start()
        return slot

    def _run(self, slot: _Slot) -> None:
        while True:
            batch = slot.inbox.get()
            if batch is None:
                return
            for job in batch:
                try:
                    self._run_one(slot, job)
                except (JobTimeoutError, JobStopped):
                    # The limit's exception landed after the job had ended (a race inherent to raising
                    # in another thread): its failure is recorded already; settle its slot and go on.
                    with self._lock:
                        slot.running = None
                        if slot.batch and slot.batch[0] is job:
                            slot.batch.popleft()
                        slot.timed_out.discard(job.id)
                    assert self.notifier is not None
                    self.notifier.notify()

    def _run_one(self, slot: _Slot, job: LeasedJob) -> None:
        assert self.executor is not None and self.notifier is not None
        with self._lock:
            skipped = self._skip.pop((job.queue, job.id), None)
            if skipped is None and not self.draining:
                slot.running = job
        if skipped is not None:
            outcome: Outcome | None = self.executor.stopped(job, skipped)
        elif self.draining:
            outcome = None
        else:
            try:
                outcome = self.executor.execute(job)
            except JobTimeoutError as exc:  # sent asynchronously by enforce_limits
                outcome = self.executor.failure(job, f"JobTimeoutError: {exc}")
            except JobStopped:  # sent asynchronously by stop(), which recorded the outcome
                outcome = None
        self.executor.taken_over.discard(run_key(job))
        with self._lock:
            slot.running = None
            if job.id in slot.timed_out:
                slot.timed_out.discard(job.id)  # its failure (or stop) was already recorded
                # The exception sent to this thread may not have landed yet: withdraw it, or it would
                # land between jobs, outside any handler, and kill the thread.
                withdraw_async_exception(threading.get_ident())
            else:
                self._done.append(Finished(job, outcome, handback=outcome is None))
            slot.batch.popleft()
            slot.current_since = time.monotonic()
        self.notifier.notify()

    def free(self) -> int:
        with self._lock:
            return sum(1 for s in self._slots if not s.batch)

    def busy(self) -> int:
        with self._lock:
            return sum(len(s.batch) for s in self._slots) + len(self._done)

    def submit(self, jobs: list[LeasedJob]) -> None:
        with self._lock:
            idle = [s for s in self._slots if not s.batch]
        size = -(-len(jobs) // len(idle))
        for slot, start in zip(idle, range(0, len(jobs), size)):
            chunk = jobs[start : start + size]
            with self._lock:
                slot.batch.extend(chunk)
                slot.current_since = time.monotonic()
            slot.inbox.put(chunk)

    def collect(self) -> list[Finished]:
        with self._lock:
            done, self._done = self._done, []
        return done

    def next_deadline(self) -> float | None:
        assert self.executor is not None
        with self._lock:
            deadlines = [s.current_since + self.executor.timeout_of(s.batch[0])
                         for s in self._slots if s.batch and s.batch[0].id not in s.timed_out]
            if self._unsent_stops:
                deadlines.append(time.monotonic() + UNSENT_RETRY_S)
        return min(deadlines) if deadlines else None

    def enforce_limits(self) -> list[Finished]:
        assert self.executor is not None
        now = time.monotonic()
        with self._lock:
            for slot in self._slots:
                unsent = self._unsent_stops.get(id(slot))
                if unsent is not None:
                    if slot.running is not unsent or slot.thread.ident is None:
                        del self._unsent_stops[id(slot)]  # it ended meanwhile
                    elif interrupt_thread(slot.thread.ident, JobStopped):
                        del self._unsent_stops[id(slot)]
                if not slot.batch or slot.batch[0].id in slot.timed_out:
                    continue
                head = slot.batch[0]
                limit = self.executor.timeout_of(head)
                if now >= slot.current_since + limit and slot.thread.ident is not None and slot.running is head:
                    self.executor.taken_over.add(run_key(head))  # its thread must not tell the hooks too
                    if not interrupt_thread(slot.thread.ident, JobTimeoutError):
                        self.executor.taken_over.discard(run_key(head))
                        continue  # inside an import: next time
                    slot.timed_out.add(head.id)
                    reason = (f"JobTimeoutError: time limit exceeded: the job ran longer than {limit:g} s "
                              "(thread pool: the exception was raised in its thread; a thread blocked in C code "
                              "keeps running until that call returns)")
                    self._done.append(Finished(head, self.executor.failure(head, reason, outside=True)))
            done, self._done = self._done, []
        return done

    def stop(self, queue: str, job_id: str, reason: str) -> bool:
        """A running job gets :class:`JobStopped` raised in its thread (at its next Python bytecode: a
        thread blocked in C code, e.g. ``time.sleep``, stops when that call returns) and is recorded as
        stopped now; a job waiting in a batch is recorded as stopped when its turn comes, without running."""
        assert self.executor is not None
        interrupted = None
        with self._lock:
            found = False
            for slot in self._slots:
                for index, job in enumerate(slot.batch):
                    if (job.queue, job.id) != (queue, job_id):
                        continue
                    found = True
                    if index > 0 or slot.running is not job:
                        self._skip[(queue, job_id)] = reason  # not started: stopped when its turn comes
                    elif job.id not in slot.timed_out and slot.thread.ident is not None:
                        slot.timed_out.add(job.id)  # whatever the thread reports for it now is dropped
                        if not interrupt_thread(slot.thread.ident, JobStopped):
                            self._unsent_stops[id(slot)] = job  # inside an import: enforce_limits retries
                        interrupted = job
                    break
                if found:
                    break
        if interrupted is not None:
            # Outside the lock: the on_stopped callback runs in executor.stopped().
            outcome = self.executor.stopped(interrupted, reason)
            with self._lock:
                self._done.append(Finished(interrupted, outcome))
            assert self.notifier is not None
            self.notifier.notify()
        return found

    def close(self, now: bool) -> list[Finished]:
        assert self.executor is not None
        for slot in self._slots:
            slot.inbox.put(None)
        if not now:
            while any(s.thread.is_alive() for s in self._slots) and not self.abort:
                for slot in self._slots:
                    slot.thread.join(timeout=0.2)
            if not self.abort:
                return self.collect()
        with self._lock:
            for slot in self._slots:
                for job in slot.batch:
                    if job.id in slot.timed_out:
                        continue
                    reason = self._skip.pop((job.queue, job.id), None)  # stopped before it started
                    self._done.append(Finished(job, self.executor.stopped(job, reason)) if reason is not None
                                      else Finished(job, handback=True))
                slot.batch.clear()
            done, self._done = self._done, []
        return done  # the threads are daemons: they die with the process
