"""Entry point of every benchmark subprocess: ``python -m peer_drivers.main SYSTEM ROLE PARAMS_JSON``.

Roles, each implemented by ``peer_drivers.<SYSTEM>``:

- ``enqueue``: enqueue ``n`` no-op jobs, one by one or in bulk; reports the seconds spent enqueuing
  (client set-up excluded).
- ``enqueue_async``: enqueue ``n`` no-op jobs from ``tasks`` concurrent asyncio tasks; reports the seconds
  and the per-enqueue latency percentiles.
- ``latency``: enqueue ``samples`` latency probes one at a time, ``pause_s`` apart.
- ``worker``: set up a worker, say READY, wait for GO on stdin, then work (``burst``: until the queues are
  empty, then report when it finished; otherwise until SIGTERM).

The protocol goes over the original stdout, in lines starting with ``@@BENCH``; everything the libraries
print is sent to stderr (the driver's log file).
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import sys
import time
import traceback
from typing import Any, TextIO

MARK = "@@BENCH"


def _protocol_stream() -> TextIO:
    """Keep the real stdout for the protocol and point fd 1 (and sys.stdout) at stderr."""
    stream = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return stream


def main(argv: list[str]) -> int:
    system, role, raw = argv[1], argv[2], argv[3]
    params: dict[str, Any] = json.loads(raw)
    proto = _protocol_stream()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")
    if params.get("url"):
        os.environ["BENCH_REDIS_URL"] = params["url"]

    def say(word: str, payload: dict[str, Any] | None = None) -> None:
        proto.write(f"{MARK} {word} {json.dumps(payload or {})}\n")
        proto.flush()

    def gate() -> None:
        say("READY")
        line = sys.stdin.readline()
        if line.strip() != "GO":
            raise SystemExit(f"expected GO on stdin, got {line!r}")

    try:
        module = importlib.import_module(f"peer_drivers.{system}")
        if role == "worker":
            result = module.worker(params, gate)
        elif role == "enqueue":
            result = module.enqueue(params)
        elif role == "enqueue_async":
            result = module.enqueue_async(params)
        elif role == "latency":
            result = module.latency(params)
        else:
            raise SystemExit(f"unknown role {role!r}")
    except BaseException as exc:
        if isinstance(exc, SystemExit) and exc.code in (0, None):
            raise
        traceback.print_exc()
        say("ERROR", {"error": f"{type(exc).__name__}: {exc}"[:500]})
        return 1
    result = dict(result or {})
    result.setdefault("done_at", time.time())
    say("RESULT", result)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
