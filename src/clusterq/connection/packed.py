"""Commands sent already packed: the producer's hot paths, without redis-py's per-argument encoding.

redis-py encodes a command one argument at a time (a Python call per argument, then ``hiredis``'s packer
if it is installed). An enqueue script call has 19 arguments per call, thousands in an
``enqueue_many`` chunk, so that encoding is most of a producer's client time. :func:`pack_command`
packs a whole command in one call (``hiredis.pack_command`` when hiredis is installed, else a join of
the already-encoded arguments), and :func:`exchange` sends packed commands on one of a client's pooled
connections and reads their replies, with the connection's own :class:`~redis.retry.Retry` (the
connection is closed and the exchange retried on the errors it retries, as redis-py does for a command
or a pipeline).

Only a plain ``redis.Redis`` (or a cluster node's one) whose connections encode text as strict UTF-8, and
that is not a single-connection client, is used this way (:func:`packable`), and likewise an asyncio
``RedisCluster``, whose nodes' connections :func:`anode_exchange` writes; anything else, and any argument
that is not ``bytes``, ``str``, ``int`` or ``float``, goes through redis-py as before, so its errors
(``DataError`` for a bool or None) are redis-py's own.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import redis
import redis.asyncio
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

_hiredis_pack: Callable[[tuple[Any, ...]], bytes] | None
try:
    from hiredis import pack_command as _hiredis_pack
except ImportError:  # pragma: no cover - hiredis is an optional extra ("fast")
    _hiredis_pack = None

_HIREDIS_PARSER: Any = None
"""redis-py's hiredis reply parser class: a kept connection that uses it is written and read bare
(:func:`exchange_one`); None in another redis-py layout (the public path only)."""
try:
    from redis._parsers.hiredis import _HiredisParser as _HIREDIS_PARSER
except ImportError:  # pragma: no cover
    pass

_MARK = "_clusterq_packable"
_UTF8 = ("utf-8", "utf8", "utf_8")


def pack_command(args: Sequence[Any]) -> bytes | None:
    """``args`` as one RESP command, or None if an argument is not ``bytes``, ``str``, ``int`` or
    ``float`` (or a str cannot be UTF-8 encoded): the caller sends it through redis-py, which says what is
    wrong with it. Numbers are written as redis-py writes them (``str(int)``, ``repr(float)``)."""
    if _hiredis_pack is not None:
        try:
            return _hiredis_pack(tuple(args))
        except (TypeError, ValueError, UnicodeError):
            return None
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        kind = type(arg)
        if kind is not bytes:
            if kind is str:
                try:
                    arg = arg.encode()
                except UnicodeError:
                    return None
            elif kind is int:
                arg = b"%d" % arg
            elif kind is float:
                arg = repr(arg).encode()
            else:  # bool, None, subclasses, memoryview: redis-py's rules
                return None
        out.append(b"$%d\r\n%s\r\n" % (len(arg), arg))
    return b"".join(out)


def packable(client: Any) -> bool:
    """True if packed commands may be sent on ``client``'s connections: a ``redis.Redis`` or
    ``redis.asyncio.Redis`` whose ``execute_command`` is redis-py's own (no instrumentation that wraps it
    would be bypassed), that has no single dedicated connection, and whose connections encode text as
    strict UTF-8 (what :func:`pack_command` writes); or a ``redis.asyncio`` ``RedisCluster`` whose
    ``execute_command`` is its own and whose encoder writes strict UTF-8 (its nodes' connections are made
    with its options). Checked once per client."""
    known = getattr(client, _MARK, None)
    if known is not None:
        return bool(known)
    base = redis.asyncio.Redis if isinstance(client, redis.asyncio.Redis) else redis.Redis
    ok = False
    if isinstance(client, AsyncRedisCluster):
        encoder = getattr(client, "encoder", None)
        ok = (type(client).execute_command is AsyncRedisCluster.execute_command
              and str(getattr(encoder, "encoding", "")).lower() in _UTF8
              and getattr(encoder, "encoding_errors", "") == "strict")
    elif (isinstance(client, base) and type(client).execute_command is base.execute_command
            and getattr(client, "connection", None) is None
            and not getattr(client, "single_connection_client", False)):
        kwargs = getattr(client.connection_pool, "connection_kwargs", {})
        ok = (str(kwargs.get("encoding", "utf-8")).lower() in _UTF8
              and kwargs.get("encoding_errors", "strict") == "strict")
    try:
        setattr(client, _MARK, ok)
    except AttributeError:
        pass
    return ok


def _get_connection(pool: Any) -> Any:
    try:
        return pool.get_connection()
    except TypeError:  # redis-py < 5.3 names the command
        return pool.get_connection("EVALSHA")


def _joined(packed: Sequence[bytes]) -> Sequence[bytes]:
    """The commands as one buffer: redis-py's ``send_packed_command`` makes one ``sendall`` per item, and
    each system call to the server's socket may wake it (and switch to it) once more."""
    return packed if len(packed) < 2 else (b"".join(packed),)


