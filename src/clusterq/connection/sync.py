"""From a URL (or a client the application already has) to a redis-py client, whatever the deployment.

    redis://[user:password@]host:port[/db]     standalone, or a cluster node (detected: opened as a cluster);
                                               no host (``redis://``, ``redis:///0``) means localhost:6379
    rediss://...                               the same over TLS
    unix:///path/to/socket[?db=0]              standalone over a Unix socket
    redis+sentinel://[user:pw@]h:p,h:p/service[/db]   the primary a Sentinel group names
    redis+cluster://[user:pw@]h:p,h:p          a Redis Cluster (any reachable nodes as seeds)
    rediss+sentinel://, rediss+cluster://      the same over TLS
    redis+proxy://host:port                    standalone servers sharded behind a proxy (twemproxy with
                                               hash_tag "{}", Envoy's Redis proxy): see docs/proxy.md

Query options: ``socket_timeout``, ``socket_connect_timeout`` (seconds), ``ssl_cert_reqs``,
``ssl_ca_certs``, ``ssl_certfile``, ``ssl_keyfile``, ``sentinel_username``, ``sentinel_password``
(the sentinels' own user; default: the URL's; blank: none), ``remap`` (cluster behind NAT:
``remap=announced_host:port>reachable_host:port;...``).

Every failure to connect is reported as one :class:`~clusterq.exceptions.ConnectionFailed` naming the
topology and the hosts, never a bare redis-py traceback.
"""

from __future__ import annotations

import inspect
import os
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Union, cast
from urllib.parse import parse_qs, unquote, urlsplit

import redis
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.asyncio.sentinel import SentinelConnectionPool as AsyncSentinelConnectionPool
from redis.cluster import ClusterNode, RedisCluster
from redis.exceptions import RedisClusterException
from redis.sentinel import Sentinel, SentinelConnectionPool

from clusterq.exceptions import ConnectionFailed, InvalidURL

Client = Union[redis.Redis, RedisCluster]
"""What clusterq talks to: a standalone or Sentinel-managed ``redis.Redis``, or a ``RedisCluster``."""

ConnectionLike = Union[str, redis.Redis, RedisCluster, None]
"""What the public API accepts as ``connection``: a URL, a redis-py client, or None (``CLUSTERQ_URL``)."""

REDIS_ERRORS: tuple[type[BaseException], ...] = (redis.RedisError, RedisClusterException, OSError)
"""Everything talking to Redis can raise (redis-py's cluster errors do not all derive from RedisError)."""

DEFAULT_URL = "redis://127.0.0.1:6379/0"
URL_ENV = "CLUSTERQ_URL"

_SCHEMES = {
    "redis": ("standalone", False),
    "rediss": ("standalone", True),
    "unix": ("unix", False),
    "redis+sentinel": ("sentinel", False),
    "rediss+sentinel": ("sentinel", True),
    "redis+cluster": ("cluster", False),
    "rediss+cluster": ("cluster", True),
    "redis+proxy": ("proxy", False),
    "rediss+proxy": ("proxy", True),
}
_FLOAT_OPTIONS = ("socket_timeout", "socket_connect_timeout")
_SSL_OPTIONS = ("ssl_cert_reqs", "ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_check_hostname")
_SENTINEL_OPTIONS = ("sentinel_username", "sentinel_password")


@dataclass
class ParsedURL:
    """A connection URL taken apart; ``hosts`` holds every host given (seeds for Sentinel/Cluster)."""

    topology: str
    tls: bool
    hosts: list[tuple[str, int]]
    username: str | None = None
    password: str | None = None
    db: int = 0
    path: str | None = None
    service: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    remap: dict[tuple[str, int], tuple[str, int]] = field(default_factory=dict)

    def describe(self) -> str:
        where = self.path or ",".join(f"{h}:{p}" for h, p in self.hosts)
        if self.topology == "sentinel":
            return f"Sentinel service {self.service!r} via {where}"
        if self.topology == "cluster":
            return f"Redis Cluster at {where}"
        if self.topology == "proxy":
            return f"proxy at {where}"
        return f"standalone server at {where}"


