"""The ``process`` pool (long-lived forked children) and the ``fork`` pool (a child per job)."""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import pickle
import resource
import select
import signal
import struct
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.connection import wait as wait_for_ready
from typing import Any

from clusterq.api.execution import Executor
from clusterq.api.hooks import set_report_sink
from clusterq.state.store import LeasedJob, make_outcome
from clusterq.state.transitions import make_leased_job
from clusterq.worker.pools.base import Finished, Notifier, Pool


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


def _limit_memory(limit_mb: float | None) -> None:
    """Let this child's address space grow by at most ``limit_mb`` from its size now (``RLIMIT_AS``).

    An allocation past it fails inside the job with ``MemoryError``: a job that eats memory without bound
    fails on its own instead of taking the machine (and every other job) down with it.
    """
    if limit_mb is None:
        return
    try:
        with open("/proc/self/statm") as fh:
            size = int(fh.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return  # not Linux: no cap
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = size + int(limit_mb * 2**20)
    if hard != resource.RLIM_INFINITY:
        cap = min(cap, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))


def _child_main(conn: Connection, executor: Executor, max_jobs: int | None, max_memory_mb: float | None,
                parent_end: Connection | None = None, memory_limit_mb: float | None = None) -> None:
    """A pool child: run batches of jobs sent by the supervisor, answer one outcome per job.

    Each outcome is sent as soon as its job ends, so a child killed in the middle of a batch has
    reported every job it finished. After ``max_jobs`` jobs or past ``max_memory_mb`` it says so and
    exits between batches (recycling).
    """
    _die_with_parent()
    if parent_end is not None:
        parent_end.close()
    # A signal to the whole process group (Ctrl-C, supervisord's stopasgroup, Kubernetes without a preStop
    # hook, a closed terminal) reaches the children too: the supervisor decides (finish, then stop; or
    # stop now and hand back), so a child ignores them and is killed by the supervisor when it must go.
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)  # the supervisor's reload signal
    _limit_memory(memory_limit_mb)
    # Reports for the supervisor's on_report hooks are buffered and ride on the next outcome message (no
    # message of their own per job: a metrics hook adds no pipe round per job); what is left is sent last.
    reports: list[Any] = []
    set_report_sink(reports.append)
    executor.hooks.call("on_child_start")
    if max_jobs != 1:  # not a fork pool's child: its one job is already in the pipe
        _warm_up(executor)
    done, retire = _serve(conn, executor, max_jobs, max_memory_mb, reports)
    # Before the last word: once told "retire" the supervisor kills the child, and a child leaves with
    # os._exit (no atexit), so this is where a hook flushes what it buffers.
    executor.hooks.call("on_child_exit", reverse=True)
    if reports:
        with contextlib.suppress(OSError, ValueError):
            conn.send(("reports", reports))
    if retire:
        conn.send(("retire", done, _rss_mb()))


def _warm_up(executor: Executor) -> None:
    """Take a job's way in once, on a job that is never run: a fresh child's first job otherwise pays for what
    its first pass touches (pages copied from the supervisor since the fork, code never run in this process).
    Nothing is executed and no hook is called."""
    job = LeasedJob("", "", 0, "clusterq.utils.now_ms", b"", b"")
    with contextlib.suppress(Exception):
        make_leased_job(pickle.loads(pickle.dumps([_plain(job)]))[0])
        executor.prepare(job)


def _serve(conn: Connection, executor: Executor, max_jobs: int | None,
           max_memory_mb: float | None, reports: list[Any]) -> tuple[int, bool]:
    """Run batches until told to stop (False) or until it is time to retire (True); returns the count."""
    done = 0
    fd = conn.fileno()
    while True:
        try:
            batch = conn.recv()
        except (EOFError, OSError):
            return done, False
        if batch is None:
            return done, False
        for item in batch:
            job = make_leased_job(item)
            outcome = executor.execute(job)
            done += 1
            outcome_values = tuple(outcome.__dict__.values())  # a plain tuple pickles faster than the dataclass
            if reports:  # what the job's hooks reported, with its outcome: one message
                conn.send((job.queue, job.id, outcome_values, reports[:]))
                reports.clear()
            else:
                _send_plain(conn, fd, (job.queue, job.id, outcome_values))
        rss_mb = _rss_mb() if max_memory_mb is not None else 0.0  # a read of /proc: only when it is watched
        if (max_jobs is not None and done >= max_jobs) or (max_memory_mb is not None and rss_mb > max_memory_mb):
            return done, True
        _send_plain(conn, fd, ("idle", done, rss_mb))


