"""Wake an idle worker the moment one of its queues gets work, without busy polling.

Enqueue (and every other push onto a pending list) publishes on the queue's sharded channel when the
list goes from empty to non-empty. A worker subscribes to its queues' channels before it first polls,
so a push that happens after a poll saw the queue empty is always heard.

A blocking read can wait on one connection only, and on a cluster the channels live on different nodes.
So there is one subscriber connection per node and one small reader thread per connection: a message on
any node wakes the worker at once (a single reader polling the nodes in turn would add up to its
timeout per node to the wake-up delay). The worker still polls every few seconds as a fallback, so a
lost message (failover, reconnect) only delays work, never strands it.

The same channel carries stop requests (``x`` followed by the job id and reason, from stop.lua): the
worker running that job hears it at once. A lost one is caught by the heartbeat (extend.lua reports a
requested stop).

When a cluster slot moves to another node, its old owner ends the subscriptions of the slot's channels
with an ``sunsubscribe`` it sends by itself. A reader that gets one marks the waker broken, so the
worker subscribes again, on the new owner (a stale slot map, answered with ``MOVED``, is refreshed
first).
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import redis
from redis.cluster import RedisCluster
from redis.exceptions import MovedError

from clusterq.connection.sync import Client
from clusterq.state.keys import CONTROL_CHANNEL, QueueKeys

log = logging.getLogger(__name__)

READ_TIMEOUT_S = 1.0
"""How long a reader blocks on its socket before checking whether it should stop."""


class Waker:
    """Subscribes to the wake channels of some queues and tells which of them were signalled."""

    def __init__(self, client: Client, queues: list[str], notify: Callable[[], None] | None = None,
                 on_stop: Callable[[str, str, str], None] | None = None, control: bool = False) -> None:
        self._client = client
        self._notify = notify
        self._on_stop = on_stop
        self._channels: dict[str, str | None] = {QueueKeys(q).wake_channel: q for q in queues}
        if control:  # the global suspend flag's channel: sets control_changed
            self._channels[CONTROL_CHANNEL] = None
        self.control_changed = False
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._scheduled: set[str] = set()  # queues whose earliest scheduled job changed (a partition sweep)
        self._ready: set[str] = set()
        self._pubsubs: list[Any] = []
        self._threads: list[threading.Thread] = []
        self._closed = False
        self.broken = False
        self.schedule_changed = False

    def _groups(self) -> dict[Any, list[str]]:
        """Channels grouped by the client (node) that serves them."""
        if not isinstance(self._client, RedisCluster):
            return {self._client: list(self._channels)}
        groups: dict[Any, list[str]] = defaultdict(list)
        by_name: dict[str, Any] = {}
        for channel in self._channels:
            node = self._client.get_node_from_key(channel)
            if node.redis_connection is None:
                self._client.get_redis_connection(node)
            by_name.setdefault(node.name, node.redis_connection)
            groups[by_name[node.name]].append(channel)
        return groups

    def start(self) -> None:
        """Subscribe on every node (synchronously, so no signal after this returns can be missed)."""
        for attempt in range(3):
            try:
                self._subscribe_all()
                break
            except MovedError:
                self._close_pubsubs()
                if attempt == 2 or not isinstance(self._client, RedisCluster):
                    raise
                # A slot moved and our slot map is stale: read the cluster's map again, then retry.
                self._client.nodes_manager.initialize()
        for thread in self._threads:
            thread.start()

    def _subscribe_all(self) -> None:
        for node_client, channels in self._groups().items():
            # Subscription messages are not ignored: a server-sent sunsubscribe means a slot moved.
            pubsub = node_client.pubsub(ignore_subscribe_messages=False)
            self._pubsubs.append(pubsub)
            for channel in channels:  # one per call: on a cluster one SSUBSCRIBE may not span slots
                pubsub.ssubscribe(channel)
            # Read the confirmations now, so a failure to subscribe surfaces here, not later.
            confirmed = 0
            while confirmed < len(channels):
                reply = pubsub.parse_response(block=True, timeout=5.0)
                if reply is None:
                    raise redis.TimeoutError("no SSUBSCRIBE confirmation within 5 s")
                if reply[0] in (b"ssubscribe", "ssubscribe"):
                    confirmed += 1
            thread = threading.Thread(target=self._read, args=(pubsub,), name="clusterq-waker", daemon=True)
            self._threads.append(thread)

    def _close_pubsubs(self) -> None:
        for pubsub in self._pubsubs:
            try:
                pubsub.close()
            except Exception:
                pass
        self._pubsubs.clear()
        self._threads.clear()

    def _read(self, pubsub: Any) -> None:
        try:
            while not self._closed:
                message = pubsub.get_message(timeout=READ_TIMEOUT_S)
                if message is None:
                    continue
                kind = message.get("type")
                if kind in (b"sunsubscribe", "sunsubscribe"):
                    raise redis.ConnectionError(f"the server ended the subscription to {message.get('channel')!r} "
                                                "(its slot moved to another node)")
                if kind not in (b"smessage", "smessage", b"message", "message"):
                    continue
                channel = message.get("channel")
                if isinstance(channel, bytes):
                    channel = channel.decode("utf-8", "surrogateescape")
                queue = self._channels.get(channel)
                if channel == CONTROL_CHANNEL:
                    self.control_changed = True
                    self._event.set()
                    if self._notify is not None:
                        self._notify()
                data = message.get("data")
                if (isinstance(data, bytes) and data[:1] == b"x") or (isinstance(data, str) and data[:1] == "x"):
                    self._stop_requested(queue, data[1:])
                    continue
                if data in (b"s", "s"):
                    self.schedule_changed = True  # an earlier scheduled job: maintenance should look now
                    if queue is not None:
                        with self._lock:
                            self._scheduled.add(queue)
                if queue is not None:
                    with self._lock:
                        self._ready.add(queue)
                    self._event.set()
                    if self._notify is not None:
                        self._notify()
        except Exception as exc:
            if not self._closed:
                log.info("wake-up subscription lost (%s: %s); falling back to polling until it is rebuilt",
                         type(exc).__name__, exc)
                self.broken = True
                self._event.set()
                if self._notify is not None:
                    self._notify()

    def _stop_requested(self, queue: str | None, payload: bytes | str) -> None:
        """``x["<job id>", "<reason>"]`` (stop.lua): a job of this queue is to be stopped."""
        if queue is None or self._on_stop is None:
            return
        try:
            job_id, reason = json.loads(payload)
        except (ValueError, TypeError):
            log.warning("ignoring a malformed stop message on queue %r: %r", queue, payload[:100])
            return
        self._on_stop(queue, str(job_id), str(reason))

    def wait(self, timeout_s: float) -> set[str]:
        """Block until a queue is signalled or ``timeout_s`` passes; return (and forget) the signalled."""
        self._event.wait(timeout_s)
        return self.take()

    def take(self) -> set[str]:
        with self._lock:
            ready, self._ready = self._ready, set()
            self._event.clear()
        return ready

    def take_scheduled(self) -> set[str]:
        """The queues that said an earlier job was scheduled since the last call (and forget them)."""
        with self._lock:
            scheduled, self._scheduled = self._scheduled, set()
        return scheduled

    def interrupt(self) -> None:
        """Wake a waiting worker now (used on shutdown)."""
        self._event.set()

    def close(self) -> None:
        """Stop the readers at once, then close their subscriptions.

        A reader blocks in a read of up to READ_TIMEOUT_S; shutting its socket down ends that read now (a
        worker's stop no longer waits it out). Each reader is joined before its subscription is closed:
        closing hands the connection back to the client's pool, and a reader still reading from it would
        take the reply to another thread's command."""
        self._closed = True
        self._event.set()
        threads = list(self._threads)
        for pubsub in self._pubsubs:
            sock = getattr(getattr(pubsub, "connection", None), "_sock", None)
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass  # already closed
        for thread in threads:
            if thread.is_alive():
                thread.join(timeout=READ_TIMEOUT_S + 1)
        self._close_pubsubs()