def _parse_hostport(text: str, default_port: int) -> tuple[str, int]:
    if text.startswith("["):  # [ipv6]:port
        host, _, rest = text[1:].partition("]")
        port = rest.lstrip(":")
    else:
        host, _, port = text.rpartition(":") if ":" in text else (text, "", "")
    try:
        return host or "127.0.0.1", int(port) if port else default_port
    except ValueError:
        raise InvalidURL(f"bad port in {text!r}") from None


def _parse_remap(text: str) -> dict[tuple[str, int], tuple[str, int]]:
    pairs = {}
    for item in filter(None, text.split(";")):
        announced, sep, reachable = item.partition(">")
        if not sep:
            raise InvalidURL(f"remap entry {item!r} must look like announced_host:port>reachable_host:port")
        pairs[_parse_hostport(announced, 6379)] = _parse_hostport(reachable, 6379)
    return pairs


def parse_url(url: str) -> ParsedURL:
    """Parse a clusterq connection URL; raise :class:`InvalidURL` naming what is wrong."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in _SCHEMES:
        raise InvalidURL(f"unsupported URL scheme {parts.scheme!r} in {url!r}; expected one of {sorted(_SCHEMES)}")
    topology, tls = _SCHEMES[scheme]
    # Blank values are dropped, except the sentinel credentials, where blank means "none" (sentinels
    # that require no login while the data nodes do).
    query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()
             if v[-1] or k in _SENTINEL_OPTIONS}
    parsed = ParsedURL(
        topology="standalone" if topology == "unix" else topology,
        tls=tls,
        hosts=[],
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )
    default_port = 26379 if topology == "sentinel" else 6379
    netloc = parts.netloc.rpartition("@")[2]
    if topology == "unix":
        parsed.path = parts.path
        parsed.db = int(query.pop("db", 0))
    else:
        parsed.hosts = [_parse_hostport(h, default_port) for h in netloc.split(",") if h]
        if not parsed.hosts and topology == "standalone":
            parsed.hosts = [("localhost", 6379)]  # as redis-py reads "redis://" (RQ tutorials' REDIS_URL)
        if not parsed.hosts:
            raise InvalidURL(f"no host in {url!r}")
        segments = [unquote(s) for s in parts.path.split("/") if s]
        if topology == "sentinel":
            if not segments:
                raise InvalidURL(f"a Sentinel URL needs the service name as its path: {url!r}")
            parsed.service = segments[0]
            segments = segments[1:]
        if segments:
            try:
                parsed.db = int(segments[0])
            except ValueError:
                raise InvalidURL(f"database must be a number in {url!r}") from None
    if topology == "cluster" and parsed.db:
        raise InvalidURL("Redis Cluster has only database 0")
    if topology == "proxy" and (parsed.db or len(parsed.hosts) != 1):
        raise InvalidURL(f"a proxy URL names one proxy address and database 0 (proxies do not relay SELECT): {url!r}")
    if "remap" in query:
        parsed.remap = _parse_remap(query.pop("remap"))
    for name in _FLOAT_OPTIONS:
        if name in query:
            parsed.options[name] = float(query.pop(name))
    for name in (*_SSL_OPTIONS, *_SENTINEL_OPTIONS):
        if name in query:
            parsed.options[name] = query.pop(name)
    if "ssl_check_hostname" in parsed.options:
        parsed.options["ssl_check_hostname"] = parsed.options["ssl_check_hostname"].lower() in ("1", "true", "yes")
    if query:
        raise InvalidURL(f"unknown URL option(s) {sorted(query)} in {url!r}")
    return parsed


def _remapper(
    remap: Mapping[tuple[str, int], tuple[str, int]] | Callable[[tuple[str, int]], tuple[str, int]],
) -> Callable[[tuple[str, int]], tuple[str, int]]:
    if callable(remap):
        return remap
    table = dict(remap)
    return lambda address: table.get(address, address)


def _client_kwargs(parsed: ParsedURL, overrides: Mapping[str, Any]) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "username": parsed.username,
        "password": parsed.password,
        "socket_timeout": 30.0,
        "socket_connect_timeout": 5.0,
        "decode_responses": False,
    }
    kwargs.update({k: v for k, v in parsed.options.items() if k not in _SENTINEL_OPTIONS})
    if parsed.tls:
        kwargs["ssl"] = True
    kwargs.update(overrides)
    return kwargs


PROXY_UNSUPPORTED = "pub/sub, INFO, WAIT, MULTI/EXEC, SCRIPT, CLUSTER and CLIENT commands"
"""What a sharding proxy does not relay, and clusterq therefore never sends through one."""


PROXY_MARK = "clusterq_proxy"
"""Attribute set on a client opened from a ``redis+proxy://`` URL: a plain ``redis.Redis`` (or asyncio
one) that sends no connection handshake (``CLIENT SETINFO``: a proxy closes the connection on a command
it does not relay), and that tells clusterq to leave out what a proxy cannot carry. Every script still
runs on one backend: a queue's keys share one hash tag, and the proxy routes a script by its first key."""


