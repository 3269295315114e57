"""Connection URLs taken apart (every topology, TLS, options, address remaps) and bad ones refused with a
reason, without a server. (Opening each topology's client: tests/test_connection.py.)"""

from __future__ import annotations

import pytest
import redis

from clusterq import ConnectionFailed, InvalidURL, connect, parse_url


def test_urls_of_every_topology_are_parsed() -> None:
    p = parse_url("redis://alice:s%40cret@10.0.0.1:6380/2?socket_timeout=1.5")
    assert (p.topology, p.hosts, p.username, p.password, p.db) == ("standalone", [("10.0.0.1", 6380)],
                                                                     "alice", "s@cret", 2)
    assert p.options["socket_timeout"] == 1.5
    p = parse_url("rediss+sentinel://:pw@h1:26379,h2:26380/mymaster/1")
    assert (p.topology, p.tls, p.service, p.db, p.password) == ("sentinel", True, "mymaster", 1, "pw")
    assert p.hosts == [("h1", 26379), ("h2", 26380)]
    p = parse_url("redis+cluster://a:7000,b:7001?remap=10.0.0.5:6379>127.0.0.1:7000")
    assert p.topology == "cluster" and p.remap == {("10.0.0.5", 6379): ("127.0.0.1", 7000)}
    p = parse_url("unix:///var/run/redis.sock?db=3")
    assert (p.path, p.db) == ("/var/run/redis.sock", 3)
    assert parse_url("redis+sentinel://h/svc").hosts == [("h", 26379)]


@pytest.mark.parametrize("bad", [
    "http://localhost", "redis+sentinel://h:1", "redis+cluster://h:1/3", "redis://h:port",
    "redis://h:1/zero", "redis://h:1?bogus=1", "redis+cluster://h:1?remap=nonsense",
])
def test_bad_urls_are_refused_with_a_reason(bad: str) -> None:
    with pytest.raises(InvalidURL):
        parse_url(bad)


def test_a_client_that_is_not_a_redis_client_is_refused() -> None:
    with pytest.raises(TypeError, match="URL or a redis-py client"):
        connect(42)  # type: ignore[arg-type]
    assert issubclass(ConnectionFailed, Exception) and not issubclass(ConnectionFailed, redis.RedisError)