def _send_and_read(conn: Any, packed: Sequence[bytes], replies: int) -> list[Any]:
    conn.send_packed_command(_joined(packed))
    return _read_replies(conn, replies)


def _read_replies(conn: Any, replies: int) -> list[Any]:
    results: list[Any] = []
    for _ in range(replies):
        try:
            results.append(conn.read_response())
        except ResponseError as exc:  # an error reply: the connection stays in step
            results.append(exc)
    return results


WRITES_AHEAD = 2
"""Writes of one :func:`exchange` sent before the first one's replies are read: the server always has
the next write to run while the client reads a reply and sends another, and other clients still wait
for at most about two writes' work."""


def exchange(client: Any, packed: Sequence[bytes], while_waiting: Callable[[], None] | None = None,
             writes: Sequence[int] | None = None) -> list[Any]:
    """Send the packed commands on one of ``client``'s connections, one reply each, in order; an error
    reply is returned in its command's place (as redis-py's pipeline does with ``raise_on_error=False``).
    A connection or timeout error the connection's ``Retry`` covers closes the connection and sends again
    every command whose reply was not read yet (what redis-py does for a pipeline: the callers' scripts
    are safe to repeat).

    ``writes``: how many of the commands go in each write, in order (they add up to ``len(packed)``;
    None: all in one). The server runs everything it has read from one connection before it serves
    another client, so a write's work is how long the others wait; here a write is sent only when the
    replies of the one :data:`WRITES_AHEAD` before it are read, so the server gets them one at a time
    (and never runs out while the client turns round).

    ``while_waiting`` is called once, after the first writes are sent and before a reply is read: work
    that overlaps the server's (a worker reads its children's outcomes meanwhile). It must not use this
    connection; what it raises is raised once the replies are read (so none is left unread)."""
    parts: list[Sequence[bytes]] = []
    at = 0
    for size in writes or (len(packed),):
        parts.append(_joined(packed[at : at + size]))
        at += size
    pool = client.connection_pool
    conn = _get_connection(pool)
    results: list[Any] = []
    answered = 0  # writes whose replies are read (a retry sends again from there)
    failures: list[BaseException] = []

    def attempt() -> list[Any]:
        nonlocal answered, while_waiting
        sent = answered
        while sent < len(parts) and sent < answered + WRITES_AHEAD:
            conn.send_packed_command(parts[sent])
            sent += 1
        if while_waiting is not None:
            work, while_waiting = while_waiting, None  # the first attempt only (outside the Retry: not resent)
            try:
                work()
            except BaseException as exc:  # raised once the replies are read
                failures.append(exc)
        while answered < len(parts):
            replies = _read_replies(conn, (writes or (len(packed),))[answered])
            results.extend(replies)
            answered += 1
            if sent < len(parts):
                conn.send_packed_command(parts[sent])
                sent += 1
        return results

    try:
        conn.retry.call_with_retry(attempt, lambda error: conn.disconnect())
    finally:
        pool.release(conn)
    if failures:
        raise failures[0]
    return results