def is_proxy(client: Any) -> bool:
    """True for a client opened from a ``redis+proxy://`` URL (sync or asyncio)."""
    return bool(getattr(client, PROXY_MARK, False))


# RESP2 (a proxy answers no HELLO) and no CLIENT SETINFO: ``driver_info=None`` in redis-py 7+, where
# ``lib_name`` is deprecated; ``lib_name=None`` before.
PROXY_OPTIONS: dict[str, Any] = {"protocol": 2, **(
    {"driver_info": None} if "driver_info" in inspect.signature(redis.Redis.__init__).parameters
    else {"lib_name": None, "lib_version": None})}


def proxy_client(client: Any) -> Any:
    setattr(client, PROXY_MARK, True)
    return client


def _sentinel_credentials(parsed: ParsedURL) -> dict[str, Any]:
    """Sentinels have their own users: ``sentinel_username``/``sentinel_password`` when given, else the
    data nodes' credentials."""
    username = parsed.options.get("sentinel_username", parsed.username)
    password = parsed.options.get("sentinel_password", parsed.password)
    return {"username": username or None, "password": password or None}


def _open(parsed: ParsedURL, overrides: dict[str, Any]) -> Client:
    remap = overrides.pop("address_remap", None) or parsed.remap or None
    kwargs = _client_kwargs(parsed, overrides)
    if parsed.topology == "cluster":
        return _open_cluster(parsed.hosts, kwargs, remap)
    if parsed.topology == "sentinel":
        sentinel_kwargs: dict[str, Any] = {
            k: kwargs[k] for k in ("socket_timeout", "socket_connect_timeout", "ssl", "username") if k in kwargs
        }
        sentinel_kwargs.update(_sentinel_credentials(parsed))
        sentinel = Sentinel(parsed.hosts, sentinel_kwargs=sentinel_kwargs, **kwargs)
        primary: redis.Redis = sentinel.master_for(cast(str, parsed.service), db=parsed.db, **kwargs)
        return primary  # (parse_url requires the service)
    if parsed.path:
        return redis.Redis(unix_socket_path=parsed.path, db=parsed.db, **kwargs)
    host, port = parsed.hosts[0]
    if parsed.topology == "proxy":
        return cast(redis.Redis, proxy_client(redis.Redis(host=host, port=port, **PROXY_OPTIONS, **kwargs)))
    client = redis.Redis(host=host, port=port, db=parsed.db, **kwargs)
    if _is_cluster_node(client):
        client.close()
        return _open_cluster(parsed.hosts, kwargs, remap)
    return client


def _open_cluster(hosts: list[tuple[str, int]], kwargs: dict[str, Any], remap: Any) -> RedisCluster:
    kwargs = dict(kwargs)
    kwargs.pop("db", None)
    if remap:
        kwargs["address_remap"] = _remapper(remap)
    try:
        return RedisCluster(startup_nodes=[ClusterNode(h, p) for h, p in hosts], **kwargs)
    except RedisClusterException as exc:
        where = ",".join(f"{h}:{p}" for h, p in hosts)
        if "slots are not covered" in str(exc):
            raise ConnectionFailed(
                f"Redis Cluster at {where} is not usable: {exc} (slots unassigned, or a primary without a "
                "replica is down)"
            ) from None
        raise ConnectionFailed(f"cannot reach Redis Cluster at {where}: {exc}") from None


def _is_cluster_node(client: redis.Redis) -> bool:
    """True if a plain ``redis://`` URL reached a node of a cluster (so it must be opened as one)."""
    try:
        return bool(client.info("cluster").get("cluster_enabled"))
    except redis.exceptions.NoPermissionError:
        pass  # INFO is a @dangerous command in Redis 7: a least-privilege user may not have it
    try:
        client.execute_command("CLUSTER", "INFO")
    except redis.ResponseError:  # "cluster support disabled" (or no permission for that either)
        return False
    return True


