"""The invariant checker and helpers of the fault-injection suite.

Invariant: every acknowledged enqueue ends *executed* (recorded by the job function) or *failed with a
non-empty reason*. A job that is neither is *lost*. A job recorded more than once is a *duplicate*;
each duplicate must have a cause we can name: a lease that expired or a process that crashed (the
job's attempt counter is above 1), or, for failover scenarios, writes that Redis itself dropped
(recorded as ``failover_window``).

Each scenario appends one JSON line to ``$CLUSTERQ_FAULT_REPORT`` (default
``/tmp/clusterq-fault-report.jsonl``); ``python tests/fault/report.py`` turns the lines into the table.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from clusterq import JobStatus, Queue

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent
SRC = TESTS.parent / "src"
REPORT_PATH = Path(os.environ.get("CLUSTERQ_FAULT_REPORT", "/tmp/clusterq-fault-report.jsonl"))
RUNS = int(os.environ.get("CLUSTERQ_FAULT_RUNS", "1"))
DEADLINE_S = 60.0

T_ = TypeVar("T_")


def wait_for(check: Callable[[], T_], what: str, timeout_s: float = DEADLINE_S, interval_s: float = 0.05) -> T_:
    """Poll ``check`` until it returns something truthy; a generous deadline, never a timing assertion."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {timeout_s:g} s waiting for {what}")
        time.sleep(interval_s)


# --- records ----------------------------------------------------------------------------------------


@dataclass
class Record:
    job_id: str
    pid: int
    at: float


def read_records(path: Path) -> list[Record]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) == 3:
            out.append(Record(parts[0], int(parts[1]), float(parts[2])))
    return out


# --- the checker ------------------------------------------------------------------------------------


@dataclass
class Verdict:
    scenario: str
    enqueued: int = 0
    executed: int = 0
    failed: int = 0
    duplicates: int = 0
    lost: int = 0
    recovery_s: float | None = None
    lost_ids: list[str] = field(default_factory=list)
    lost_in_failover_window: int = 0
    unexplained_duplicates: list[str] = field(default_factory=list)
    duplicate_causes: dict[str, int] = field(default_factory=dict)
    failed_reasons: dict[str, int] = field(default_factory=dict)
    not_terminal: list[str] = field(default_factory=list)
    notes: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> str:
        return (f"{self.scenario}: enqueued={self.enqueued} executed={self.executed} failed={self.failed} "
                f"duplicates={self.duplicates} lost={self.lost} recovery_s={self.recovery_s} "
                f"unexplained_duplicates={self.unexplained_duplicates} not_terminal={self.not_terminal[:5]} "
                f"lost_ids={self.lost_ids[:5]} notes={self.notes}")


def _status(queue: Queue, job_id: str) -> tuple[JobStatus | None, str | None, int]:
    job = queue.fetch_job(job_id)
    if job is None:
        return None, None, 0
    job.refresh()
    return job.get_status(refresh=False), job.exc_info, job.attempts


def settled(queue: Queue, acked: list[str], records_path: Path) -> bool:
    """Every acknowledged job is executed (recorded) and no longer running, or failed with a reason, or gone."""
    executed = {r.job_id for r in read_records(records_path)}
    for job_id in acked:
        status, reason, _ = _status(queue, job_id)
        if status in (JobStatus.QUEUED, JobStatus.STARTED, JobStatus.SCHEDULED):
            return False
        # A job record that vanished (failover) can never settle; anything else is still on its way.
        if job_id not in executed and not (status == JobStatus.FAILED and reason) and status is not None:
            return False
    return True


def check(
    scenario: str,
    queue: Queue,
    acked: list[str],
    records_path: Path,
    *,
    failover_window: tuple[float, float] | None = None,
    ack_times: dict[str, float] | None = None,
) -> Verdict:
    """Classify every acknowledged enqueue; count and explain duplicates."""
    records = read_records(records_path)
    by_job: dict[str, list[Record]] = defaultdict(list)
    for record in records:
        by_job[record.job_id].append(record)
    verdict = Verdict(scenario, enqueued=len(acked))
    causes: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    for job_id in acked:
        status, reason, attempts = _status(queue, job_id)
        runs = by_job.get(job_id, [])
        if status in (JobStatus.QUEUED, JobStatus.STARTED, JobStatus.SCHEDULED):
            verdict.not_terminal.append(f"{job_id}:{status.value}")
        if runs:
            verdict.executed += 1
        elif status == JobStatus.FAILED and reason:
            verdict.failed += 1
            reasons[reason.splitlines()[0][:60]] += 1
        else:
            verdict.lost += 1
            verdict.lost_ids.append(job_id)
            if failover_window and ack_times and failover_window[0] <= ack_times.get(job_id, 0) <= failover_window[1]:
                verdict.lost_in_failover_window += 1
        if len(runs) > 1:
            verdict.duplicates += 1
            if attempts > 1:
                causes["lease expired or crash (attempts > 1)"] += 1
            elif failover_window and any(failover_window[0] - 1 <= r.at <= failover_window[1] + 1 for r in runs):
                causes["failover window (writes dropped by Redis)"] += 1
            else:
                verdict.unexplained_duplicates.append(f"{job_id}:attempts={attempts}:runs={len(runs)}")
    verdict.duplicate_causes = dict(causes)
    verdict.failed_reasons = dict(reasons)
    return verdict


