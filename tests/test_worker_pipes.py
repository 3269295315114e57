"""The supervisor's fast paths: children's outcomes read as frames from the raw pipe (many per read, a partial
one kept for later), and packed commands whose replies are read after work done while the server runs them."""

from __future__ import annotations

import multiprocessing
import os
import pickle
from typing import Any

import pytest
import redis

from clusterq.connection.packed import exchange, pack_command
from clusterq.worker.pools import process as P


def test_frames_are_parsed_whole_and_a_partial_one_waits_for_its_rest() -> None:
    parent, child = multiprocessing.Pipe(duplex=True)
    try:
        messages: list[Any] = [("q", str(i), (str(i), i, "finished", b"x" * i)) for i in range(50)]
        for message in messages[:10]:
            P._send_plain(child, child.fileno(), message)
        child.send(("idle", 10, 0.0))  # Connection.send: the same framing
        whole = P._HEADER.pack(len(pickle.dumps(messages[10]))) + pickle.dumps(messages[10])
        os.write(child.fileno(), whole[:7])  # half a frame
        reader = P._Child(process=None, conn=parent)
        got, ended = reader.receive()
        assert got == [*messages[:10], ("idle", 10, 0.0)] and not ended
        assert bytes(reader.inbox) == whole[:7]
        os.write(child.fileno(), whole[7:])
        child.close()  # the child is gone: what it sent before comes first
        got, ended = reader.receive()
        while not ended:
            more, ended = reader.receive()
            got += more
        assert got == [messages[10]] and not reader.inbox
    finally:
        parent.close()


@pytest.fixture
def standalone_url(clusterq_standalone: Any) -> str:
    clusterq_standalone.flush()
    return str(clusterq_standalone.url)


def test_work_while_waiting_runs_once_between_send_and_read_and_its_error_comes_after_the_replies(
        standalone_url: str) -> None:
    client = redis.Redis.from_url(standalone_url)
    calls: list[int] = []

    def meanwhile() -> None:
        calls.append(len(calls))
        raise KeyError("from the callback")

    packed = [pack_command(("SET", "k", str(i))) for i in range(3)] + [pack_command(("INCR", "n"))]
    with pytest.raises(KeyError, match="from the callback"):
        exchange(client, [p for p in packed if p is not None], meanwhile)
    assert calls == [0]
    # Every reply was read before the error went up: the connection is in step for its next user.
    assert exchange(client, [pack_command(("GET", "k")), pack_command(("GET", "n"))]) == [b"2", b"1"]
    assert exchange(client, [pack_command(("PING",))], lambda: calls.append(9)) == [b"PONG"]
    assert calls == [0, 9]