_UPGRADED = "_clusterq_cluster_client"
"""Attribute a plain client given to :func:`connect` gets once checked: the cluster client that replaces it
(a ``redis.Redis`` on a cluster node), or False. One INFO per client object, not per call."""
_CARRIED = ("username", "password", "socket_timeout", "socket_connect_timeout", "decode_responses",
            "ssl_keyfile", "ssl_certfile", "ssl_cert_reqs", "ssl_ca_certs", "ssl_check_hostname")


def _as_given(client: redis.Redis) -> Client:
    """The client an application passed, or a ``RedisCluster`` on the same node when it is a plain
    ``redis.Redis`` (``Redis.from_url("redis://node")``, as RQ apps build it) that reached a cluster node:
    such a client gets a MOVED reply for most queues' slots."""
    upgraded = getattr(client, _UPGRADED, None)
    if upgraded is not None:
        return upgraded or client
    pool = client.connection_pool
    kw = pool.connection_kwargs
    if (isinstance(pool, SentinelConnectionPool) or kw.get("path") or is_proxy(client)
            or not _is_cluster_node_quietly(client)):
        setattr(client, _UPGRADED, False)
        return client
    host, port = kw.get("host", "localhost"), int(kw.get("port", 6379))
    kwargs = {k: kw[k] for k in _CARRIED if k in kw}
    if issubclass(pool.connection_class, redis.SSLConnection):
        kwargs["ssl"] = True
    try:
        cluster = _open_cluster([(host, port)], kwargs, None)
    except ConnectionFailed as exc:
        raise ConnectionFailed(
            f"the redis.Redis client given as connection reached a Redis Cluster node ({host}:{port}) and "
            f"could not be opened as a cluster ({exc}); pass connection='redis+cluster://{host}:{port}' or a "
            "redis.cluster.RedisCluster client") from None
    setattr(client, _UPGRADED, cluster)
    return cluster


def _is_cluster_node_quietly(client: redis.Redis) -> bool:
    try:
        return _is_cluster_node(client)
    except REDIS_ERRORS:
        return False  # unreachable now: the first real command reports it (and a MOVED reply says what to do)


def _check_cluster(client: RedisCluster, where: str) -> None:
    problem = cluster_state_problem(client.cluster_info(target_nodes=RedisCluster.RANDOM), where)
    if problem:
        raise ConnectionFailed(problem)


def cluster_state_problem(info: Mapping[str, Any], where: str) -> str | None:
    """Why a cluster whose ``CLUSTER INFO`` is ``info`` cannot serve clusterq, or None (sync and asyncio)."""
    state = info.get("cluster_state")
    if state == "ok":
        return None
    covered = info.get("cluster_slots_ok", "?")
    return (f"Redis Cluster at {where} is not usable: cluster_state={state}, {covered}/16384 slots served "
            "(a primary without a replica is down, or slots are not assigned)")


def check_failure(exc: BaseException, where: str) -> str:
    """What a failed connection check (:func:`verify`, ``verify_async``) means, in words (sync and asyncio)."""
    if isinstance(exc, redis.AuthenticationError) or any(s in str(exc) for s in ("NOAUTH", "WRONGPASS")):
        return f"authentication failed for {where}: {exc}"
    if isinstance(exc, redis.ResponseError):
        return f"{where} refused the connection check: {exc}"
    # asyncio.TimeoutError is no OSError before Python 3.11
    if isinstance(exc, (redis.ConnectionError, redis.TimeoutError, OSError)) or type(exc).__name__ == "TimeoutError":
        return f"cannot reach {where}: {short_error(exc)}"
    return f"cannot use {where}: {type(exc).__name__}: {exc}"