def report(verdict: Verdict) -> None:
    with REPORT_PATH.open("a") as fh:
        fh.write(json.dumps(asdict(verdict)) + "\n")
    print(verdict.summary())


# --- processes --------------------------------------------------------------------------------------


def subprocess_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), str(TESTS), str(SRC), env.get("PYTHONPATH", "")])
    return env


@contextmanager
def worker_process(url: str, queues: str, log: Path, **options: Any) -> Iterator[subprocess.Popen[bytes]]:
    """A worker (``fault_worker.py``) in its own session, killed with its pool's children at the end."""
    command = [sys.executable, str(HERE / "fault_worker.py"), url, queues, json.dumps(options)]
    with log.open("ab") as out:
        proc = subprocess.Popen(command, env=subprocess_env(), stdout=out, stderr=subprocess.STDOUT,
                                cwd=log.parent, start_new_session=True)
    try:
        yield proc
    finally:
        signal_group(proc, signal.SIGCONT)
        signal_group(proc, signal.SIGKILL)
        with suppress(subprocess.TimeoutExpired):
            proc.wait(10)


def signal_group(proc: subprocess.Popen[bytes], signum: int) -> None:
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signum)


def children_of(pid: int) -> list[int]:
    """Live child pids of ``pid`` (Linux /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    fields = fh.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid and fields[0] != "Z":
                found.append(int(entry))
    return found


# --- producers --------------------------------------------------------------------------------------


@dataclass
class Producer:
    """Enqueues ``mark`` jobs with ids it chooses, retrying a failed enqueue with the same id (as a
    client that timed out would), and remembers which enqueues were acknowledged and when."""

    queue: Queue
    records_path: Path
    prefix: str
    sleep_s: float = 0.0
    acked: list[str] = field(default_factory=list)
    ack_times: dict[str, float] = field(default_factory=dict)
    errors: int = 0
    error_kinds: Counter[str] = field(default_factory=Counter)
    abandoned: list[str] = field(default_factory=list)

    def enqueue(self, index: int, retry_for_s: float = 30.0) -> bool:
        job_id = f"{self.prefix}{index}"
        deadline = time.monotonic() + retry_for_s
        while True:
            try:
                self.queue.enqueue("fault_jobs.mark", str(self.records_path), job_id, self.sleep_s, job_id=job_id)
            except Exception as exc:
                self.errors += 1
                self.error_kinds[f"{type(exc).__name__}: {str(exc)[:100]}"] += 1
                if time.monotonic() > deadline:
                    self.abandoned.append(job_id)
                    return False
                time.sleep(0.05)
                continue
            self.acked.append(job_id)
            self.ack_times[job_id] = time.time()
            return True



@dataclass
class ProducerProcesses:
    """Producers running as processes of their own (``fault_producer.py``); :meth:`join` collects what
    they acknowledged into one :class:`Producer`."""

    merged: Producer
    procs: list[tuple[subprocess.Popen[bytes], Path]]

    def join(self, timeout_s: float = 180.0) -> Producer:
        deadline = time.monotonic() + timeout_s
        for proc, out in self.procs:
            try:
                proc.wait(max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                raise AssertionError(f"a producer process is stuck (pid {proc.pid})") from None
            assert proc.returncode == 0, f"a producer process failed with code {proc.returncode}"
            for line in out.read_text().splitlines():
                kind, _, rest = line.partition(" ")
                if kind == "ack":
                    job_id, at = rest.split()
                    self.merged.acked.append(job_id)
                    self.merged.ack_times[job_id] = float(at)
                elif kind == "summary":
                    summary = json.loads(rest)
                    self.merged.errors += summary["errors"]
                    self.merged.error_kinds.update(summary["error_kinds"])
                    self.merged.abandoned += summary["abandoned"]
        return self.merged


@contextmanager
def producer_processes(url: str, queue: Queue, records_path: Path, count: int, processes: int, pause_s: float,
                       out_dir: Path, options: dict[str, Any] | None = None) -> Iterator[ProducerProcesses]:
    """Start ``processes`` producer processes of ``count`` jobs each (ids ``p<n>-<i>``); killed at the end
    of the block if still running."""
    procs = []
    for n in range(processes):
        out = out_dir / f"producer{n}.acks"
        command = [sys.executable, str(HERE / "fault_producer.py"), url, queue.name, f"p{n}-", str(count),
                   str(pause_s), str(records_path), str(out), json.dumps(options or {})]
        with (out_dir / f"producer{n}.log").open("ab") as log:
            procs.append((subprocess.Popen(command, env=subprocess_env(), stdout=log, stderr=subprocess.STDOUT,
                                           cwd=out_dir), out))
    team = ProducerProcesses(Producer(queue, records_path, "p"), procs)
    try:
        yield team
    finally:
        for proc, _ in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
