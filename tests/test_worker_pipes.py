"""The supervisor's fast paths: children's outcomes read as frames from the raw pipe (many per read, a partial
one kept for later), and packed commands whose replies are read after work done while the server runs them."""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import os
import pickle
from typing import Any

import pytest
import redis

from clusterq.api.execution import Executor, FunctionResolver
from clusterq.connection.packed import exchange, pack_command
from clusterq.serializers import JSONSerializer
from clusterq.state.store import LeasedJob, Outcome, make_outcome
from clusterq.state.transitions import make_leased_job
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


def test_a_batch_written_as_one_raw_frame_is_what_the_child_receives() -> None:
    parent, child = multiprocessing.Pipe(duplex=True)
    try:
        jobs = [LeasedJob("q", f"id{i}", i + 1, "jobs.noop", b"[[],{}]", b"", b"s", b"h", i) for i in range(40)]
        P._send_plain(parent, parent.fileno(), [P._plain(job) for job in jobs])
        received = child.recv()  # the child's Connection.recv reads the supervisor's frame
        assert [make_leased_job(item) for item in received] == jobs
    finally:
        parent.close()
        child.close()


def test_a_leased_job_made_from_all_its_values_is_the_same_frozen_value() -> None:
    values = ("q", "id1", 3, "jobs.add", b"[[1,2],{}]", b'{"t":5}', b"sig", b"{}", 2)
    made, built = make_leased_job(values), LeasedJob(*values)
    assert made == built and hash(made) == hash(built) and repr(made) == repr(built)
    with pytest.raises(dataclasses.FrozenInstanceError):
        made.id = "other"  # type: ignore[misc]
    with pytest.raises(ValueError):
        make_leased_job(values[:-1])  # every field must be given: no default fills a gap
    outcome = Outcome("id1", 3, "finished", b"null", 1000, 0.5, "", 10, "")
    assert make_outcome(tuple(outcome.__dict__.values())) == outcome


class _SpacedJSON:
    """A serializer of its own: JSON with spaces, so a call without arguments is not b"[[],{}]"."""

    name = "json"

    def dumps(self, value: Any) -> bytes:
        return json.dumps(value).encode()

    def loads(self, data: bytes) -> Any:
        return json.loads(data)


class _Stamped(_SpacedJSON):
    """Writes a fresh stamp each time: the same value never has the same bytes."""

    def __init__(self) -> None:
        self.calls = 0

    def dumps(self, value: Any) -> bytes:
        self.calls += 1
        return json.dumps([self.calls, value]).encode()

    def loads(self, data: bytes) -> Any:
        return json.loads(data)[1]


@pytest.mark.parametrize("serializer", [JSONSerializer(), _SpacedJSON(), _Stamped()], ids=["json", "spaced", "stamped"])
def test_calls_without_arguments_and_none_results_skip_the_codec_only_where_its_bytes_stand_for_them(
        serializer: Any) -> None:
    executor = Executor(FunctionResolver(None), serializer, 60.0, time_limits=False)
    none, no_args = serializer.dumps(None), serializer.dumps([[], {}])
    added = executor.execute(LeasedJob("q", "a", 1, "jobs.add", serializer.dumps([[2, 3], {}]), b""))
    assert added.status == "finished" and serializer.loads(added.data) == 5
    nothing = executor.execute(LeasedJob("q", "n", 1, "jobs.noop", no_args, b""))
    assert nothing.status == "finished" and serializer.loads(nothing.data) is None
    echoed = executor.execute(LeasedJob("q", "e", 1, "jobs.echo", serializer.dumps([[], {"k": 1}]), b""))
    assert echoed.status == "finished" and serializer.loads(echoed.data) == {"args": [], "kwargs": {"k": 1}}
    if isinstance(serializer, _Stamped):  # its bytes stand for nothing: the codec wrote every result
        assert executor._none_data is None and executor._no_arguments is None
        assert nothing.data != none
    else:
        assert nothing.data == none and executor._no_arguments == no_args
