"""Notification settings: notifiers by name, rules, and the delivery queue; read from a dict (a settings
module's ``NOTIFY``), a JSON file (``clusterq worker --notify-config PATH`` or ``$CLUSTERQ_NOTIFY_CONFIG``)
or JSON text. Every mistake is a ValueError naming the field."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CONFIG_ENV = "CLUSTERQ_NOTIFY_CONFIG"
DEFAULT_QUEUE = "clusterq:notify"

JOB_EVENTS = ("job_failed", "retries_exhausted", "job_abandoned")
"""Events of single jobs: a final failure (``retries_exhausted``: a final failure after at least one
retry; it is also a ``job_failed``), and a job abandoned (its lease expired past its attempts)."""
PERIODIC_EVENTS = ("backlog", "oldest_waiting", "no_worker", "worker_lost", "eviction_policy")
"""Events found by the periodic check: waiting jobs over ``threshold``, the oldest waiting job older than
``threshold`` seconds, a queue with waiting jobs (or named by the rule) that no live worker serves, a
worker whose registration expired (it died without stopping), a primary whose maxmemory-policy can evict."""
EVENTS = JOB_EVENTS + PERIODIC_EVENTS
NEEDS_THRESHOLD = ("backlog", "oldest_waiting")


@dataclass(frozen=True)
class Rule:
    name: str
    events: tuple[str, ...]
    notify: tuple[str, ...] = ()  # notifier names; () is every notifier
    queues: tuple[str, ...] = ()  # () is every queue
    functions: tuple[str, ...] = ()  # job events only; () is every function
    threshold: float | None = None
    window_s: float = 60.0

    def matches(self, event: Mapping[str, Any]) -> bool:
        if event.get("event") not in self.events:
            return False
        if self.queues and event.get("queue") not in self.queues:
            return False
        return not (self.functions and event.get("function") not in self.functions)

    @property
    def periodic(self) -> bool:
        return any(e in PERIODIC_EVENTS for e in self.events)


@dataclass(frozen=True)
class NotifySettings:
    notifiers: dict[str, dict[str, Any]]
    rules: tuple[Rule, ...]
    queue: str = DEFAULT_QUEUE
    samples: int = 5
    redact_args: bool = True
    check_interval_s: float = 30.0
    flush_interval_s: float = 0.5
    delivery_timeout_s: float = 15.0
    retries: int = 5
    retry_base_s: float = 2.0
    max_queues: int = 1000
    lane: int = 2  # threads of the delivery lane the CLI adds (0: none; serve the queue yourself)
    extra: dict[str, Any] = field(default_factory=dict)


_TOP = {"notifiers", "rules", "queue", "samples", "redact_args", "check_interval_s", "flush_interval_s",
        "delivery_timeout_s", "retries", "retry_base_s", "max_queues", "lane"}
_RULE = {"name", "events", "event", "notify", "queues", "functions", "threshold", "window_s"}


def _number(value: Any, what: str, *, positive: bool = True, integer: bool = False) -> Any:
    ok = isinstance(value, int if integer else (int, float)) and not isinstance(value, bool)
    if not ok or (positive and value <= 0) or (not positive and value < 0):
        kind = "whole number" if integer else "number"
        raise ValueError(f"notify config: {what} must be a {'positive' if positive else 'non-negative'} {kind}, "
                         f"got {value!r}")
    return value


def _names(value: Any, what: str) -> tuple[str, ...]:
    if value is None:
        return ()
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or not all(isinstance(v, str) and v for v in items):
        raise ValueError(f"notify config: {what} must be a name or a list of names, got {value!r}")
    return tuple(items)


def _options(name: str, raw: Any) -> dict[str, Any]:
    """A notifier's options; ``<option>_env: VAR`` reads ``<option>`` from the environment (secrets)."""
    if not isinstance(raw, Mapping):
        raise ValueError(f"notify config: notifier {name!r} must be an object with a 'type', got {raw!r}")
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if isinstance(key, str) and key.endswith("_env") and key != "_env":
            if not isinstance(value, str) or value not in os.environ:
                raise ValueError(f"notify config: notifier {name!r} reads {key[:-4]!r} from ${value}, which is not set")
            out[key[:-4]] = os.environ[value]
        else:
            out[key] = value
    return out