_HELD = "_clusterq_held"
HELD_MIN_POOL = 16
"""A client's pool must allow at least this many connections for :func:`exchange_one` to keep one of
them out of it (a smaller pool is left whole to its other users)."""


class _Held:
    """One connection taken out of a client's pool once and kept for :func:`exchange_one`, with the lock
    that lends it to one thread at a time and the id of the process that took it."""

    __slots__ = ("conn", "lock", "pid")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.conn: Any = None
        self.pid = os.getpid()


def _hold(client: Any) -> _Held | None:
    """A new :class:`_Held` for ``client`` (kept on it), or None if its pool is not one whose connection
    may be kept out of it: a plain ``ConnectionPool`` or ``BlockingConnectionPool`` (not a Sentinel pool,
    whose connections follow the master) of RESP2 connections (RESP3 brings push messages: client-side
    caching, maintenance notifications, which the pool handles as it hands a connection out), that
    allows at least :data:`HELD_MIN_POOL` connections."""
    with _HOLDING:  # two threads making the first call at once keep one connection, not two
        known = getattr(client, _HELD, None)
        if known is not None and (known is False or known.pid == os.getpid()):
            return known or None
        return _hold_new(client)


_HOLDING = threading.Lock()


def _after_fork_in_child() -> None:
    global _HOLDING
    _HOLDING = threading.Lock()  # a parent thread may have held it at the fork


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _hold_new(client: Any) -> _Held | None:
    pool = client.connection_pool
    held: _Held | None = None
    if (type(pool) in (redis.ConnectionPool, redis.BlockingConnectionPool)
            and getattr(pool, "cache", None) is None
            and int(getattr(pool, "max_connections", 0) or 0) >= HELD_MIN_POOL
            and str(getattr(pool, "connection_kwargs", {}).get("protocol") or 2) == "2"):
        held = _Held()
    try:
        setattr(client, _HELD, held if held is not None else False)
    except AttributeError:
        return None
    return held


def exchange_one(client: Any, packed: bytes) -> Any:
    """:func:`exchange` of one packed command (its reply, or its error reply as a ``ResponseError``), on
    a connection kept for this (:func:`packable`) client instead of one taken from its pool and given back
    on every call: the pool's lock, its checks and redis-py's per-call events are most of a one-job
    enqueue's client time.

    The kept connection is lent to one thread at a time: a thread that finds it in use (or a client
    whose pool is not one to keep a connection of, see :func:`_hold`) goes through :func:`exchange`. A
    forked child takes a connection of its own (the pool, reset in the child, makes it). The pool's check
    before it hands out a connection (a connection the server closed is reconnected) is here the first
    attempt's: on a connection or timeout error the connection is closed and the command sent again on a
    new one, then the connection's own ``Retry`` applies as in :func:`exchange`: so a command on a kept
    connection is never given fewer attempts than :func:`exchange` gives it. A kept connection that is
    connected, reads with redis-py's hiredis parser and has no health checks to make is written and read
    bare (``sendall``, then the parser's ``read_response``: what redis-py's own calls do then, without their
    wrappers); any other goes through them. The callers' commands are
    safe to send twice (an enqueue resent with the same generated id creates one job)."""
    held = getattr(client, _HELD, None)
    if held is None or (held and held.pid != os.getpid()):
        held = _hold(client)
    if not held or not held.lock.acquire(blocking=False):
        return exchange(client, (packed,))[0]
    try:
        conn = held.conn
        if conn is None:
            conn = held.conn = _get_connection(client.connection_pool)
        try:
            try:
                sock = conn._sock
                if sock is not None and type(conn._parser) is _HIREDIS_PARSER and not conn.health_check_interval:
                    sock.sendall(packed)  # no health check to make: redis-py's send_packed_command, bare
                    return conn._parser.read_response()  # an error reply is returned, not raised
                return _send_and_read(conn, (packed,), 1)[0]
            except (RedisConnectionError, RedisTimeoutError, OSError):
                conn.disconnect()
            return conn.retry.call_with_retry(
                lambda: _send_and_read(conn, (packed,), 1)[0], lambda error: conn.disconnect())
        except BaseException:
            conn.disconnect()  # nothing of this command may be left to read for the next one
            raise
    finally:
        held.lock.release()


