"""From a URL (or an asyncio client the application already has) to a ``redis.asyncio`` client.

The URLs are those of :func:`clusterq.connect` (see :mod:`clusterq.connection`), parsed by the same
:func:`~clusterq.connection.parse_url` into the same client options, and a failure is the same one
:class:`~clusterq.exceptions.ConnectionFailed` naming the topology and the hosts. What differs:

- The clients are ``redis.asyncio.Redis`` (standalone, or a Sentinel master from
  ``redis.asyncio.sentinel.Sentinel.master_for``) and ``redis.asyncio.cluster.RedisCluster``.
- Clients are not shared per URL. An asyncio client's connections belong to the event loop they were
  opened in; a process-wide cache would hand them to the next loop (each ``asyncio.run``, each test,
  each reload of a web server) where they fail. Open one client when the application starts, pass it to
  every :class:`~clusterq.aio.AsyncQueue`, and close it with :func:`disconnect_async` when it stops.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any, Union, cast

import redis
import redis.asyncio
from redis.asyncio.cluster import ClusterNode as AsyncClusterNode
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.asyncio.sentinel import Sentinel as AsyncSentinel
from redis.asyncio.sentinel import SentinelConnectionPool as AsyncSentinelPool
from redis.cluster import RedisCluster
from redis.exceptions import RedisClusterException

from clusterq.connection.sync import (
    DEFAULT_URL,
    PROXY_OPTIONS,
    REDIS_ERRORS,
    URL_ENV,
    ParsedURL,
    _client_kwargs,
    _remapper,
    _sentinel_credentials,
    check_failure,
    cluster_state_problem,
    describe,
    parse_url,
    proxy_client,
)
from clusterq.exceptions import ConnectionFailed

AsyncClient = Union[redis.asyncio.Redis, AsyncRedisCluster]
"""What the asyncio API talks to: a standalone or Sentinel-managed ``redis.asyncio.Redis``, or an
asyncio ``RedisCluster``."""

AsyncConnectionLike = Union[str, redis.asyncio.Redis, AsyncRedisCluster, None]
"""What the asyncio API accepts as ``connection``: a URL, a ``redis.asyncio`` client, or None
(``$CLUSTERQ_URL``)."""

ASYNC_REDIS_ERRORS: tuple[type[BaseException], ...] = (*REDIS_ERRORS, asyncio.TimeoutError)
"""Everything talking to Redis from asyncio can raise (``asyncio.TimeoutError`` is no OSError before 3.11)."""


def is_async_client(connection: object) -> bool:
    """True for the ``redis.asyncio`` clients clusterq accepts as they are."""
    return isinstance(connection, (redis.asyncio.Redis, AsyncRedisCluster))


def check_connection_like(connection: object) -> None:
    """Refuse early (at construction, not at the first await) what can never become an asyncio client."""
    if connection is None or isinstance(connection, str) or is_async_client(connection):
        return
    if isinstance(connection, (redis.Redis, RedisCluster)):
        raise TypeError(
            f"{type(connection).__name__} is a synchronous redis-py client; the asyncio API needs a URL or a "
            "redis.asyncio client (see clusterq.connect_async)"
        )
    raise TypeError(f"connection must be a URL or a redis.asyncio client, got {type(connection).__name__}")


async def _is_cluster_node(client: redis.asyncio.Redis) -> bool:
    """As :func:`clusterq.connection._is_cluster_node`: INFO, else CLUSTER INFO for users without INFO."""
    try:
        return bool((await client.info("cluster")).get("cluster_enabled"))
    except redis.exceptions.NoPermissionError:
        pass
    try:
        await client.execute_command("CLUSTER", "INFO")
    except redis.ResponseError:
        return False
    return True


async def _open(parsed: ParsedURL, overrides: dict[str, Any]) -> AsyncClient:
    remap = overrides.pop("address_remap", None) or parsed.remap or None
    kwargs = _client_kwargs(parsed, overrides)
    if parsed.topology == "cluster":
        return await _open_cluster(parsed.hosts, kwargs, remap)
    if parsed.topology == "sentinel":
        sentinel_kwargs: dict[str, Any] = {
            k: kwargs[k] for k in ("socket_timeout", "socket_connect_timeout", "ssl", "username") if k in kwargs
        }
        sentinel_kwargs.update(_sentinel_credentials(parsed))
        sentinel = AsyncSentinel(parsed.hosts, sentinel_kwargs=sentinel_kwargs, **kwargs)
        primary: redis.asyncio.Redis = sentinel.master_for(cast(str, parsed.service), db=parsed.db, **kwargs)
        return primary  # (parse_url requires the service)
    if parsed.path:
        return redis.asyncio.Redis(unix_socket_path=parsed.path, db=parsed.db, **kwargs)
    host, port = parsed.hosts[0]
    if parsed.topology == "proxy":
        return cast(redis.asyncio.Redis, proxy_client(redis.asyncio.Redis(host=host, port=port, **PROXY_OPTIONS,
                                                                          **kwargs)))
    client = redis.asyncio.Redis(host=host, port=port, db=parsed.db, **kwargs)
    try:
        cluster_enabled = await _is_cluster_node(client)
    except BaseException:
        await client.aclose()
        raise
    if cluster_enabled:  # a plain redis:// URL reached a cluster node: open the cluster
        await client.aclose()
        return await _open_cluster(parsed.hosts, kwargs, remap)
    return client


async def _open_cluster(hosts: list[tuple[str, int]], kwargs: dict[str, Any], remap: Any) -> AsyncRedisCluster:
    kwargs = dict(kwargs)
    kwargs.pop("db", None)
    if remap:
        kwargs["address_remap"] = _remapper(remap)
    client = AsyncRedisCluster(startup_nodes=[AsyncClusterNode(h, p) for h, p in hosts], **kwargs)
    try:
        return await client.initialize()  # reads the slot map now, so a bad seed list fails here
    except RedisClusterException as exc:
        where = ",".join(f"{h}:{p}" for h, p in hosts)
        if "slots are not covered" in str(exc):
            raise ConnectionFailed(
                f"Redis Cluster at {where} is not usable: {exc} (slots unassigned, or a primary without a "
                "replica is down)"
            ) from None
        raise ConnectionFailed(f"cannot reach Redis Cluster at {where}: {exc}") from None


def describe_async(client: AsyncClient) -> str:
    """Name an asyncio client's topology and hosts, for messages (the same text as for sync clients)."""
    return describe(client)


