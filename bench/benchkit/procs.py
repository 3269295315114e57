"""Driver subprocesses: spawn, wait for READY, release with GO, collect RESULT, stop.

Each driver runs in its own session (process group), so stopping it also stops whatever it forked
(RQ work horses, Celery pool children). Every driver still alive at exit is killed.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import json
import os
import queue
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import BENCH_DIR, LOG_DIR

MARK = "@@BENCH"
_live: set[Driver] = set()
_seq = itertools.count(1)


class DriverError(RuntimeError):
    """A driver failed or did not answer in time; the message carries the end of its log."""


@dataclass(frozen=True)
class Runtime:
    """How to run one system's drivers: the interpreter and the environment."""

    python: str
    env: dict[str, str]


class Driver:
    def __init__(self, runtime: Runtime, system: str, role: str, params: dict[str, Any],
                 extra_env: dict[str, str] | None = None, label: str = "") -> None:
        self.system, self.role = system, role
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        self.log_path = LOG_DIR / f"{next(_seq):04d}-{label or system}-{role}.log"
        env = {**runtime.env, **(extra_env or {})}
        self.spawned_at = time.time()
        with open(self.log_path, "wb") as log:
            self.popen = subprocess.Popen(
                [runtime.python, "-m", "peer_drivers.main", system, role, json.dumps(params)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, cwd=BENCH_DIR, env=env,
                start_new_session=True, text=True,
            )
        _live.add(self)
        self._lines: queue.Queue[tuple[str, dict[str, Any]] | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            if line.startswith(MARK + " "):
                word, _, payload = line[len(MARK) + 1:].strip().partition(" ")
                self._lines.put((word, json.loads(payload or "{}")))
        self._lines.put(None)

    def log_tail(self, lines: int = 6) -> str:
        try:
            text = Path(self.log_path).read_text(errors="replace")
        except OSError:
            return ""
        return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:])

    def expect(self, word: str, timeout: float) -> dict[str, Any]:
        try:
            item = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise DriverError(f"{self.system} {self.role}: no {word} within {timeout:.0f} s "
                              f"(log {self.log_path.name}: {self.log_tail()})") from None
        if item is None:
            code = self.popen.wait()
            raise DriverError(f"{self.system} {self.role} exited with code {code} before {word}: {self.log_tail()}")
        got, payload = item
        if got == "ERROR":
            raise DriverError(f"{self.system} {self.role}: {payload.get('error')}")
        if got != word:
            raise DriverError(f"{self.system} {self.role}: expected {word}, got {got}")
        return payload

    def poll_result(self) -> dict[str, Any] | None:
        """The RESULT payload if the driver has sent it (the process is then reaped), else None."""
        if self._lines.empty():
            return None
        return self.wait(timeout=1.0)

    def go(self) -> None:
        self.send("GO")

    def send(self, line: str) -> None:
        assert self.popen.stdin is not None
        self.popen.stdin.write(line + "\n")
        self.popen.stdin.flush()

    def rss(self) -> list[tuple[int, str, int]]:
        """(pid, name, RSS in bytes) of every live process in this driver's session: the worker process
        itself first, then what it forked (pool children, work horses)."""
        return session_rss(self.popen.pid)

    def wait(self, timeout: float) -> dict[str, Any]:
        """The RESULT payload; the process is reaped."""
        payload = self.expect("RESULT", timeout)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=10)
        self.stop()
        return payload

    def running(self) -> bool:
        return self.popen.poll() is None

    def stop(self, grace: float = 1.0) -> None:
        """SIGTERM the process group; SIGKILL it if anything is left after ``grace``."""
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                pass
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=5)
        for stream in (self.popen.stdin, self.popen.stdout):
            with contextlib.suppress(Exception):
                if stream is not None:
                    stream.close()
        _live.discard(self)


def session_rss(sid: int) -> list[tuple[int, str, int]]:
    """(pid, name, RSS bytes) of every process whose session id is ``sid`` (Linux /proc), leader first."""
    page = os.sysconf("SC_PAGE_SIZE")
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            statm = (entry / "statm").read_text().split()
        except OSError:
            continue
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[3]) == sid and fields[0] != "Z":  # fields[3] is the session id
            found.append((int(entry.name), name, int(statm[1]) * page))
    return sorted(found, key=lambda item: (item[0] != sid, item[0]))


def run_once(runtime: Runtime, system: str, role: str, params: dict[str, Any], timeout: float,
             extra_env: dict[str, str] | None = None, label: str = "") -> dict[str, Any]:
    """Run a driver that needs no gate (enqueue, latency) to completion."""
    driver = Driver(runtime, system, role, params, extra_env, label)
    try:
        return driver.wait(timeout)
    finally:
        driver.stop()


def start_gated(runtime: Runtime, system: str, params: dict[str, Any], count: int, timeout: float,
                extra_env: dict[str, str] | None = None, label: str = "") -> list[Driver]:
    """Start ``count`` workers and wait until all are READY (imported, configured, connected)."""
    drivers = [Driver(runtime, system, "worker", params, extra_env, label) for _ in range(count)]
    try:
        for driver in drivers:
            driver.expect("READY", timeout)
    except BaseException:
        for driver in drivers:
            driver.stop()
        raise
    return drivers


def go_all(drivers: list[Driver]) -> float:
    """Release the workers; returns the wall-clock start time."""
    started = time.time()
    for driver in drivers:
        driver.go()
    return started


@atexit.register
def _kill_leftovers() -> None:
    for driver in list(_live):
        driver.stop(grace=1.0)
