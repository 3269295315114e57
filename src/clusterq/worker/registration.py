"""Worker registrations: what a running worker publishes about itself, and how to list them.

Two global keys, each written with single-key commands (never in a script with a queue's keys): a
sorted set of worker names scored by when their registration expires, and one hash per worker.
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass
from typing import Any

from redis.typing import EncodableT, FieldT

from clusterq.connection.aio import AsyncClient
from clusterq.connection.sync import Client, ConnectionLike, connect
from clusterq.state import keys as K
from clusterq.state.aio_store import AsyncStore
from clusterq.state.plan import Plan, arun_plan, client_step, run_plan
from clusterq.state.store import Store
from clusterq.utils import decode_all

REGISTRATION_TTL_S = 60.0

_RUNNING_HERE: set[str] = set()
"""Instances of the workers running in this process (two workers of one process may not share a name)."""


@dataclass(frozen=True)
class WorkerInfo:
    """What a worker published about itself (see :func:`list_workers`)."""

    name: str
    host: str
    pid: int
    queues: list[str]
    processed: int
    failed: int
    current_job: str | None
    last_heartbeat_ms: int
    pool: str = ""


def register(client: Client, name: str, queues: list[str], details: dict[str, Any]) -> None:
    """Publish (or refresh) a worker's registration for :data:`REGISTRATION_TTL_S`."""
    now_ms = int(time.time() * 1000)
    info: dict[FieldT, EncodableT] = {
        "name": name, "host": socket.gethostname(), "pid": str(os.getpid()), "queues": json.dumps(queues),
        "heartbeat": str(now_ms), **{k: str(v) for k, v in details.items()}}
    key = K.worker(name)
    pipe = client.pipeline(transaction=False)
    pipe.hset(key, mapping=info)
    pipe.pexpire(key, int(REGISTRATION_TTL_S * 1000))
    pipe.zadd(K.WORKERS, {name: now_ms + int(REGISTRATION_TTL_S * 1000)})
    # Workers that died without unregistering would otherwise stay in the set forever.
    pipe.zremrangebyscore(K.WORKERS, "-inf", f"({now_ms}")
    pipe.execute()


def claim(client: Client, name: str, instance: str) -> str | None:
    """Take the name ``name`` for the worker ``instance``; None if taken, else why it cannot be.

    Two workers under one name would share one registration (the listing shows one, then none when either
    stops), so the second is refused, as RQ refuses it. A registration left by a worker that died without
    unregistering is taken over when it was on this host and its process is gone (or is this process: a
    container restarted with the same hostname and pid 1); one from another host blocks the name until
    it expires (:data:`REGISTRATION_TTL_S` after its last heartbeat).
    """
    key = K.worker(name)
    if client.hsetnx(key, "instance", instance):
        client.pexpire(key, int(REGISTRATION_TTL_S * 1000))
        _RUNNING_HERE.add(instance)
        return None
    values = client.hmget(key, ["instance", "host", "pid", "heartbeat"])
    holder, host, pid, heartbeat = (v.decode() if isinstance(v, bytes) else v for v in values)
    if holder == instance:
        return None
    if host == socket.gethostname() and pid and pid.isdigit() and _gone(int(pid), holder):
        client.hset(key, "instance", instance)  # its worker is gone: the name is free
        _RUNNING_HERE.add(instance)
        return None
    age_s = max(0.0, time.time() - int(heartbeat or 0) / 1000) if heartbeat else None
    seen = f", last heartbeat {age_s:.0f} s ago" if age_s is not None else ""
    return (f"another worker named {name!r} is running (host {host or '?'}, pid {pid or '?'}{seen}); give each "
            f"worker its own --name, or leave it out (a unique name is generated). A worker that died without "
            f"unregistering frees its name within {REGISTRATION_TTL_S:g} s")


def _gone(pid: int, holder: str | None) -> bool:
    """Whether the worker process ``pid`` of this host that holds a name is gone."""
    if pid == os.getpid():
        return holder not in _RUNNING_HERE  # a previous run of this pid (a restarted container), not a peer
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # someone else's process
    return False


def unregister(client: Client, name: str, instance: str | None = None) -> None:
    """Remove a worker's registration (only its own: ``instance`` must still hold the name)."""
    _RUNNING_HERE.discard(instance or "")
    if instance is not None:
        holder = client.hget(K.worker(name), "instance")
        if holder is not None and (holder.decode() if isinstance(holder, bytes) else holder) != instance:
            return
    pipe = client.pipeline(transaction=False)
    pipe.zrem(K.WORKERS, name)
    pipe.delete(K.worker(name))
    pipe.execute()


def list_workers(connection: ConnectionLike = None, limit: int = 1000) -> list[WorkerInfo]:
    """Workers whose registration is alive, read in bounded pages."""
    return run_plan(_list_workers_plan(limit), Store(connect(connection)))


async def list_workers_async(connection: AsyncClient, limit: int = 1000) -> list[WorkerInfo]:
    """:func:`list_workers` for asyncio (``connection``: a ``redis.asyncio`` client)."""
    return await arun_plan(_list_workers_plan(limit), AsyncStore(connection))


def _list_workers_plan(limit: int) -> Plan[list[WorkerInfo]]:
    now = int(time.time() * 1000)
    names = yield client_step("zrangebyscore", K.WORKERS, now, "+inf", start=0, num=limit)
    out = []
    fields = ["host", "pid", "queues", "processed", "failed", "current", "heartbeat", "pool"]
    for name in decode_all(names):
        values = yield client_step("hmget", K.worker(name), fields)
        host, pid, queues, processed, failed, current, heartbeat, pool = (
            v.decode() if isinstance(v, bytes) else v for v in values)
        if host is None:  # expired between the two reads
            continue
        out.append(WorkerInfo(name, host, int(pid or 0), json.loads(queues or "[]"), int(processed or 0),
                              int(failed or 0), current or None, int(heartbeat or 0), pool or ""))
    return out
