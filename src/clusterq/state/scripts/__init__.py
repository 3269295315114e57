"""The Lua scripts, one per atomic transition. Loaded once from the ``.lua`` files beside this module.

Each script is run by SHA; a server that does not know it (a new node, a promoted replica, a flushed
script cache) answers NOSCRIPT and the caller re-sends the source (see :mod:`clusterq.state.store`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources


@dataclass(frozen=True)
class Script:
    name: str
    source: bytes
    sha: str


INCLUDE = b"--!include "
"""A line ``--!include NAME`` is replaced by ``lib/NAME.lua``: Redis scripts cannot load code, and a helper
that several transitions need (freeing a concurrency slot) must not be copied into each of them. A library
part may include others; each part is expanded once per script (at its first include line), so a part
both a script and another part include is defined once, before its first use."""


def _expand(source: bytes, name: str, seen: set[str] | None = None) -> bytes:
    seen = set() if seen is None else seen
    lines = []
    for line in source.split(b"\n"):
        if line.startswith(INCLUDE):
            part = line[len(INCLUDE):].strip().decode()
            if part in seen:
                continue
            seen.add(part)
            line = _expand(_library_part(name, part), name, seen)
        lines.append(line)
    return b"\n".join(lines)


_DIR = resources.files(__package__)
_PARTS: dict[str, bytes] = {}
"""Library parts read so far: most scripts include the same few, read once each (start-up time)."""


def _library_part(name: str, part: str) -> bytes:
    source = _PARTS.get(part)
    if source is None:
        # one step per joinpath: Python 3.10's Traversable takes a single child
        path = _DIR.joinpath("lib").joinpath(f"{part}.lua")
        if not path.is_file():
            raise FileNotFoundError(f"{name}.lua includes {part!r}, but scripts/lib/{part}.lua does not exist")
        source = _PARTS[part] = path.read_bytes().rstrip(b"\n")
    return source


def _load(name: str) -> Script:
    source = _expand(_DIR.joinpath(f"{name}.lua").read_bytes(), name)
    return Script(name=name, source=source, sha=hashlib.sha1(source).hexdigest())


ENQUEUE = _load("enqueue")
LEASE = _load("lease")
COMPLETE = _load("complete")
EXTEND = _load("extend")
RELEASE = _load("release")
REQUEUE_EXPIRED = _load("requeue_expired")
CANCEL = _load("cancel")
DELETE = _load("delete")
REQUEUE = _load("requeue")
SET_FIELDS = _load("set_fields")
TRIM = _load("trim")
DRAIN = _load("drain")
PURGE_REGISTRY = _load("purge_registry")
SCHEDULE = _load("schedule")
PROMOTE = _load("promote")
CRON_TICK = _load("cron_tick")
RESULTS = _load("results")
STOP = _load("stop")
TAKE = _load("take")
CONFIGURE = _load("configure")
DEBOUNCE = _load("debounce")

DEFER = _load("defer")
REGISTER = _load("register")
RESOLVE = _load("resolve")
ACK = _load("ack")
OUTBOX_DUE = _load("outbox_due")
GROUP_OPEN = _load("group_open")
GROUP_CLOSE = _load("group_close")
GROUP_DONE = _load("group_done")
BUFFER_INCR = _load("buffer_incr")
BUFFER_TAKE = _load("buffer_take")
BUFFER_ACK = _load("buffer_ack")
GAUGES = _load("gauges")

ALL: tuple[Script, ...] = (
    ENQUEUE, LEASE, COMPLETE, EXTEND, RELEASE, REQUEUE_EXPIRED, CANCEL, DELETE, REQUEUE, SET_FIELDS,
    TRIM, DRAIN, PURGE_REGISTRY, SCHEDULE, PROMOTE, RESULTS, CRON_TICK, STOP, TAKE, DEFER, REGISTER, RESOLVE, ACK,
    OUTBOX_DUE, GROUP_OPEN, GROUP_CLOSE, GROUP_DONE, CONFIGURE, DEBOUNCE, BUFFER_INCR, BUFFER_TAKE, BUFFER_ACK, GAUGES,
)