def describe(client: Any) -> str:
    """Name a client's topology and hosts, for messages and ``clusterq info`` (sync or asyncio client)."""
    if isinstance(client, (RedisCluster, AsyncRedisCluster)):
        nodes = ",".join(sorted(n.name for n in client.get_primaries()))
        return f"Redis Cluster ({nodes})"
    pool = client.connection_pool
    if isinstance(pool, (SentinelConnectionPool, AsyncSentinelConnectionPool)):
        sentinels = ",".join(f"{s.connection_pool.connection_kwargs.get('host')}:"
                             f"{s.connection_pool.connection_kwargs.get('port')}"
                             for s in pool.sentinel_manager.sentinels)
        return f"Sentinel service {pool.service_name!r} via {sentinels}"
    kw = pool.connection_kwargs
    if is_proxy(client):
        return f"proxy at {kw.get('host')}:{kw.get('port')}"
    if kw.get("path"):
        return f"standalone server at unix:{kw['path']}"
    return f"standalone server at {kw.get('host', '127.0.0.1')}:{kw.get('port', 6379)}"


def topology_of(client: Client) -> str:
    """``"cluster"``, ``"sentinel"``, ``"proxy"`` or ``"standalone"``."""
    if isinstance(client, RedisCluster):
        return "cluster"
    if is_proxy(client):
        return "proxy"
    if isinstance(client.connection_pool, SentinelConnectionPool):
        return "sentinel"
    return "standalone"


def verify(client: Client, where: str | None = None) -> None:
    """Check that ``client`` can serve clusterq now; raise :class:`ConnectionFailed` saying why not."""
    where = where or describe(client)
    try:
        client.ping()
        if isinstance(client, RedisCluster):
            _check_cluster(client, where)
    except ConnectionFailed:
        raise
    except REDIS_ERRORS as exc:
        raise ConnectionFailed(check_failure(exc, where)) from None


def short_error(exc: BaseException) -> str:
    """The error's text, with redis-py's Sentinel report (the repr of every sentinel client, thousands of
    characters) cut down to each sentinel's address and what went wrong there."""
    text = str(exc)
    if type(exc).__name__ != "MasterNotFoundError":  # the sync and asyncio clients each have their own class
        return text
    head, _, details = text.partition(" : ")
    failures = re.findall(r"host=([^,]+),port=(\d+).*?\)>\)>\)> - ([A-Za-z_:]+)", details)
    if not failures:
        return f"{head} (the Sentinels answered, but none knows a primary for that service)"
    listed = "; ".join(f"{host}:{port} {error}" for host, port, error in failures)
    return f"{head}: no Sentinel answered ({listed})"


_cache: dict[tuple[int, str], Client] = {}
_cache_lock = threading.Lock()


def connect(connection: ConnectionLike = None, *, check: bool = True, **options: Any) -> Client:
    """Return a redis-py client for ``connection``.

    ``connection`` is a URL (see the module docstring), an existing ``redis.Redis`` (standalone or a
    Sentinel master) or ``RedisCluster`` (returned as is), or None for ``$CLUSTERQ_URL`` (default
    ``redis://127.0.0.1:6379/0``). ``options`` are passed to the redis-py client (``password``,
    ``socket_timeout``, ``ssl_ca_certs``, ``address_remap``...). Clients built from a URL are shared per
    process, so every ``Queue`` on one URL shares one connection pool.
    """
    if isinstance(connection, RedisCluster):
        return connection
    if isinstance(connection, redis.Redis):
        return _as_given(connection) if check else connection
    if connection is None:
        connection = os.environ.get(URL_ENV) or DEFAULT_URL
    if not isinstance(connection, str):
        raise TypeError(f"connection must be a URL or a redis-py client, got {type(connection).__name__}")
    cache_key = (os.getpid(), connection) if not options else None
    if cache_key is not None:
        with _cache_lock:
            cached = _cache.get(cache_key)
        if cached is not None:
            return cached
    parsed = parse_url(connection)
    where = parsed.describe()
    try:
        client = _open(parsed, dict(options))
    except REDIS_ERRORS as exc:
        raise ConnectionFailed(_explain(exc, where)) from None
    if check:
        verify(client, where)
    if cache_key is not None:
        with _cache_lock:
            client = _cache.setdefault(cache_key, client)
    return client


def _explain(exc: BaseException, where: str) -> str:
    if isinstance(exc, redis.AuthenticationError) or "WRONGPASS" in str(exc) or "NOAUTH" in str(exc):
        return f"authentication failed for {where}: {exc}"
    if "MasterNotFound" in type(exc).__name__ or isinstance(exc, redis.sentinel.MasterNotFoundError):
        return f"no Sentinel at {where} knows a primary for that service: {short_error(exc)}"
    return f"cannot reach {where}: {short_error(exc)}"
