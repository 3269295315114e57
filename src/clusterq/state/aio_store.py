"""The state store for asyncio: runs the very :class:`~clusterq.state.store.Call` objects the synchronous
:class:`~clusterq.state.store.Store` runs, built by the same call builders (``enqueue_call``, ``cancel_call``...).

So an enqueue from asyncio writes exactly the records a synchronous enqueue writes, and a sync
:class:`~clusterq.worker.Worker` runs the job. Only the I/O differs:

- Scripts run by SHA; a server that answers NOSCRIPT (a new or promoted node, a flushed script cache) is
  sent the source once with EVAL, which caches it there.
- Several calls go in one pipeline. The calls of the producer's auto-pipeline (``packed``: enqueues, safe
  to send twice) are each packed whole (:mod:`clusterq.connection.packed`), on a cluster too: there the
  store groups them by the primary that owns each call's slot (all of a call's keys are in one slot),
  writes each node's commands at once on one of that node's connections, the nodes concurrently (one
  round trip in all), and reads one reply per command. A reply that says the call belongs elsewhere or
  must wait (MOVED, ASK, TRYAGAIN, CLUSTERDOWN), a NOSCRIPT, and every call of a node whose connection
  failed are run again one by one through the cluster client, which follows redirections, refreshes its
  slot map and retries. A client with no slot map yet, or a refresh due, and a call that cannot be
  packed, send the whole batch the other way.
- Other batches go through redis.asyncio's own cluster pipeline: it splits the calls per node and sends
  the nodes' batches concurrently, routes EVALSHA by its keys, and follows MOVED/ASK, but encodes every
  argument in Python (hence the packed path above for the producer). Unlike the synchronous
  ``ClusterPipeline``, which asks the server ``COMMAND GETKEYS`` for every EVALSHA (hence the sync
  store's own per-node routing), it adds no round trip: measured with ``INFO commandstats`` on redis-py
  8.1, 100 EVALSHA over 3 primaries cost 0 ``COMMAND GETKEYS`` (sync: 100). ``tests/test_aio.py`` keeps
  that measurement as a test.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, cast

import redis
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.exceptions import AskError, ClusterDownError, ClusterError, NoScriptError, TryAgainError

from clusterq.connection.aio import (
    ASYNC_REDIS_ERRORS,
    AsyncClient,
    AsyncConnectionLike,
    check_connection_like,
    connect_async,
    disconnect_async,
    is_async_client,
)
from clusterq.connection.packed import aexchange, anode_exchange, pack_command, packable
from clusterq.connection.sync import is_proxy
from clusterq.exceptions import ServerError
from clusterq.state import keys as K
from clusterq.state.store import (
    JOB_FIELDS,
    LATEST_FIELDS,
    SLOT_MIGRATION_WAIT_S,
    Call,
    MigrationBackoff,
    WaitRounds,
    slot_is_moving,
)
from clusterq.utils import decode_all

_AUTO_PIPELINE_ATTR = "_clusterq_auto_pipeline"

# Error replies of a call sent straight to a cluster node that the cluster client knows how to get past (a
# redirection, a slot being migrated, a failover in progress; MovedError is an AskError) or that needs the
# script's source (NOSCRIPT): the call is run again through the client.
_RUN_AGAIN = (NoScriptError, AskError, TryAgainError, ClusterDownError)


def _text(value: Any) -> str:
    return value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else str(value)


def _refresh_due(client: AsyncRedisCluster) -> bool:
    """True if the cluster client has no slot map yet or wants its topology refreshed: it does that at its
    next command, which a batch sent straight to the nodes would not give it. ``_initialize_due`` is
    redis-py 8's check (a refresh asked for but paced is not due yet); older ones only have the flag."""
    due = getattr(client, "_initialize_due", None)
    if callable(due):
        return bool(due())
    return bool(getattr(client, "_initialize", False))