async def verify_async(client: AsyncClient, where: str | None = None) -> None:
    """Check that ``client`` can serve clusterq now; raise :class:`ConnectionFailed` saying why not."""
    where = where or describe_async(client)
    try:
        await client.ping()
        if isinstance(client, AsyncRedisCluster):
            problem = cluster_state_problem(await client.cluster_info(target_nodes=AsyncRedisCluster.RANDOM), where)
            if problem:
                raise ConnectionFailed(problem)
    except ConnectionFailed:
        raise
    except ASYNC_REDIS_ERRORS as exc:
        raise ConnectionFailed(check_failure(exc, where)) from None


async def connect_async(connection: AsyncConnectionLike = None, *, check: bool = True, **options: Any) -> AsyncClient:
    """Return a ``redis.asyncio`` client for ``connection``; the caller owns it (see :func:`disconnect_async`).

    ``connection`` is a URL (see :mod:`clusterq.connection`), an existing ``redis.asyncio.Redis`` or
    asyncio ``RedisCluster`` (returned as is, so applications keep their own pools), or None for
    ``$CLUSTERQ_URL`` (default ``redis://127.0.0.1:6379/0``). ``options`` go to the client
    (``password``, ``socket_timeout``, ``address_remap``...). With ``check`` (the default) the server is
    asked once now, so a wrong URL fails at start-up rather than at the first enqueue.
    """
    if is_async_client(connection):
        return connection  # type: ignore[return-value]
    check_connection_like(connection)
    url: str = connection if isinstance(connection, str) else (os.environ.get(URL_ENV) or DEFAULT_URL)
    parsed = parse_url(url)
    where = parsed.describe()
    try:
        client = await _open(parsed, dict(options))
    except ConnectionFailed:
        raise
    except ASYNC_REDIS_ERRORS as exc:
        raise ConnectionFailed(check_failure(exc, where)) from None
    if check:
        try:
            await verify_async(client, where)
        except ConnectionFailed:
            await disconnect_async(client)
            raise
    return client


async def disconnect_async(client: AsyncClient) -> None:
    """Close a client from :func:`connect_async`, including, for a Sentinel master, its connections to
    the sentinels (``Redis.aclose()`` alone leaves those open)."""
    pool = getattr(client, "connection_pool", None)
    try:
        await client.aclose()
    finally:
        if isinstance(pool, AsyncSentinelPool):
            await pool.sentinel_manager.aclose()
