"""The physical limit of a one-by-one producer: a bare redis-py loop, one RPUSH per round trip, whose
request has as many bytes as one clusterq enqueue sends (``payload_bytes``, measured by the bench). On a
cluster it talks to one primary directly (``params["key"]``: a key of that primary's slots), as a
clusterq producer's enqueue goes straight to the primary of its queue's slot."""

from __future__ import annotations

from typing import Any

import redis

from .common import timed

KEY = "bench:redis-py-baseline"


def enqueue(params: dict[str, Any]) -> dict[str, Any]:
    client = redis.Redis.from_url(params["url"])
    client.ping()
    payload = b"x" * max(1, int(params.get("payload") or 1))
    n = int(params["n"])
    key = params.get("key") or KEY  # on a cluster node: a key of one of its own slots
    seconds = timed(n, lambda: client.execute_command("RPUSH", key, payload))
    client.close()
    return {"seconds": seconds, "n": n}
