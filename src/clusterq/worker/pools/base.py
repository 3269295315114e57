"""What every execution pool shares: the :class:`Pool` interface, :class:`Finished` records and the
:class:`Notifier` self-pipe. See :mod:`clusterq.worker.pools` for the pools themselves."""

from __future__ import annotations

import contextlib
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

from clusterq.api.execution import Executor
from clusterq.state.store import LeasedJob, Outcome

POOL_KINDS = ("process", "fork", "thread", "asyncio", "solo")
DEFAULT_HARD_GRACE_S = 2.0


@dataclass
class Finished:
    """What became of a submitted job."""

    job: LeasedJob
    outcome: Outcome | None = None
    crashed: str | None = None  # why the job's process vanished: leave it to the lease rules (unless handback)
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
        self.depth = 1  # batches a slot may hold at once (the process pool honours 2: the next one waits ready)

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

    def reload(self) -> None:
        """Run jobs with the code on disk from now on (SIGUSR1): pools of child processes replace their
        children as each finishes its batch; pools running jobs in the worker's own process cannot."""
        return None

    def stop(self, queue: str, job_id: str, reason: str) -> bool:
        """Stop a job of this pool (``job.stop()``): running, it is interrupted; waiting in a batch, it
        never starts. Either way it is reported (by :meth:`collect`) with a ``stopped`` outcome. Returns
        False if the pool does not hold the job (it ended meanwhile)."""
        return False

    @abstractmethod
    def close(self, now: bool) -> list[Finished]:
        """Stop the pool. ``now=False`` waits for running jobs; ``now=True`` stops them and hands
        every unfinished job back. Returns what finished or was handed back meanwhile."""
