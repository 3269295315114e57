"""Server-side accounting from ``INFO``: commands executed, CPU used, memory held.

``INFO commandstats`` counts every command, including those run inside Lua scripts (Redis >= 7). The
bench's own commands (INFO itself, polls) are counted here and subtracted, so a delta holds only the
traffic of the system under test. On a cluster every figure is summed over the primaries.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import redis


@dataclass(frozen=True)
class Snapshot:
    calls: int
    cpu_s: float
    used_memory: int
    own: int
    """Commands the bench itself had sent before this snapshot's INFO."""


@dataclass(frozen=True)
class Delta:
    commands: int
    cpu_s: float
    memory: int

    def __add__(self, other: Delta) -> Delta:
        return Delta(self.commands + other.commands, self.cpu_s + other.cpu_s, self.memory + other.memory)


@dataclass
class Monitor:
    """Admin connections to every primary of the deployment under test."""

    ports: list[int]
    host: str = "127.0.0.1"
    own: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self.clients = [redis.Redis(host=self.host, port=p, decode_responses=True, socket_timeout=60)
                        for p in self.ports]

    def snapshot(self) -> Snapshot:
        own = sum(self.own.values())
        calls, cpu, memory = 0, 0.0, 0
        for client in self.clients:
            info: dict[str, Any] = client.execute_command("INFO", "cpu", "memory", "commandstats")
            self.own["info"] += 1
            calls += sum(int(v["calls"]) for k, v in info.items() if k.startswith("cmdstat_"))
            cpu += float(info["used_cpu_user"]) + float(info["used_cpu_sys"])
            memory += int(info["used_memory"])
        return Snapshot(calls, cpu, memory, own)

    def call(self, *args: Any, node: int = 0) -> Any:
        """Run one command for the bench (counted as the bench's own)."""
        self.own[str(args[0]).lower()] += 1
        return self.clients[node].execute_command(*args)

    def all_zero(self, checks: tuple[tuple[str, str], ...]) -> bool:
        return all(int(self.call(cmd.upper(), key)) == 0 for cmd, key in checks)

    def flushall(self) -> None:
        for index in range(len(self.clients)):
            self.call("FLUSHALL", node=index)

    def close(self) -> None:
        for client in self.clients:
            client.close()


def delta(before: Snapshot, after: Snapshot) -> Delta:
    """What the system under test did between two snapshots (the bench's own commands removed)."""
    return Delta(
        commands=(after.calls - before.calls) - (after.own - before.own),
        cpu_s=after.cpu_s - before.cpu_s,
        memory=after.used_memory - before.used_memory,
    )