def _send_plain(conn: Connection, fd: int, message: tuple[Any, ...] | list[Any]) -> None:
    """``conn.send(message)`` for a message of plain values (an outcome; a batch of jobs as tuples), in one
    ``os.write``: the frame is multiprocessing's own (a 4-byte big-endian length, then the pickle), so the
    other end reads it like any other, without ``Connection.send``'s ForkingPickler and checks."""
    data = pickle.dumps(message, pickle.HIGHEST_PROTOCOL)
    if len(data) > 0x7FFFFFFF:  # past 2 GiB: multiprocessing's long header
        conn.send(message)
        return
    frame = memoryview(_HEADER.pack(len(data)) + data)
    while frame:
        frame = frame[os.write(fd, frame):]


_HEADER = struct.Struct("!i")
"""multiprocessing.Connection's frame header: the length of the pickle that follows (-1: an 8-byte length
follows, for a message past 2 GiB)."""
_READ_BYTES = 1 << 16
_MAX_READS = 64
"""At most this many reads of :data:`_READ_BYTES` per child per :meth:`_Child.receive` (4 MiB): a child
that keeps sending does not keep the supervisor from its round trips."""


def _frames(inbox: bytearray) -> list[Any]:
    """Unpickle every whole frame at the head of ``inbox`` and drop them from it (a partial frame stays)."""
    messages: list[Any] = []
    at, end = 0, len(inbox)
    while end - at >= 4:
        (size,) = _HEADER.unpack_from(inbox, at)
        start = at + 4
        if size == -1:
            if end - start < 8:
                break
            (size,) = struct.unpack_from("!Q", inbox, start)
            start += 8
        if end - start < size:
            break
        at = start + size
        messages.append(pickle.loads(inbox[start:at]))
    if at:
        del inbox[:at]
    return messages


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
"""Signals that stop a worker (first: warm shutdown; second: stop now, hand back)."""


def _plain(job: LeasedJob) -> tuple[Any, ...]:
    """A job as a plain tuple of its fields, for the pipe to a child: a dataclass pickles with its class
    and a state dict, about five times slower both ways (and an outcome comes back the same way)."""
    return tuple(job.__dict__.values())


def _key(job: LeasedJob) -> tuple[str, str]:
    return (job.queue, job.id)


@dataclass
class _Child:
    process: Any
    conn: Connection
    batch: deque[LeasedJob] = field(default_factory=deque)
    current_since: float = 0.0  # when the job at the head of ``batch`` started (as far as we know)
    done: int = 0
    sent: int = 0  # batches sent and not yet reported done ("idle"): two may be in flight
    poller: Any = None  # a select.poll on conn: Connection.poll() builds a selector per call (~20 us a message)
    inbox: bytearray = field(default_factory=bytearray)  # read from the pipe, not yet a whole message

    def readable(self) -> bool:
        """A message (or the pipe's end) is waiting: like ``conn.poll()``, without its per-call selector."""
        if self.poller is None:
            self.poller = select.poll()
            self.poller.register(self.conn.fileno(), select.POLLIN)
        return bool(self.poller.poll(0))

    def receive(self) -> tuple[list[Any], bool]:
        """Every whole message waiting in the pipe, in order, and whether the pipe's end was reached (the
        child is gone: the messages it sent before are all here, to be taken first).

        The pipe is read with large ``os.read`` calls and the frames parsed here (multiprocessing's framing,
        see :func:`_send_plain`): one system call for many outcomes instead of two reads each with
        ``Connection.recv``. The child still writes one frame per job as it ends, so a child killed in the
        middle of a batch has reported every job it finished. Only whole messages are taken: a partial one
        waits in :attr:`inbox` (its rest makes the pipe readable again)."""
        fd = self.conn.fileno()
        ended = False
        for _ in range(_MAX_READS):
            if not self.readable():
                break
            chunk = os.read(fd, _READ_BYTES)
            if not chunk:
                ended = True
                break
            self.inbox += chunk
            if len(chunk) < _READ_BYTES:
                break  # the pipe is (very likely) empty: no poll to confirm it
        return _frames(self.inbox) if self.inbox else [], ended