class AutoPipeline:
    """Coalesces the calls that concurrent tasks make in one event-loop tick into one pipeline.

    :meth:`run` queues the call and, for the first call of a tick, schedules a flush with ``call_soon``:
    it runs once every task that was ready in this tick has had its turn, so a hundred tasks that each
    await an enqueue send one pipeline (one round trip per node, :meth:`AsyncStore.run_many`) instead of a
    hundred round trips. Each caller awaits its own future and gets its own reply, or its own exception
    (a call's error never reaches another call of the batch). A lone call is sent on its own, as before,
    one loop iteration later. Batches are not waited for: the next tick's calls go out while a previous
    batch is still in flight, on another connection of the client's pool.
    """

    def __init__(self, store: AsyncStore) -> None:
        self.store = store
        self._calls: list[tuple[Call, asyncio.Future[Any]]] = []
        self._tasks: set[asyncio.Task[None]] = set()  # in flight: kept referenced until done

    def run(self, call: Call) -> asyncio.Future[Any]:
        """The call's reply (an awaitable), sent with the other calls made in this tick."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._calls.append((call, future))
        if len(self._calls) == 1:
            loop.call_soon(self._flush)
        return future

    def _flush(self) -> None:
        batch, self._calls = self._calls, []
        task = asyncio.ensure_future(self._send(batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, batch: list[tuple[Call, asyncio.Future[Any]]]) -> None:
        try:
            results = await self.store.run_many([call for call, _ in batch], raise_on_error=False, packed=True)
        except asyncio.CancelledError:  # the loop is shutting down: so are the callers
            for _, future in batch:
                future.cancel()
            raise
        except Exception as exc:  # handed to every caller of the batch, each raises it
            results = [exc] * len(batch)
        for (_, future), result in zip(batch, results):
            if future.done():  # the caller was canceled (its call may have run)
                continue
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)


class AsyncStore:
    """Runs transitions on a ``redis.asyncio`` client (standalone, Sentinel master or cluster)."""

    def __init__(self, client: AsyncClient, *, slot_migration_wait_s: float = SLOT_MIGRATION_WAIT_S) -> None:
        self.client = client
        self.slot_migration_wait_s = slot_migration_wait_s
        self._auto_pipeline: AutoPipeline | None = None

    @property
    def auto_pipeline(self) -> AutoPipeline:
        """The :class:`AutoPipeline` of this store's client (shared by every store on that client)."""
        if self._auto_pipeline is None:
            shared = getattr(self.client, _AUTO_PIPELINE_ATTR, None)
            if not isinstance(shared, AutoPipeline):
                shared = AutoPipeline(self)
                try:  # kept on the client (a cycle the collector frees with it), not in a global map
                    setattr(self.client, _AUTO_PIPELINE_ATTR, shared)
                except AttributeError:  # a client that takes no attributes: this store's own
                    pass
            self._auto_pipeline = shared
        return self._auto_pipeline

    # --- running scripts ------------------------------------------------------------------------

    async def run(self, call: Call) -> Any:
        """Run one transition; on NOSCRIPT send the source (which caches it on that server).

        A call refused because its cluster slot is being migrated (TRYAGAIN) is retried with a back-off
        for up to ``slot_migration_wait_s``, as the synchronous store does.
        """
        backoff = MigrationBackoff(self.slot_migration_wait_s)
        while True:
            try:
                return await self._run_once(call)
            except (TryAgainError, ClusterError) as exc:
                delay = backoff.next_delay() if slot_is_moving(exc) else None
                if delay is None:
                    raise
                await asyncio.sleep(delay)

    async def _run_once(self, call: Call) -> Any:
        n = len(call.keys)
        try:
            return await self.client.evalsha(call.script.sha, n, *call.keys, *call.args)
        except NoScriptError:
            return await self.client.eval(call.script.source.decode(), n, *call.keys, *call.args)

    async def run_many(self, calls: Sequence[Call], *, raise_on_error: bool = True, packed: bool = False
                       ) -> list[Any]:
        """Run several transitions in one pipeline (per node on a cluster); results in the order of ``calls``.

        With ``raise_on_error=False`` a failed call's slot holds its exception instead of raising, so
        the caller can tell which transitions happened. ``packed``: the calls are safe to send twice (an
        enqueue), and each is packed whole (:mod:`clusterq.connection.packed`) when the client allows it;
        on a cluster they are sent per node (:meth:`_cluster_packed`).
        """
        if not calls:
            return []
        results: list[Any] | None = None
        if packed and isinstance(self.client, AsyncRedisCluster):
            results = await self._cluster_packed(calls)
        elif packed:
            commands = self._packed_commands(calls)
            if commands is not None:
                results = await self._pipeline(calls, raise_on_error, commands)
        if results is None:
            if len(calls) == 1:
                results = [await self._run_or_error(calls[0])]
            else:
                results = await self._pipeline(calls, raise_on_error)
        if raise_on_error:
            for result in results:
                if isinstance(result, BaseException):
                    raise result
        return results

    def _packed_commands(self, calls: Sequence[Call]) -> list[bytes] | None:
        """The calls packed whole, or None if the client or an argument cannot be sent so."""
        if isinstance(self.client, AsyncRedisCluster) or not packable(self.client):
            return None
        commands = []
        for call in calls:
            command = pack_command(("EVALSHA", call.script.sha, len(call.keys), *call.keys, *call.args))
            if command is None:
                return None
            commands.append(command)
        return commands

    async def _cluster_packed(self, calls: Sequence[Call]) -> list[Any] | None:
        """The calls packed whole and sent straight to the primaries that own their slots: per node one
        write on one of its connections (:func:`~clusterq.connection.packed.anode_exchange`), the nodes
        concurrently; results in the order of ``calls``. None, before anything is sent, when the batch
        must go through redis.asyncio's cluster pipeline instead: a client that may not be written to so
        (:func:`~clusterq.connection.packed.packable`), one with no slot map yet or a topology refresh due
        (the client runs it on the next command it sends), a slot no node covers, a call that cannot be
        packed.

        Each call's keys are in one slot (:mod:`clusterq.state.keys` builds them so), so its first key
        names its node. The calls are safe to send twice (enqueues with their ids set), so a call whose
        node answered MOVED, ASK, TRYAGAIN, CLUSTERDOWN or NOSCRIPT, and every call of a node whose
        connection failed (which of them ran is unknown), is run again through :meth:`_run_or_error`: the
        cluster client follows redirections, refreshes its slot map and retries, and :meth:`run` sends a
        missing script's source. Any other error reply stays in its call's place.
        """
        client = cast("AsyncRedisCluster", self.client)
        if not packable(client) or _refresh_due(client):
            return None
        groups: dict[str, tuple[Any, list[int], list[bytes]]] = {}
        nodes: dict[str, Any] = {}  # first key -> node: a batch's calls are mostly to a few queues
        try:
            for index, call in enumerate(calls):
                key = call.keys[0]
                node: Any = nodes.get(key)
                if node is None:
                    node = nodes[key] = client.get_node_from_key(key)
                command = pack_command(("EVALSHA", call.script.sha, len(call.keys), *call.keys, *call.args))
                if command is None:
                    return None
                group = groups.get(node.name)
                if group is None:
                    group = groups[node.name] = (node, [], [])
                group[1].append(index)
                group[2].append(command)
        except ASYNC_REDIS_ERRORS:  # a slot no node covers (SlotNotCoveredError): the client reinitializes
            return None
        batches = list(groups.values())
        outcomes: list[Any]
        if len(batches) == 1:  # no gather: its tasks would cost more than the one exchange
            try:
                outcomes = [await anode_exchange(batches[0][0], batches[0][2])]
            except ASYNC_REDIS_ERRORS as exc:
                outcomes = [exc]
        else:
            outcomes = await asyncio.gather(*(anode_exchange(node, commands) for node, _, commands in batches),
                                            return_exceptions=True)
        results: list[Any] = [None] * len(calls)
        again: list[int] = []
        for (_, indexes, _), outcome in zip(batches, outcomes):
            if isinstance(outcome, BaseException):
                if not isinstance(outcome, ASYNC_REDIS_ERRORS):
                    raise outcome  # a bug or a cancellation, not the node's failure: not hidden as a result
                again += indexes
                continue
            for index, reply in zip(indexes, outcome):
                results[index] = reply
                if isinstance(reply, _RUN_AGAIN):
                    again.append(index)
        for index in sorted(again):  # in the callers' order, one by one: the client's retries pace them
            results[index] = await self._run_or_error(calls[index])
        return results

    async def _pipeline(self, calls: Sequence[Call], raise_on_error: bool, packed: list[bytes] | None = None
                        ) -> list[Any]:
        try:
            if packed is not None:
                results = await aexchange(self.client, packed)
            else:
                pipe = self.client.pipeline(transaction=False)
                for call in calls:
                    pipe.execute_command("EVALSHA", call.script.sha, len(call.keys), *call.keys, *call.args)
                results = list(await pipe.execute(raise_on_error=False))
        except ASYNC_REDIS_ERRORS as exc:
            # A server stayed unreachable through the client's own retries. Which calls ran is unknown:
            # to tell the caller, try each on its own (each retried by the client).
            if raise_on_error:
                raise
            if len(calls) == 1:  # that was the call on its own
                return [exc]
            return [await self._run_or_error(call) for call in calls]
        for index, result in enumerate(results):
            if isinstance(result, NoScriptError) or (isinstance(result, BaseException) and slot_is_moving(result)):
                results[index] = await self._run_or_error(calls[index])
        return results

    async def _run_or_error(self, call: Call) -> Any:
        try:
            return await self.run(call)
        except ASYNC_REDIS_ERRORS as exc:
            return exc

    async def run_and_wait(self, calls: Sequence[Call], marker_key: str, replicas: int,
                           timeout_ms: int) -> tuple[list[Any], int]:
        """Run ``calls`` (all in one slot), then ``WAIT`` for ``replicas`` replicas; return (results, how
        many replicas acknowledged). As :meth:`clusterq.state.store.Store.run_and_wait`: the calls, a bump
        of ``marker_key`` and the WAIT go in one pipeline, hence on one connection to the slot's primary
        (on a cluster the WAIT is sent to the node that owns ``marker_key``, and redis.asyncio's cluster
        pipeline sends each node's commands on one connection)."""
        if is_proxy(self.client):
            raise ServerError("wait_replicas needs WAIT, which a proxy does not relay (it would close the "
                              "connection); use wait_replicas=0 through a proxy")
        cluster = isinstance(self.client, AsyncRedisCluster)
        rounds = WaitRounds(calls, self.slot_migration_wait_s, cluster)
        while True:
            pipe = self.client.pipeline(transaction=False)
            for command in rounds.commands():
                pipe.execute_command(*command)
            pipe.execute_command("HINCRBY", marker_key, "qd", 1)
            if cluster:
                node = self.client.get_node_from_key(marker_key)  # type: ignore[union-attr]
                pipe.execute_command("WAIT", replicas, timeout_ms, target_nodes=node)
            else:
                pipe.execute_command("WAIT", replicas, timeout_ms)
            action, value = rounds.settle(list(await pipe.execute(raise_on_error=False)))
            if action == "done":
                return rounds.results, int(value)
            if action == "moved":
                await self.client.nodes_manager.initialize()  # type: ignore[union-attr]
            elif action == "sleep":
                await asyncio.sleep(value)

    # --- reads (never write) ----------------------------------------------------------------------

    async def read_job(self, qk: K.QueueKeys, job_id: str) -> dict[str, bytes] | None:
        """The job's fields (only those set), or None if it has no record. Bounded: a fixed field list."""
        key = qk.job(job_id)
        try:
            values = await self.client.hmget(key, JOB_FIELDS)
        except redis.ResponseError as exc:
            if "WRONGTYPE" not in str(exc):
                raise
            kind = await self.client.type(key)
            kind = kind.decode() if isinstance(kind, bytes) else str(kind)
            return {"s": b"failed", "f": b"", "e": f"malformed job record: {key} holds a {kind}".encode()}
        fields = {name: value for name, value in zip(JOB_FIELDS, values) if value is not None}
        return cast("dict[str, bytes]", fields) or None  # decode_responses=False: values are bytes

    async def read_latest(self, qk: K.QueueKeys, job_id: str) -> list[Any]:
        """The record's latest-result fields (:data:`~clusterq.state.store.LATEST_FIELDS`). One HMGET."""
        return list(await self.client.hmget(qk.job(job_id), LATEST_FIELDS))

    async def control(self, qk: K.QueueKeys) -> dict[str, str]:
        """The queue's control hash (suspend flag, limits). Bounded: one field per configured limit."""
        raw = await self.client.hgetall(qk.control)
        return {_text(k): _text(v) for k, v in raw.items()}

    async def exists_many(self, keys: Sequence[str]) -> list[int]:
        """As :meth:`clusterq.state.store.Store.exists_many`."""
        if not keys:
            return []
        pipe = self.client.pipeline(transaction=False)
        for key in keys:
            pipe.exists(key)
        return [int(hit) for hit in await pipe.execute()]

    async def first_members(self, keys: Sequence[str], count: int) -> list[Any]:
        """As :meth:`clusterq.state.store.Store.first_members`."""
        if not keys:
            return []
        pipe = self.client.pipeline(transaction=False)
        for key in keys:
            pipe.zrange(key, 0, count - 1)
        try:
            return list(await pipe.execute(raise_on_error=False))
        except ASYNC_REDIS_ERRORS as exc:
            return [exc] * len(keys)

    async def read_many(self, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
        """See :meth:`clusterq.state.store.Store.read_many`."""
        pipe = self.client.pipeline(transaction=False)
        for command in commands:
            pipe.execute_command(*command)
        return list(await pipe.execute())

    async def count(self, qk: K.QueueKeys) -> int:
        """Jobs waiting in the queue: the list length less canceled/deleted ids still in it. O(1)."""
        pipe = self.client.pipeline(transaction=False)
        pipe.llen(qk.pending)
        pipe.zcard(qk.prio)
        pipe.hmget(qk.stats, ("tomb", "lwait"))
        length, prio, (tomb, aside) = await pipe.execute()
        return max(0, int(length) + int(prio) + int(aside or 0) - int(tomb or 0))

    async def job_ids(self, qk: K.QueueKeys, offset: int, length: int) -> list[str]:
        """A page of the waiting ids, in order. ``length`` is the caller's bounded page size."""
        ids = decode_all(await self.client.lrange(qk.pending, offset, offset + length - 1))
        if len(ids) < length:  # past the list: go on in the prio set, in the order the jobs will run
            start = max(0, offset - int(await self.client.llen(qk.pending)))
            ids += decode_all(await self.client.zrange(qk.prio, start, start + length - len(ids) - 1))
        return ids


class LazyStore:
    """The store an :class:`~clusterq.aio.AsyncQueue` or :class:`~clusterq.aio_job.AsyncJob` talks through.

    A client it was given is used as is and never closed here: the application owns it. A URL (or None)
    is opened on first use, in the running event loop, and closed by :meth:`aclose`; used later from
    another event loop (a second ``asyncio.run``, a reloaded server), it opens a fresh client there,
    because asyncio connections cannot cross loops.
    """

    def __init__(self, connection: AsyncConnectionLike) -> None:
        check_connection_like(connection)
        self._url: str | None = None
        self._store: AsyncStore | None = None
        self._owned = not is_async_client(connection)
        if self._owned:
            self._url = cast("str | None", connection)
        else:
            self._store = AsyncStore(cast("AsyncClient", connection))
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock: asyncio.Lock | None = None

    async def get(self) -> AsyncStore:
        """The store, opening its client now if this is the first use in the running event loop."""
        if not self._owned:
            assert self._store is not None
            return self._store
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._loop, self._lock, self._store = loop, asyncio.Lock(), None
        assert self._lock is not None
        async with self._lock:  # concurrent first uses open one client, not one each
            if self._store is None:
                self._store = AsyncStore(await connect_async(self._url))
        return self._store

    async def aclose(self) -> None:
        """Close the client opened from a URL; a client that was given stays open."""
        if not self._owned or self._store is None:
            return
        store, self._store = self._store, None
        if self._loop is asyncio.get_running_loop():  # a client of a finished loop cannot be closed from here
            await disconnect_async(store.client)