def _rule(index: int, raw: Any, notifiers: Mapping[str, Any]) -> Rule:
    if not isinstance(raw, Mapping):
        raise ValueError(f"notify config: rules[{index}] must be an object, got {raw!r}")
    unknown = set(raw) - _RULE
    if unknown:
        raise ValueError(f"notify config: rules[{index}] has unknown field(s) {sorted(unknown)}; "
                         f"expected {sorted(_RULE)}")
    events = _names(raw.get("events", raw.get("event")), f"rules[{index}].events")
    if not events:
        raise ValueError(f"notify config: rules[{index}] needs 'events' (some of {list(EVENTS)})")
    bad = [e for e in events if e not in EVENTS]
    if bad:
        raise ValueError(f"notify config: rules[{index}] has unknown event(s) {bad}; expected some of {list(EVENTS)}")
    name = raw.get("name", "+".join(events))
    if not isinstance(name, str) or not name:
        raise ValueError(f"notify config: rules[{index}].name must be a non-empty string, got {name!r}")
    notify = _names(raw.get("notify"), f"rules[{index}].notify")
    missing = [n for n in notify if n not in notifiers]
    if missing:
        raise ValueError(f"notify config: rule {name!r} notifies {missing}, which are not among the notifiers "
                         f"{sorted(notifiers)}")
    threshold = raw.get("threshold")
    if threshold is not None:
        threshold = _number(threshold, f"rule {name!r} threshold", positive=False)
    elif any(e in NEEDS_THRESHOLD for e in events):
        raise ValueError(f"notify config: rule {name!r} ({', '.join(events)}) needs a 'threshold' (waiting jobs "
                         f"for backlog, seconds for oldest_waiting)")
    if "backlog" in events and "oldest_waiting" in events:
        raise ValueError(f"notify config: rule {name!r}: backlog and oldest_waiting take different thresholds; "
                         f"give each its own rule")
    return Rule(name, events, notify, _names(raw.get("queues"), f"rule {name!r} queues"),
                _names(raw.get("functions"), f"rule {name!r} functions"), threshold,
                float(_number(raw.get("window_s", 60.0), f"rule {name!r} window_s")))


def parse(raw: Mapping[str, Any]) -> NotifySettings:
    """Validated settings from their dict form (see docs/operations.md for every field)."""
    if not isinstance(raw, Mapping):
        raise ValueError(f"notify config must be an object, got {type(raw).__name__}")
    unknown = set(raw) - _TOP
    if unknown:
        raise ValueError(f"notify config has unknown field(s) {sorted(unknown)}; expected {sorted(_TOP)}")
    notifiers_raw = raw.get("notifiers")
    if not isinstance(notifiers_raw, Mapping) or not notifiers_raw:
        raise ValueError("notify config needs 'notifiers': {name: {type: webhook|chat|email|<plugin>, ...}}")
    notifiers = {str(name): _options(str(name), value) for name, value in notifiers_raw.items()}
    rules_raw = raw.get("rules", [{"name": "failures", "events": ["job_failed", "job_abandoned"]}])
    if not isinstance(rules_raw, (list, tuple)):
        raise ValueError(f"notify config: rules must be a list, got {rules_raw!r}")
    rules = tuple(_rule(i, r, notifiers) for i, r in enumerate(rules_raw))
    names = [r.name for r in rules]
    if len(set(names)) != len(names):
        raise ValueError(f"notify config: rule names must be unique, got {names}")
    queue = raw.get("queue", DEFAULT_QUEUE)
    if not isinstance(queue, str) or not queue:
        raise ValueError(f"notify config: queue must be a queue name, got {queue!r}")
    return NotifySettings(
        notifiers, rules, queue,
        samples=_number(raw.get("samples", 5), "samples", positive=False, integer=True),
        redact_args=bool(raw.get("redact_args", True)),
        check_interval_s=float(_number(raw.get("check_interval_s", 30.0), "check_interval_s")),
        flush_interval_s=float(_number(raw.get("flush_interval_s", 0.5), "flush_interval_s")),
        delivery_timeout_s=float(_number(raw.get("delivery_timeout_s", 15.0), "delivery_timeout_s")),
        retries=_number(raw.get("retries", 5), "retries", positive=False, integer=True),
        retry_base_s=float(_number(raw.get("retry_base_s", 2.0), "retry_base_s")),
        max_queues=_number(raw.get("max_queues", 1000), "max_queues", integer=True),
        lane=_number(raw.get("lane", 2), "lane", positive=False, integer=True))


def load(source: Mapping[str, Any] | str | os.PathLike[str]) -> NotifySettings:
    """Settings from a dict, a path to a JSON file, or JSON text."""
    if isinstance(source, Mapping):
        return parse(source)
    text = str(source)
    if not text.lstrip().startswith("{"):
        try:
            text = Path(text).read_text()
        except OSError as exc:
            raise ValueError(f"cannot read the notify config file {str(source)!r}: {exc}") from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"the notify config is not valid JSON: {exc}") from None
    return parse(data)


__all__ = ["CONFIG_ENV", "DEFAULT_QUEUE", "EVENTS", "JOB_EVENTS", "PERIODIC_EVENTS", "NotifySettings", "Rule",
           "load", "parse"]
