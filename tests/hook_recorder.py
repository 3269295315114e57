"""Hooks for tests/test_hooks.py: each records what it sees as JSON lines in a file, so events from
forked pool children, threads and the supervisor all reach the test (small O_APPEND writes are atomic)."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from typing import Any

from clusterq.hooks import EnqueueInfo, Hook, JobInfo, report


class Recorder(Hook):
    """Records every hook call; ``before_enqueue`` adds a trace header (as an OpenTelemetry hook would)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def write(self, event: str, **data: Any) -> None:
        line = json.dumps({"event": event, "pid": os.getpid(), **data}) + "\n"
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)

    def before_enqueue(self, job: EnqueueInfo) -> None:
        job.headers["traceparent"] = f"00-{job.id}-01"
        self.write("before_enqueue", id=job.id, func=job.func)

    def before_perform(self, job: JobInfo) -> None:
        self.write("before_perform", id=job.id, headers=dict(job.headers), attempt=job.attempt)

    @contextlib.contextmanager
    def _around(self, job: JobInfo) -> Iterator[None]:
        try:
            yield
        except Exception as exc:
            self.write("around_error", id=job.id, error=type(exc).__name__)
            raise
        else:
            self.write("around_ok", id=job.id)

    def around_perform(self, job: JobInfo) -> Any:
        return self._around(job)

    def after_perform(self, job: JobInfo, result: Any, error: BaseException | None) -> None:
        self.write("after_perform", id=job.id, error=type(error).__name__ if error else None)

    def on_retry(self, job: JobInfo, error: BaseException | None, reason: str) -> None:
        self.write("on_retry", id=job.id, retries=job.retries)

    def on_failure(self, job: JobInfo, error: BaseException | None, reason: str) -> None:
        self.write("on_failure", id=job.id, error=type(error).__name__ if error else None,
                   reason=reason.splitlines()[0] if reason else "")

    def on_abandoned(self, queue: str, job_id: str) -> None:
        self.write("on_abandoned", id=job_id, queue=queue)

    def on_worker_start(self, worker: Any) -> None:
        self.write("on_worker_start", name=worker.name)

    def on_worker_stop(self, worker: Any) -> None:
        self.write("on_worker_stop", name=worker.name)

    def on_child_start(self) -> None:
        self.write("on_child_start")

    def on_child_exit(self) -> None:
        self.write("on_child_exit")


class Counting(Recorder):
    """Counts where jobs run and reports to the worker, as a metrics hook would."""

    def after_perform(self, job: JobInfo, result: Any, error: BaseException | None) -> None:
        report(["ran", job.id, os.getpid()])

    def on_child_exit(self) -> None:
        report(["bye", None, os.getpid()])

    def on_report(self, data: Any) -> None:
        self.write("on_report", data=data)


class Raising(Hook):
    """Raises at every point but before_enqueue: a broken hook must not touch a job."""

    def before_perform(self, job: JobInfo) -> None:
        raise RuntimeError("before_perform is broken")

    def around_perform(self, job: JobInfo) -> Any:
        raise RuntimeError("around_perform is broken")

    def after_perform(self, job: JobInfo, result: Any, error: BaseException | None) -> None:
        raise RuntimeError("after_perform is broken")

    def on_retry(self, job: JobInfo, error: BaseException | None, reason: str) -> None:
        raise RuntimeError("on_retry is broken")

    def on_failure(self, job: JobInfo, error: BaseException | None, reason: str) -> None:
        raise RuntimeError("on_failure is broken")

    def on_worker_start(self, worker: Any) -> None:
        raise RuntimeError("on_worker_start is broken")

    def on_child_start(self) -> None:
        raise RuntimeError("on_child_start is broken")


class Refusing(Hook):
    def before_enqueue(self, job: EnqueueInfo) -> None:
        raise PermissionError(f"tenant header missing for {job.func}")


ENTRY_POINT_PATH_ENV = "CLUSTERQ_TEST_HOOK_PATH"


def from_entry_point() -> Recorder:
    """The factory the test distribution's entry point names."""
    return Recorder(os.environ[ENTRY_POINT_PATH_ENV])


def read(path: str) -> list[dict[str, Any]]:
    if not os.path.exists(path):
        return []
    with open(path) as handle:
        return [json.loads(line) for line in handle if line.strip()]
