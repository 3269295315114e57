"""The flusher of counter buffers: a thread in a worker (``clusterq worker --with-buffers MODULE``) that
flushes each buffer every ``interval_s``. Any number of workers may flush the same buffer at once: a take
is atomic, so each pending key goes to one flusher (see :mod:`clusterq.api.buffer`)."""

from __future__ import annotations

import importlib
import logging
import os
import sys
import threading
import time
from collections.abc import Sequence

from clusterq.api.buffer import Buffer, BufferError
from clusterq.connection.sync import Client
from clusterq.signing import Signer, SigningKey

log = logging.getLogger(__name__)

MAX_BACKOFF_S = 30.0
"""A buffer whose flush failed whole (its target queue's node down) is tried again after its interval,
doubling up to this."""


def load_buffers(module: str) -> list[Buffer]:
    """The buffers a module declares: its ``BUFFERS`` list if it has one, else every module-level
    :class:`Buffer`. Two buffers of one name are an error (two flushers would disagree)."""
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        mod = importlib.import_module(module)
    except Exception as exc:
        raise BufferError(f"cannot import buffers module {module!r}: {type(exc).__name__}: {exc}") from None
    declared = getattr(mod, "BUFFERS", None)
    if declared is None:
        declared = [value for value in vars(mod).values() if isinstance(value, Buffer)]
    elif not isinstance(declared, (list, tuple)) or not all(isinstance(b, Buffer) for b in declared):
        raise BufferError(f"{module}.BUFFERS must be a list of clusterq.Buffer")
    if not declared:
        raise BufferError(f"module {module!r} declares no clusterq.Buffer")
    by_name: dict[str, Buffer] = {}
    for buffer in declared:
        if buffer.name in by_name and by_name[buffer.name] is not buffer:
            raise BufferError(f"module {module!r} declares two buffers named {buffer.name!r}")
        if buffer.spec.flush_to is None:
            raise BufferError(f"buffer {buffer.name!r} in {module!r} has no flush_to: a flusher cannot flush it")
        by_name[buffer.name] = buffer
    return list(by_name.values())


class BufferFlusher:
    """Flushes ``buffers`` (bound to ``client``) every ``interval_s`` each, until :meth:`stop`."""

    def __init__(self, client: Client, buffers: Sequence[Buffer],
                 signing_key: SigningKey | Signer | None = None) -> None:
        self.buffers = [buffer.bind(client) for buffer in buffers]
        self.signing_key = signing_key
        self._stop = threading.Event()

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        due = {b.name: 0.0 for b in self.buffers}
        backoff = {b.name: 0.0 for b in self.buffers}
        while not self._stop.is_set():
            now = time.monotonic()
            for buffer in self.buffers:
                if due[buffer.name] > now or self._stop.is_set():
                    continue
                try:
                    result = buffer.flush(signing_key=self.signing_key or buffer.signing_key)
                    backoff[buffer.name] = 0.0
                    if result.records:
                        log.debug("buffer %s: flushed %d keys in %d rounds", buffer.name, result.records, result.rounds)
                except Exception as exc:
                    backoff[buffer.name] = min(MAX_BACKOFF_S, max(backoff[buffer.name] * 2, buffer.spec.interval_s))
                    log.warning("buffer %s: flush failed (%s: %s); next try in %.1fs", buffer.name,
                                type(exc).__name__, exc, backoff[buffer.name])
                due[buffer.name] = time.monotonic() + max(buffer.spec.interval_s, backoff[buffer.name])
            self._stop.wait(max(0.0, min(due.values()) - time.monotonic()))
