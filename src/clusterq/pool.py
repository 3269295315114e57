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

import asyncio
import contextlib
import ctypes
import multiprocessing
import os
import queue as queue_mod
import resource
import signal
import sys
import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.connection import wait as wait_for_ready
from typing import Any

from .exceptions import JobTimeoutError, StopRequested
from .execution import Executor
from .store import LeasedJob, Outcome

POOL_KINDS = ("process", "fork", "thread", "asyncio", "solo")
DEFAULT_HARD_GRACE_S = 2.0


@dataclass
class Finished:
    """What became of a submitted job."""

    job: LeasedJob
    outcome: Outcome | None = None
    crashed: str | None = None  # why the job's process vanished: leave it to the lease rules
    handback: bool = False  # never ran to completion because we stopped: back to the queue, uncounted


class Notifier:
    """A self-pipe: anything (a wake-up, a thread finishing a job) can wake the supervisor's select."""

    def __init__(self) -> None:
        self._r, self._w = os.pipe()
        os.set_blocking(self._r, False)
        os.set_blocking(self._w, False)

    def fileno(self) -> int:
        return self._r

    def notify(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self._w, b"!")

    def drain(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            while os.read(self._r, 4096):
                pass

    def close(self) -> None:
        for fd in (self._r, self._w):
            with contextlib.suppress(OSError):
                os.close(fd)


class Pool(ABC):
    """Runs jobs for a supervisor. Not thread-safe: only the supervisor's thread calls it."""

    kind: str = ""
    batches: bool = True  # a free slot takes a batch of jobs (False: one job per slot)

    def __init__(self, concurrency: int = 1, *, hard_grace_s: float = DEFAULT_HARD_GRACE_S) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        self.concurrency = concurrency
        self.hard_grace_s = hard_grace_s
        self.executor: Executor | None = None
        self.notifier: Notifier | None = None
        self.abort = False  # set (from a signal handler) to cut a graceful close short
        self.draining = False  # set when the worker stops: jobs of a batch not yet started are handed back

    def start(self, executor: Executor, notifier: Notifier) -> None:
        self.executor = executor
        self.notifier = notifier

    @abstractmethod
    def free(self) -> int:
        """How many more job batches the pool can take now."""

    @abstractmethod
    def submit(self, jobs: list[LeasedJob]) -> None:
        """Start running ``jobs`` (one batch per free slot; a slot runs its batch in order)."""

    @abstractmethod
    def collect(self) -> list[Finished]:
        """Jobs that finished (or died) since the last call. Never blocks."""

    @abstractmethod
    def busy(self) -> int:
        """Jobs submitted and not yet collected."""

    def fds(self) -> list[Any]:
        """Objects the supervisor should select on besides the notifier (child pipes)."""
        return []

    def next_deadline(self) -> float | None:
        """Monotonic time at which :meth:`enforce_limits` has work to do, if any."""
        return None

    def enforce_limits(self) -> list[Finished]:
        """Stop jobs past their hard limit; returns their records."""
        return []

    @abstractmethod
    def close(self, now: bool) -> list[Finished]:
        """Stop the pool. ``now=False`` waits for running jobs; ``now=True`` stops them and hands
        every unfinished job back. Returns what finished or was handed back meanwhile."""


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


# --- process and fork ------------------------------------------------------------------------------

def _rss_mb() -> float:
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this child when the supervisor dies: otherwise a supervisor killed with -9
    leaves its children waiting forever (each also holds copies of the supervisor's pipe ends)."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _child_main(conn: Connection, executor: Executor, max_jobs: int | None, max_memory_mb: float | None,
                parent_end: Connection | None = None) -> None:
    """A pool child: run batches of jobs sent by the supervisor, answer one outcome per job.

    Each outcome is sent as soon as its job ends, so a child killed in the middle of a batch has
    reported every job it finished. After ``max_jobs`` jobs or past ``max_memory_mb`` it says so and
    exits between batches (recycling).
    """
    _die_with_parent()
    if parent_end is not None:
        parent_end.close()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C goes to the supervisor, which decides
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    done = 0
    while True:
        try:
            batch = conn.recv()
        except (EOFError, OSError):
            return
        if batch is None:
            return
        for job in batch:
            outcome = executor.execute(job)
            done += 1
            conn.send((job.queue, job.id, outcome))
        retire = (max_jobs is not None and done >= max_jobs) or (
            max_memory_mb is not None and _rss_mb() > max_memory_mb)
        conn.send(("retire" if retire else "idle", done, _rss_mb()))
        if retire:
            return


@dataclass
class _Child:
    process: Any
    conn: Connection
    batch: deque[LeasedJob] = field(default_factory=deque)
    current_since: float = 0.0  # when the job at the head of ``batch`` started (as far as we know)
    done: int = 0


class ProcessPool(Pool):
    """N long-lived child processes, forked from the supervisor (so jobs' modules imported once)."""

    kind = "process"

    def __init__(self, concurrency: int = 2, *, max_jobs_per_child: int | None = None,
                 max_memory_mb: float | None = None, **kwargs: Any) -> None:
        super().__init__(concurrency, **kwargs)
        self.max_jobs_per_child = max_jobs_per_child
        self.max_memory_mb = max_memory_mb
        self._ctx = multiprocessing.get_context("fork")
        self._children: list[_Child] = []
        self._done: list[Finished] = []
        self.replaced = 0  # children started to replace one that died, was killed or retired

    def start(self, executor: Executor, notifier: Notifier) -> None:
        super().start(executor, notifier)
        self._children = [self._spawn() for _ in range(self.concurrency)]

    def _spawn(self) -> _Child:
        parent, child = self._ctx.Pipe(duplex=True)
        process = self._ctx.Process(
            target=_child_main, args=(child, self.executor, self.max_jobs_per_child, self.max_memory_mb, parent),
            name="clusterq-child", daemon=True)
        process.start()
        child.close()
        return _Child(process, parent)

    def _replace(self, child: _Child) -> None:
        with contextlib.suppress(Exception):
            child.conn.close()
        if child.process.is_alive():
            child.process.kill()
        child.process.join(timeout=5)
        index = self._children.index(child)
        self._children[index] = self._spawn()
        self.replaced += 1

    def _idle(self) -> list[_Child]:
        # A child that reached max_jobs_per_child is about to retire: it must not be sent more work.
        limit = self.max_jobs_per_child
        return [c for c in self._children if not c.batch and (limit is None or c.done < limit)]

    def free(self) -> int:
        return len(self._idle())

    def busy(self) -> int:
        return sum(len(c.batch) for c in self._children) + len(self._done)

    def submit(self, jobs: list[LeasedJob]) -> None:
        idle = self._idle()
        if not idle:
            raise RuntimeError("submit() with no free slot")
        size = -(-len(jobs) // len(idle))  # ceil: spread the batch over the idle children
        for child, start in zip(idle, range(0, len(jobs), size)):
            chunk = jobs[start : start + size]
            child.batch.extend(chunk)
            child.current_since = time.monotonic()
            try:
                child.conn.send(chunk)
            except (OSError, ValueError):
                self._child_died(child)

    def fds(self) -> list[Any]:
        limit = self.max_jobs_per_child
        return [c.conn for c in self._children if c.batch or (limit is not None and c.done >= limit)]

    def collect(self) -> list[Finished]:
        for child in list(self._children):
            self._read(child)
        done, self._done = self._done, []
        return done

    def _read(self, child: _Child) -> None:
        try:
            while child.conn.poll():
                message = child.conn.recv()
                if len(message) == 3 and isinstance(message[2], Outcome):
                    job = child.batch.popleft()
                    self._done.append(Finished(job, message[2]))
                    child.current_since = time.monotonic()
                    child.done += 1
                elif message[0] == "retire":
                    # Anything sent after its last batch never started: back to the queue, uncounted.
                    self._done.extend(Finished(job, handback=True) for job in child.batch)
                    child.batch.clear()
                    self._replace(child)
                    return
        except (EOFError, OSError):
            self._child_died(child)

    def _child_died(self, child: _Child) -> None:
        code = child.process.exitcode if not child.process.is_alive() else None
        if child.batch:
            head = child.batch.popleft()
            how = f"exit code {code}" if code is None or code >= 0 else f"signal {signal.Signals(-code).name}"
            self._done.append(Finished(head, crashed=f"the worker's child process died ({how}) while running it"))
            self._done.extend(Finished(job, handback=True) for job in child.batch)
            child.batch.clear()
        self._replace(child)

    def next_deadline(self) -> float | None:
        deadlines = [self._deadline(c) for c in self._children if c.batch]
        return min(deadlines) if deadlines else None

    def _deadline(self, child: _Child) -> float:
        assert self.executor is not None
        timeout = self.executor.timeout_of(child.batch[0])  # inf for "no limit"
        return child.current_since + timeout + self.hard_grace_s

    def enforce_limits(self) -> list[Finished]:
        now = time.monotonic()
        for child in list(self._children):
            if not child.batch:
                continue
            self._read(child)  # it may have just finished
            if child.batch and not child.process.is_alive():
                self._child_died(child)
            elif child.batch and now >= self._deadline(child):
                head = child.batch.popleft()
                assert self.executor is not None
                limit = self.executor.timeout_of(head)
                reason = (f"JobTimeoutError: time limit exceeded: the job ran longer than {limit:g} s and did not "
                          f"stop when told to; its process was killed {self.hard_grace_s:g} s later")
                self._done.append(Finished(head, self.executor.failure(head, reason)))
                self._done.extend(Finished(job, handback=True) for job in child.batch)
                child.batch.clear()
                self._replace(child)
        done, self._done = self._done, []
        return done

    def close(self, now: bool) -> list[Finished]:
        finished: list[Finished] = []
        if not now:
            while any(c.batch for c in self._children) and not self.abort:
                wait_for_ready([c.conn for c in self._children if c.batch], timeout=0.5)
                finished.extend(self.collect())
                finished.extend(self.enforce_limits())
        finished.extend(self.collect())  # outcomes already in the pipes are not handed back to rerun
        for child in self._children:
            if child.batch:
                finished.extend(Finished(job, handback=True) for job in child.batch)
                child.batch.clear()
            with contextlib.suppress(Exception):
                child.conn.send(None)
            if now or self.abort:
                child.process.kill()
        for child in self._children:
            child.process.join(timeout=5)
            if child.process.is_alive():
                child.process.kill()
                child.process.join(timeout=5)
            with contextlib.suppress(Exception):
                child.conn.close()
        return finished


class ForkPool(ProcessPool):
    """A fresh child per job: nothing a job does to its process outlives it (RQ's isolation)."""

    kind = "fork"
    batches = False

    def __init__(self, concurrency: int = 1, **kwargs: Any) -> None:
        kwargs.pop("max_jobs_per_child", None)
        super().__init__(concurrency, max_jobs_per_child=1, **kwargs)

    def submit(self, jobs: list[LeasedJob]) -> None:
        idle = self._idle()
        for child, job in zip(idle, jobs):  # one job per child: the child retires after it
            child.batch.append(job)
            child.current_since = time.monotonic()
            try:
                child.conn.send([job])
            except (OSError, ValueError):
                self._child_died(child)
        if len(jobs) > len(idle):
            raise RuntimeError("submit() with more jobs than free slots")


# --- threads ---------------------------------------------------------------------------------------

def _raise_in_thread(thread_id: int, exc_type: type[BaseException]) -> None:
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), ctypes.py_object(exc_type))