class ProcessPool(Pool):
    """N long-lived child processes, forked from the supervisor (so jobs' modules imported once)."""

    kind = "process"

    def __init__(self, concurrency: int = 2, *, max_jobs_per_child: int | None = None,
                 max_memory_mb: float | None = None, memory_limit_mb: float | None = None, **kwargs: Any) -> None:
        super().__init__(concurrency, **kwargs)
        if memory_limit_mb is not None and memory_limit_mb <= 0:
            raise ValueError(f"memory_limit_mb must be positive, got {memory_limit_mb!r}")
        self.max_jobs_per_child = max_jobs_per_child
        self.max_memory_mb = max_memory_mb
        self.memory_limit_mb = memory_limit_mb
        self._ctx = multiprocessing.get_context("fork")
        self._children: list[_Child] = []
        self._done: list[Finished] = []
        self._stopping: dict[tuple[str, str], str] = {}  # job.stop() requests: (queue, id) -> reason
        self._stale: set[int] = set()  # ids of children to replace once idle (reload: fresh code)
        self.replaced = 0  # children started to replace one that died, was killed or retired

    def start(self, executor: Executor, notifier: Notifier) -> None:
        super().start(executor, notifier)
        self._children = [self._spawn() for _ in range(self.concurrency)]

    def _spawn(self) -> _Child:
        parent, child = self._ctx.Pipe(duplex=True)
        process = self._ctx.Process(
            target=_child_main,
            args=(child, self.executor, self.max_jobs_per_child, self.max_memory_mb, parent, self.memory_limit_mb),
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
        """One entry per batch a child can take now: an idle child takes ``depth`` batches, a child running
        its last batch one more (the next batch waits in its pipe, so it starts without waiting for the
        supervisor's round trip to Redis)."""
        # A child that reached max_jobs_per_child is about to retire: it must not be sent more work.
        limit = self.max_jobs_per_child
        slots: list[_Child] = []
        for child in self._children:
            if limit is not None:  # one batch at a time: the child may retire after it
                if not child.batch and child.done < limit:
                    slots.append(child)
                continue
            slots.extend([child] * max(0, self.depth - child.sent))
        return slots

    def free(self) -> int:
        return len(self._idle())

    def busy(self) -> int:
        return sum(len(c.batch) for c in self._children) + len(self._done)

    def submit(self, jobs: list[LeasedJob]) -> None:
        idle = self._idle()
        if not idle:
            raise RuntimeError("submit() with no free slot")
        size = -(-len(jobs) // len(idle))  # ceil: spread the batch over the idle children
        for child, start in zip(self._spread(idle), range(0, len(jobs), size)):
            chunk = jobs[start : start + size]
            if not child.batch:
                child.current_since = time.monotonic()
            child.batch.extend(chunk)
            child.sent += 1
            try:
                _send_plain(child.conn, child.conn.fileno(), [_plain(job) for job in chunk])
            except (OSError, ValueError):
                self._child_died(child)

    @staticmethod
    def _spread(slots: list[_Child]) -> list[_Child]:
        """The slots in round-robin order over the children: a first batch for each, then the second ones."""
        children: dict[int, _Child] = {}
        rounds: dict[int, int] = {}
        for child in slots:
            children[id(child)] = child
            rounds[id(child)] = rounds.get(id(child), 0) + 1
        order: list[_Child] = []
        for turn in range(1, max(rounds.values(), default=0) + 1):
            order.extend(child for key, child in children.items() if rounds[key] >= turn)
        return order

    def fds(self) -> list[Any]:
        limit = self.max_jobs_per_child
        return [c.conn for c in self._children if c.batch or (limit is not None and c.done >= limit)]

    def reload(self) -> None:
        """Replace every child with a fresh one, each once its current batch is done: jobs then run the
        code on disk now (the modules a job imports are imported afresh by each new child)."""
        self._stale = {id(c) for c in self._children}
        self._replace_stale()

    def _replace_stale(self) -> None:
        for child in list(self._children):
            if id(child) in self._stale and not child.batch:
                self._stale.discard(id(child))
                with contextlib.suppress(Exception):
                    child.conn.send(None)  # exit between batches
                self._replace(child)

    def collect(self) -> list[Finished]:
        for child in list(self._children):
            self._read(child)
        if self._stale:
            self._replace_stale()
        if self._stopping:  # forget requests for jobs that left otherwise (crashed, timed out, handed back)
            held = {_key(job) for child in self._children for job in child.batch}
            for key in [key for key in self._stopping if key not in held]:
                del self._stopping[key]
        done, self._done = self._done, []
        return done

    def _read(self, child: _Child) -> None:
        try:
            messages, ended = child.receive()
        except (EOFError, OSError, ValueError):  # ValueError: the pipe was closed
            messages, ended = [], True
        outcomes = 0
        for message in messages:
            if len(message) >= 3 and isinstance(message[2], tuple):
                if len(message) == 4:  # the reports its hooks made while it ran
                    self._reports(message[3])
                job = child.batch.popleft()
                if self._stopping:
                    self._stopping.pop((job.queue, job.id), None)  # it ended first: its outcome stands
                self._done.append(Finished(job, make_outcome(message[2])))
                outcomes += 1
            elif message[0] == "idle":
                child.sent = max(0, child.sent - 1)
            elif message[0] == "reports":
                self._reports(message[1])
            elif message[0] == "retire":
                child.done += outcomes
                # Anything sent after its last batch never started: back to the queue, uncounted.
                self._done.extend(self._unstarted(child))
                child.batch.clear()
                self._replace(child)
                return
        if outcomes:
            child.current_since = time.monotonic()  # its next job started (as far as we know) by now
            child.done += outcomes
        if ended:
            self._child_died(child)
            return
        if self._stopping and child.batch and _key(child.batch[0]) in self._stopping:
            self._kill_for_stop(child)  # the next job of its batch was stopped before it ran

    def _read_reports(self, child: _Child) -> None:
        """What an exited child reported last (its exit hooks): to the on_report hooks."""
        assert self.executor is not None
        with contextlib.suppress(EOFError, OSError, ValueError):
            while True:
                messages, ended = child.receive()
                for message in messages:
                    if message[0] == "reports":
                        self._reports(message[1])
                if ended or not messages:
                    return

    def _reports(self, reports: list[Any]) -> None:
        """A child's reports (sent with an outcome, or last before it exits) to the on_report hooks."""
        assert self.executor is not None
        for data in reports:
            self.executor.hooks.call("on_report", data)

    def stop(self, queue: str, job_id: str, reason: str) -> bool:
        for child in list(self._children):
            if any(_key(job) == (queue, job_id) for job in child.batch):
                self._stopping[(queue, job_id)] = reason
                self._read(child)  # outcomes already sent; stops the job if it is (now) the head
                return True
        return False

    def _unstarted(self, child: _Child) -> list[Finished]:
        """Records for the jobs of a batch that never started: back to the queue, uncounted, except those
        whose stop was requested, which end stopped (handed back, they would run elsewhere)."""
        assert self.executor is not None
        out = []
        for job in child.batch:
            reason = self._stopping.pop(_key(job), None)
            out.append(Finished(job, self.executor.stopped(job, reason)) if reason is not None
                       else Finished(job, handback=True))
        return out

    def _kill_for_stop(self, child: _Child) -> None:
        """Kill the child running a stopped job and replace it; the rest of its batch goes back."""
        assert self.executor is not None
        head = child.batch.popleft()
        reason = self._stopping.pop(_key(head))
        self._done.append(Finished(head, self.executor.stopped(head, reason)))
        self._done.extend(self._unstarted(child))
        child.batch.clear()
        self._replace(child)

    def _child_died(self, child: _Child) -> None:
        code = child.process.exitcode if not child.process.is_alive() else None
        if child.batch:
            head = child.batch.popleft()
            how = f"exit code {code}" if code is None or code >= 0 else f"signal {signal.Signals(-code).name}"
            # Killed by a stop signal (a job that took SIGTERM back, a kill of the child): the job did not
            # fail, it was stopped from outside: back to its queue at once, uncounted.
            stopped = code is not None and code < 0 and -code in STOP_SIGNALS
            self._done.append(Finished(head, crashed=f"the worker's child process died ({how}) while running it",
                                       handback=stopped))
            self._done.extend(self._unstarted(child))
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
                # It may have sent its outcome and exited between the read above and the liveness test
                # (a fork child leaves right after its job): what is in the pipe stands before "died".
                self._read(child)
                if child.batch:
                    self._child_died(child)
            elif child.batch and now >= self._deadline(child):
                head = child.batch.popleft()
                assert self.executor is not None
                limit = self.executor.timeout_of(head)
                reason = (f"JobTimeoutError: time limit exceeded: the job ran longer than {limit:g} s and did not "
                          f"stop when told to; its process was killed {self.hard_grace_s:g} s later")
                self._done.append(Finished(head, self.executor.failure(head, reason, outside=True)))
                self._done.extend(self._unstarted(child))
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
                finished.extend(self._unstarted(child))
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
            self._read_reports(child)
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
                child.conn.send([_plain(job)])
            except (OSError, ValueError):
                self._child_died(child)
        if len(jobs) > len(idle):
            raise RuntimeError("submit() with more jobs than free slots")
