"""Callbacks run by the worker after a job (RQ's ``Callback``): ``on_success``, ``on_failure`` and
``on_stopped``, each with its own time limit.

A callback runs where the job ran (the pool's child process, thread or event loop), right after it, and
before the outcome is reported, so the outcome and any callback failure are recorded together in one
step. A callback that raises or runs past its limit never changes the job's outcome: the worker logs it
and records why on the job (``Job.callback_error``).

Signatures, as in RQ::

    on_success(job, connection, result)
    on_failure(job, connection, exc_type, exc_value, traceback)
    on_stopped(job, connection)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from clusterq.api import options as O
from clusterq.utils import function_path

CALLBACK_TIMEOUT_S = 60.0
"""A callback's time limit when it does not set one (RQ's default)."""

_NAMES = {"s": "on_success", "f": "on_failure", "t": "on_stopped"}


class SuccessCallback(Protocol):
    def __call__(self, job: Any, connection: Any, result: Any) -> Any: ...


class FailureCallback(Protocol):
    def __call__(self, job: Any, connection: Any, exc_type: Any, exc_value: Any, traceback: Any) -> Any: ...


@dataclass(frozen=True)
class Callback:
    """A function the worker calls after a job, by dotted path, within ``timeout`` seconds (default 60).

    ``func`` is a module-level function or its dotted path (a worker imports it, within its allowlist).
    """

    func: Callable[..., Any] | str
    timeout: float | None = None

    def __post_init__(self) -> None:
        function_path(self.func)  # refuses lambdas and nested functions now, not on the worker
        if self.timeout is not None and not isinstance(self.timeout, (int, float)):
            raise ValueError(f"Callback timeout must be a positive number of seconds, got {self.timeout!r}")
        O.seconds(self.timeout, "Callback timeout", positive=True)

    def encode(self) -> list[Any]:
        """The form stored in the job's options: ``[path, timeout_s]``."""
        return [function_path(self.func), float(self.timeout or CALLBACK_TIMEOUT_S)]


def encode_callbacks(on_success: Any = None, on_failure: Any = None, on_stopped: Any = None) -> dict[str, Any]:
    """The job options' ``cb`` entry: ``{"s"|"f"|"t": [path, timeout_s]}`` for the callbacks given."""
    encoded: dict[str, Any] = {}
    for code, value in (("s", on_success), ("f", on_failure), ("t", on_stopped)):
        if value is None:
            continue
        callback = value if isinstance(value, Callback) else Callback(value)
        encoded[code] = callback.encode()
    return encoded


def decode_callbacks(value: Any) -> dict[str, tuple[str, float]]:
    """The callbacks of a job's options (ignoring malformed entries, which the worker cannot run)."""
    if not isinstance(value, dict):
        return {}
    out: dict[str, tuple[str, float]] = {}
    for code, entry in value.items():
        if code in _NAMES and isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], str):
            try:
                limit = float(entry[1])
            except (TypeError, ValueError):
                continue
            if not 0 < limit <= O.MAX_DURATION_S:  # NaN too: a limit no pool could wait for
                raise ValueError(f"the {_NAMES[code]} callback's time limit is {entry[1]!r}, not a number of "
                                 f"seconds from 0 to {O.MAX_DURATION_S}")
            out[code] = (entry[0], limit)
    return out


def callback_name(code: str) -> str:
    return _NAMES[code]
