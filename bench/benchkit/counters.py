"""The orchestrator's side of the executed-job counters written by ``peer_tasks.common.count_one``."""

from __future__ import annotations

import shutil
import struct
import tempfile
from pathlib import Path

from peer_tasks.common import COUNTER_DIR_ENV, LATENCY_FILE_ENV, RECORD


class Counters:
    """A fresh directory of per-process counters for one processing run."""

    def __init__(self) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="cqbench-count-"))

    @property
    def env(self) -> dict[str, str]:
        return {COUNTER_DIR_ENV: str(self.directory)}

    def _records(self) -> list[tuple[int, int, int]]:
        records = []
        for path in self.directory.iterdir():
            data = path.read_bytes()
            if len(data) >= RECORD:
                records.append(struct.unpack_from("<qqq", data, 0))
        return records

    def total(self) -> int:
        return sum(r[0] for r in self._records())

    def window(self) -> tuple[float, float] | None:
        """Wall-clock seconds at which the first and the last job (over every process) finished."""
        done = [r for r in self._records() if r[0] > 0]
        if not done:
            return None
        return min(r[1] for r in done) / 1e9, max(r[2] for r in done) / 1e9

    def remove(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


class LatencyFile:
    """Where latency probes append their enqueue-to-start delays."""

    def __init__(self) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="cqbench-latency-"))
        self.path = self.directory / "latency.txt"
        self.path.touch()

    @property
    def env(self) -> dict[str, str]:
        return {LATENCY_FILE_ENV: str(self.path)}

    def read_ms(self) -> list[float]:
        text = self.path.read_text()
        return [float(line) * 1000 for line in text.splitlines() if line.strip()]

    def clear(self) -> None:
        self.path.write_text("")

    def remove(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)