@dataclass
class _Slot:
    thread: threading.Thread
    inbox: queue_mod.SimpleQueue[list[LeasedJob] | None]
    batch: deque[LeasedJob] = field(default_factory=deque)
    current_since: float = 0.0
    timed_out: set[str] = field(default_factory=set)


class ThreadPool(Pool):
    """N threads. Light and fast for I/O-bound jobs; no isolation, and a stuck thread cannot be killed."""

    kind = "thread"

    def __init__(self, concurrency: int = 4, **kwargs: Any) -> None:
        super().__init__(concurrency, **kwargs)
        self._slots: list[_Slot] = []
        self._lock = threading.Lock()
        self._done: list[Finished] = []

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
                except JobTimeoutError:
                    # The limit's exception landed after the job had ended (a race inherent to raising
                    # in another thread): its failure is recorded already; settle its slot and go on.
                    with self._lock:
                        if slot.batch and slot.batch[0] is job:
                            slot.batch.popleft()
                        slot.timed_out.discard(job.id)

    def _run_one(self, slot: _Slot, job: LeasedJob) -> None:
        assert self.executor is not None and self.notifier is not None
        if self.draining:
            outcome = None
        else:
            try:
                outcome = self.executor.execute(job)
            except JobTimeoutError as exc:  # sent asynchronously by enforce_limits
                outcome = self.executor.failure(job, f"JobTimeoutError: {exc}")
        with self._lock:
            if job.id in slot.timed_out:
                slot.timed_out.discard(job.id)  # its failure was already recorded
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
        return min(deadlines) if deadlines else None

    def enforce_limits(self) -> list[Finished]:
        assert self.executor is not None
        now = time.monotonic()
        with self._lock:
            for slot in self._slots:
                if not slot.batch or slot.batch[0].id in slot.timed_out:
                    continue
                head = slot.batch[0]
                limit = self.executor.timeout_of(head)
                if now >= slot.current_since + limit and slot.thread.ident is not None:
                    slot.timed_out.add(head.id)
                    _raise_in_thread(slot.thread.ident, JobTimeoutError)
                    reason = (f"JobTimeoutError: time limit exceeded: the job ran longer than {limit:g} s "
                              "(thread pool: the exception was raised in its thread; a thread blocked in C code "
                              "keeps running until that call returns)")
                    self._done.append(Finished(head, self.executor.failure(head, reason)))
            done, self._done = self._done, []
        return done

    def close(self, now: bool) -> list[Finished]:
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
                self._done.extend(Finished(j, handback=True) for j in slot.batch if j.id not in slot.timed_out)
                slot.batch.clear()
            done, self._done = self._done, []
        return done  # the threads are daemons: they die with the process


# --- asyncio ---------------------------------------------------------------------------------------

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
        outcome = await self.executor.execute_async(job, self._loop)
        with self._lock:
            self._running.pop((job.queue, job.id), None)
            self._done.append(Finished(job, outcome))
        self.notifier.notify()

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
    if concurrency is None:
        concurrency = {"process": os.cpu_count() or 2, "fork": os.cpu_count() or 2, "thread": 8,
                       "asyncio": 100, "solo": 1}[kind]
    return classes[kind](concurrency, **options)


__all__ = ["POOL_KINDS", "AsyncioPool", "Finished", "ForkPool", "Notifier", "Pool", "ProcessPool", "SoloPool",
           "ThreadPool", "make_pool"]