def exchange_stream(client: Any, commands: Iterable[bytes | None]) -> list[Any]:
    """:func:`exchange` of commands made one by one (``commands`` packs them lazily): each is sent as soon
    as it is made, so making the next overlaps the server's work on those already sent. A None from
    ``commands`` ends it there: the replies of the commands sent before it are returned, fewer than asked
    for (the caller sends the rest another way). A connection or timeout error the connection's ``Retry``
    covers closes the connection and sends again every command made so far, then goes on (the callers'
    commands are safe to send twice, as for :func:`exchange`)."""
    pool = client.connection_pool
    conn = _get_connection(pool)
    made: list[bytes] = []
    source = iter(commands)
    ended = False

    def attempt() -> list[Any]:
        nonlocal ended
        if made:  # a retry: what the closed connection may not have delivered
            conn.send_packed_command(made)
        while not ended:
            command = next(source, None)
            if command is None:
                ended = True
                break
            made.append(command)
            conn.send_packed_command((command,))
        results: list[Any] = []
        for _ in range(len(made)):
            try:
                results.append(conn.read_response())
            except ResponseError as exc:
                results.append(exc)
        return results

    try:
        return conn.retry.call_with_retry(attempt, lambda error: conn.disconnect())  # type: ignore[no-any-return]
    finally:
        pool.release(conn)


async def _aget_connection(pool: Any) -> Any:
    try:
        return await pool.get_connection()
    except TypeError:  # redis-py < 5.3 names the command
        return await pool.get_connection("EVALSHA")


async def _asend_and_read(conn: Any, packed: Sequence[bytes], replies: int) -> list[Any]:
    await conn.send_packed_command(_joined(packed))
    results: list[Any] = []
    for _ in range(replies):
        try:
            results.append(await conn.read_response())
        except ResponseError as exc:
            results.append(exc)
    return results


async def aexchange(client: Any, packed: Sequence[bytes]) -> list[Any]:
    """:func:`exchange` on a ``redis.asyncio.Redis``. A task canceled while its commands are in flight
    leaves no reply behind for the connection's next user: redis-py's ``send_packed_command`` and
    ``read_response`` close the connection when they are interrupted."""
    pool = client.connection_pool
    conn = await _aget_connection(pool)
    try:
        return await conn.retry.call_with_retry(  # type: ignore[no-any-return]
            lambda: _asend_and_read(conn, packed, len(packed)), lambda error: conn.disconnect())
    finally:
        await pool.release(conn)


async def anode_exchange(node: Any, packed: Sequence[bytes]) -> list[Any]:
    """:func:`aexchange` on one connection of a ``redis.asyncio`` cluster node (``ClusterNode``), all the
    commands in one write, one reply each in order; an error reply (MOVED, NOSCRIPT...) is returned in
    its command's place. No retry here: a node's connections are made without one (the cluster client
    retries, after refreshing its slot map), so a connection or timeout error is raised for the caller to
    send the commands again through the cluster client.

    A connection left with replies unread (a connection error, a parse error, the task canceled while its
    commands are in flight) is closed before it goes back to the node: its next user would read this
    exchange's replies as its own. redis-py's own send and read close it on such an interruption already;
    this holds whatever raises between them."""
    conn = node.acquire_connection()
    try:
        # A connection the node marked for reconnect (after a connection error on another, a maintenance
        # notice) is reconnected first, as the node's own execute_command does.
        reconnect = getattr(node, "disconnect_if_needed", None)
        if reconnect is not None:
            await reconnect(conn)
        await conn.send_packed_command(_joined(packed))
        results: list[Any] = []
        for _ in range(len(packed)):
            try:
                results.append(await conn.read_response())
            except ResponseError as exc:  # an error reply: the connection stays in step
                results.append(exc)
        return results
    except BaseException:
        await conn.disconnect(nowait=True)  # nowait: the socket is dropped at once, not waited for (canceled)
        raise
    finally:
        node.release(conn)
