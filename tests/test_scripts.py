"""Lua scripts: a header each; only the keys they declare (or job keys built from a declared prefix),
all in one slot; and a flushed script cache (new node, promoted replica) never fails a call."""

from __future__ import annotations

import re
import threading
import time
import uuid
from pathlib import Path

import pytest
import redis

from clusterq import Queue, Worker
from clusterq.api import buffer_core as B
from clusterq.state import keys as K
from clusterq.state import scripts as S
from clusterq.state import store as T
from clusterq.state import transitions as TR
from clusterq.state.outbox import child_dependent, ended_entry, group_dependent, make_handle, registration_entry
from clusterq.testing import Topology

pytestmark = pytest.mark.compat  # also run against the second server engine


# --- headers ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("script", S.ALL, ids=lambda s: s.name)
def test_every_script_has_a_header_naming_keys_argv_and_returns(script: S.Script) -> None:
    text = script.source.decode()
    shebang = text.split("\n", 1)[0]
    assert shebang in ("#!lua", "#!lua flags=no-writes", "#!lua flags=allow-oom"), \
        "scripts use the shebang so the server enforces single-slot access (and no flag may lift that)"
    if "allow-oom" in shebang:
        assert "flags=allow-oom):" in text, "say in the header why the script may run on a full server"
    header = text[: text.index("]]")]
    assert f"{script.name}:" in header
    assert "KEYS[1]" in header and "Returns:" in header
    used = set(re.findall(r"KEYS\[(\d+)\]", text[text.index("]]"):]))
    declared = set(re.findall(r"^KEYS\[(\d+)\]", header, re.M))
    assert used <= declared, f"{script.name} uses KEYS{sorted(used - declared)} without declaring them"


# --- every key touched is declared, and in one slot -------------------------------------------------

_ARG = re.compile(r'"((?:[^"\\]|\\.)*)"')
_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "a": "\a", "b": "\b", '"': '"', "\\": "\\"}


def _unescape(text: str) -> bytes:
    out = bytearray()
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            nxt = text[i + 1]
            if nxt == "x":
                out.append(int(text[i + 2 : i + 4], 16))
                i += 4
                continue
            out += _ESCAPES.get(nxt, nxt).encode()
            i += 2
            continue
        out += ch.encode("utf-8", "surrogateescape")
        i += 1
    return bytes(out)


class Monitor:
    """Collects the commands scripts run (MONITOR lines from a Lua client), in a thread."""

    def __init__(self, port: int) -> None:
        self.conn = redis.Connection(host="127.0.0.1", port=port)
        self.conn.connect()
        self.conn.send_command("MONITOR")
        assert self.conn.read_response() in (b"OK", "OK")
        self.commands: list[list[bytes]] = []
        self._marker: str | None = None
        self._marked = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if not self.conn.can_read(timeout=0.05):
                    continue
                line = self.conn.read_response()
            except redis.ConnectionError:
                return
            text = line.decode("utf-8", "surrogateescape") if isinstance(line, bytes) else line
            if " lua]" in text:
                self.commands.append([_unescape(a) for a in _ARG.findall(text)])
            elif self._marker is not None and self._marker in text:
                self._marked.set()

    def take(self, client: redis.Redis) -> list[list[bytes]]:
        """The scripts' commands since the last call. MONITOR shows commands in the order the server ran
        them, so once it shows a marker sent now on ``client``, it has shown everything before it."""
        self._marker = f"cq-monitor-mark-{uuid.uuid4().hex}"
        self._marked.clear()
        client.echo(self._marker)
        assert self._marked.wait(30), "MONITOR never showed the marker"
        taken, self.commands = self.commands, []
        return taken

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.conn.disconnect()


def _keys_of(client: redis.Redis, command: list[bytes]) -> list[bytes]:
    try:
        keys = client.execute_command("COMMAND GETKEYS", *command)
    except redis.ResponseError:
        return []  # TIME and other keyless commands
    return [k.encode("utf-8", "surrogateescape") if isinstance(k, str) else k for k in keys]


def _exercise_every_script(store: T.Store, qk: K.QueueKeys, client: redis.Redis):
    """Run every transition through its interesting paths; yield (call, result) one by one."""
    new = [T.NewJob(f"j{i}", "jobs.add", b"[[1,2],{}]", '{"timeout":5}', b'{"m":1}', 60 if i == 0 else 0,
                    2 if i == 1 else None, signature="v1:00" if i == 2 else "") for i in range(6)]
    yield T.enqueue_call(qk, new[:3])
    yield T.enqueue_call(qk, new[3:], at_front=True)
    yield T.enqueue_call(qk, new[:1])  # existing id: untouched
    yield T.cancel_call(qk, "j0", 60_000)  # a queued job: tombstone
    yield T.delete_call(qk, "j4")
    client.set(qk.job("j5"), "garbage")  # a key edited by hand into a string
    yield T.lease_call(qk, 10, 100, "w1", 60_000)
    yield T.extend_call(qk, [("j1", 1), ("j2", 99)], 100)
    yield T.complete_call(qk, [T.Outcome("j1", 1, "finished", b"3", 60_000),
                               T.Outcome("j2", 1, "failed", b"boom", -1),
                               T.Outcome("j3", 1, "finished", b"3", 0),
                               T.Outcome("j9", 1, "finished", b"3", 1)])
    yield T.requeue_call(qk, "j2")
    yield T.lease_call(qk, 10, 1, "w1", 60_000)
    time.sleep(0.01)
    yield T.requeue_expired_call(qk, 100, 3, 60_000)
    yield T.lease_call(qk, 1, 60_000, "w1", 60_000)
    yield T.release_call(qk, [("j2", 3)])
    yield T.set_fields_call(qk, "j2", {"m": b"{}"})
    yield T.cancel_call(qk, "j2", -1)
    yield T.enqueue_call(qk, [T.NewJob("k1", "jobs.add", max_attempts=1)])
    yield T.lease_call(qk, 1, 1, "w1", 60_000)
    time.sleep(0.01)
    yield T.requeue_expired_call(qk, 100, 3, 1)  # attempt limit 1: abandoned
    time.sleep(0.01)
    yield T.trim_call(qk.failed, 100)
    yield T.enqueue_call(qk, [T.NewJob(f"d{i}", "jobs.add") for i in range(3)])
    yield T.drain_call(qk, 2)
    yield T.drain_call(qk, 2)
    yield T.purge_registry_call(qk, qk.canceled, 10)
    yield T.enqueue_call(qk, [T.NewJob("r1", "jobs.add")])
    yield T.lease_call(qk, 1, 60_000, "w1", 60_000)
    yield T.complete_call(qk, [T.Outcome("r1", 1, "failed", b"boom", 60_000, 0.0, "2;0")])  # retry now
    yield T.lease_call(qk, 1, 60_000, "w1", 60_000)
    yield T.complete_call(qk, [T.Outcome("r1", 2, "failed", b"boom", 60_000, 0.0, "2;50")])  # retry later
    yield T.results_call(qk, "r1")
    client.zadd(qk.scheduled, {"r1": 0})
    yield T.promote_call(qk, 10)
    yield T.set_fields_call(qk, "r1", {"hw": "1"})  # someone waits for its result
    yield T.lease_call(qk, 1, 60_000, "w1", 60_000)
    yield T.complete_call(qk, [T.Outcome("r1", 3, "finished", b"7", 60_000, 0.0, "1;b:10:2:100:0.5", 3)])
    client.zadd(qk.scheduled, {"r1": 0})
    yield T.promote_call(qk, 10)
    yield T.lease_call(qk, 1, 1, "w1", 60_000)
    time.sleep(0.01)
    yield T.requeue_expired_call(qk, 100, 1, 60_000)  # abandoned after results: history kept
    yield T.requeue_call(qk, "r1")
    yield T.delete_call(qk, "r1")
    yield T.schedule_call(qk, [T.NewJob(f"s{i}", "jobs.add", b"[[1,2],{}]", ttl_s=60 if i == 0 else 0)
                               for i in range(3)], at_ms=1)  # due at once
    yield T.schedule_call(qk, [T.NewJob("s0", "jobs.add"), T.NewJob("s3", "jobs.add", fresh_id=True)],
                          delay_ms=3_600_000, at_front=True)  # s0 exists: untouched
    yield T.schedule_call(qk, [T.NewJob("s4", "jobs.add", signature="v1:00")], at_ms=2, at_front=True)
    yield T.cancel_call(qk, "s1", 60_000)  # a scheduled job leaves the scheduled set
    yield T.delete_call(qk, "s2")
    yield T.promote_call(qk, 1)  # s0 only: s1/s2 were removed
    yield T.promote_call(qk, 10)  # s4 to the front; s3 is not due
    yield T.promote_call(qk, 10)  # nothing due
    yield T.enqueue_call(qk, [T.NewJob("t1", "jobs.add", ttl_s=60), T.NewJob("t2", "jobs.add")])
    yield T.take_call(qk, "t1", 60_000, "sync")  # leased out of turn: its id stays as a tombstone
    yield T.take_call(qk, "t1", 60_000, "sync")  # no longer queued: nothing
    yield T.stop_call(qk, "t1", "enough")  # running: requested and published
    yield T.extend_call(qk, [("t1", 1)], 60_000)  # the heartbeat reports the requested stop
    yield T.stop_call(qk, "t2", "no")  # queued: refused
    yield T.stop_call(qk, "nope", "no")  # no such job
    yield T.complete_call(qk, [T.Outcome("t1", 1, "stopped", b"JobStopped: enough", 60_000)])
    yield T.requeue_call(qk, "t1")  # a stopped job can be requeued: its tombstone comes alive again
    yield T.enqueue_call(qk, [T.NewJob("tp", "jobs.add", priority=3)])
    yield T.take_call(qk, "tp", 60_000, "sync")  # a job with a priority leaves the prio set
    # priorities: the prio set, at every place that pushes
    yield T.enqueue_call(qk, [T.NewJob(f"p{i}", "jobs.add", priority=1 + i % 3) for i in range(4)])
    yield T.enqueue_call(qk, [T.NewJob("p9", "jobs.add", priority=2)], at_front=True)
    yield T.enqueue_call(qk, [T.NewJob("p0", "jobs.add", unique=True)])  # a duplicate: -1
    yield T.cancel_call(qk, "p3", 60_000)  # a queued job with a priority leaves the set
    yield T.delete_call(qk, "p2")
    yield T.lease_call(qk, 2, 60_000, "w1", 60_000)  # the list is empty: p0, then p9 (front of level 2)
    yield T.release_call(qk, [("p0", 1)])
    yield T.lease_call(qk, 1, 1, "w1", 60_000)
    time.sleep(0.01)
    yield T.requeue_expired_call(qk, 100, 3, 60_000)
    yield T.complete_call(qk, [T.Outcome("p9", 1, "failed", b"boom", 60_000, 0.0, "2;0")])  # retry in prio
    yield T.requeue_call(qk, "p3")
    yield T.schedule_call(qk, [T.NewJob("ps", "jobs.add", priority=4)], at_ms=1, at_front=True)
    yield T.promote_call(qk, 10)
    yield T.drain_call(qk, 100)
    yield T.drain_call(qk, 100)  # the prio set
    yield T.drain_call(qk, 100)  # nothing left
    # controls: suspend, rate limit
    yield T.configure_call(qk, {"sus": "1"})
    yield T.lease_call(qk, 1, 60_000, "w1", 60_000)  # suspended
    yield T.configure_call(qk, {"sus": "", "rn": 1, "rp": 60_000})
    yield T.enqueue_call(qk, [T.NewJob(f"rl{i}", "jobs.add") for i in range(2)])
    yield T.lease_call(qk, 2, 60_000, "w1", 60_000)  # one, the window is spent
    yield T.lease_call(qk, 2, 60_000, "w1", 60_000)  # none: wait
    # concurrency limits: set aside, then moved back by each way a lease ends
    yield T.configure_call(qk, {"rn": "", "rp": "", "cd": 1, "c:k{2}": 1})
    yield T.enqueue_call(qk, [T.NewJob(f"c{i}", "jobs.add", concurrency_key="k{2}") for i in range(6)])
    yield T.lease_call(qk, 3, 60_000, "w1", 60_000)  # c0 runs, c1 and c2 wait aside
    yield T.complete_call(qk, [T.Outcome("c0", 1, "finished", b"3", 60_000)])  # c1 back to the head
    yield T.lease_call(qk, 1, 60_000, "w1", 60_000)  # c1
    yield T.release_call(qk, [("c1", 1)])  # c2 back, then c1
    yield T.lease_call(qk, 1, 1, "w1", 60_000)  # c2, lease expires at once
    time.sleep(0.01)
    yield T.requeue_expired_call(qk, 100, 3, 60_000)
    yield T.lease_call(qk, 1, 60_000, "w1", 60_000)
    yield T.lease_call(qk, 5, 60_000, "w1", 60_000)  # the rest wait aside
    yield T.cancel_call(qk, "c2", 60_000)  # running: its slot moves the next one back
    yield T.lease_call(qk, 1, 60_000, "w1", 60_000)
    yield T.delete_call(qk, "c1")
    yield T.enqueue_call(qk, [T.NewJob(f"c{i}", "jobs.add", concurrency_key="k{2}") for i in range(6, 9)])
    yield T.lease_call(qk, 3, 60_000, "w1", 60_000)  # set aside: the key is full
    for _ in range(3):
        yield T.drain_call(qk, 100)  # the list, then the jobs set aside
    yield T.debounce_call(qk, "k{1}", T.NewJob("db1", "jobs.add", b"[[1],{}]"), 60_000, 120_000)
    yield T.debounce_call(qk, "k{1}", T.NewJob("db2", "jobs.add", b"[[2],{}]"), 60_000, 120_000)
    tick = lambda name, at, mode, job: T.cron_tick_call(qk, name, at, mode, 3, job)  # noqa: E731
    yield tick("p", 1000, "resume", T.NewJob("cron:p:1", "jobs.add"))  # first seen: recorded only
    yield tick("p", 2000, "fire", T.NewJob("cron:p:2", "jobs.add", b"[[1,2],{}]", '{"timeout":5}', b'{"m":1}', 60,
                                           2))
    yield tick("p", 2000, "fire", T.NewJob("cron:p:2", "jobs.add"))  # already taken
    yield tick("p", 1500, "fire", T.NewJob("cron:p:1.5", "jobs.add"))  # older: refused
    yield tick("p", 4_000_000_000_000, "fire", T.NewJob("cron:p:far", "jobs.add"))  # after the server's clock
    yield tick("p", 3000, "skip", T.NewJob("cron:p:3", "jobs.add"))  # recorded, not run
    yield tick("p", 4000, "resume", T.NewJob("s0", "jobs.add"))  # the id already has a record
    for at in range(5000, 10000, 1000):  # the recent-runs list stays capped
        yield tick("p", at, "fire", T.NewJob(f"cron:p:{at}", "jobs.add"))
    yield T.cron_tick_call(qk, "p", 10_000, "fire", 3, T.NewJob("cron:p:10000", "jobs.add"),
                           overlap=False)  # the previous run is still queued: skipped
    client.hset(qk.job("cron:p:9000"), "s", "finished")  # the previous run ended: the next one runs
    yield T.cron_tick_call(qk, "p", 11_000, "fire", 3, T.NewJob("cron:p:11000", "jobs.add"), overlap=False)
    yield tick("p", 12_000, "fire", T.NewJob("cron:p:12000", "jobs.add", priority=2, concurrency_key="k"))
    yield from _exercise_dependencies(qk)
    yield from _exercise_buffer()


def _exercise_buffer():
    """A counter buffer partition (its own slot): increments, takes (a full batch, the rest, records whose
    lease ended) and acknowledgements, including of a record already gone."""
    bk = K.BufferKeys("hostile{buf}", 3)
    yield B.incr_call(bk, "k{1}", ["n", "2", "x", "0.5"])
    yield B.incr_call(bk, "k{1}", ["n", "1", "x", "1"])
    yield B.incr_call(bk, "k2", ["n", "1"])
    yield B.take_call(bk, 1, 60_000, 0)
    yield B.take_call(bk, 10, 1, 0)
    time.sleep(0.01)
    yield B.take_call(bk, 10, 60_000, 0)  # the record whose 1 ms lease ended, again
    yield B.ack_call(bk, ["1", "2", "99"])


def _exercise_dependencies(qk: K.QueueKeys):
    """Dependencies and groups: defer, register, resolve, the outbox, and the scripts that write to it."""
    p1, p2 = make_handle(qk.name, "p1"), make_handle(qk.name, "p2")
    yield T.drain_call(qk, 1000)  # start from an empty queue
    yield T.enqueue_call(qk, [T.NewJob("p1", "jobs.add"), T.NewJob("p2", "jobs.add")])
    yield T.defer_call(qk, T.NewJob("c1", "jobs.add", b"[[1,2],{}]", '{"failure_ttl":60}', b"{}", 60, 2),
                       [(p1, False), ("other/x", True)], at_front=True)
    yield T.defer_call(qk, T.NewJob("c2", "jobs.add", options='{"failure_ttl":60}'), [(p2, False)])
    yield T.defer_call(qk, T.NewJob("c2", "jobs.add"), [(p2, False)])  # exists: untouched
    yield T.register_call(qk, child_dependent(qk.name, "c1"), ["p1", "gone"])
    yield T.register_call(qk, child_dependent(qk.name, "c2"), ["p2"])
    yield T.register_call(qk, group_dependent(qk.name, "g1"), ["p1"])
    yield T.outbox_due_call(qk, 0, 10)
    yield T.outbox_due_call(qk, 3_600_000, 10)  # nothing that old
    yield TR.GAUGES.call(qk)  # reads only: the counters and the head job's enqueue time
    yield T.resolve_call(qk, "c1", "other/x", "failed", 60_000)  # allowed to fail: counted
    yield T.lease_call(qk, 2, 60_000, "w1", 60_000)
    yield T.complete_call(qk, [T.Outcome("p1", 1, "finished", b"3", 60_000),
                               T.Outcome("p2", 1, "failed", b"boom", 0)])  # both write an ended intent
    yield T.resolve_call(qk, "c1", p1, "finished", 60_000)  # the last parent: released to the front
    yield T.resolve_call(qk, "c1", p1, "finished", 60_000)  # a replay: nothing
    yield T.resolve_call(qk, "c2", p2, "failed", 60_000)  # had to finish: canceled
    yield T.ack_call(qk, ended_entry("finished", "p1"), "p1", [child_dependent(qk.name, "c1")])  # one left
    yield T.ack_call(qk, registration_entry(p1, "c1"))
    yield T.group_open_call(qk, "g1", 60_000)
    yield T.group_open_call(qk, "g1", 60_000)  # exists
    yield T.group_open_call(qk, "g1", 0, added=1)
    yield T.group_open_call(qk, "nope", 0, added=1)  # no such group
    yield T.group_done_call(qk, "g1", p1, "finished")
    yield T.group_done_call(qk, "g1", p1, "finished")  # a replay: nothing
    yield T.defer_call(qk, T.NewJob("cb1", "jobs.add"), [])  # the group's callback, released by the group
    yield T.group_close_call(qk, "g1", "cb1")  # every member already ended: fires now
    yield T.group_close_call(qk, "g1", "")  # already closed
    yield T.group_open_call(qk, "g2", 60_000)
    yield T.defer_call(qk, T.NewJob("cb2", "jobs.add"), [])
    yield T.group_open_call(qk, "g2", 0, added=1)
    yield T.group_close_call(qk, "g2", "cb2")
    yield T.group_done_call(qk, "g2", p2, "failed")  # fires
    yield T.group_done_call(qk, "nope", p2, "failed")  # no such group
    # cancel, delete and requeue_expired of jobs with dependents write ended intents
    yield T.enqueue_call(qk, [T.NewJob(f"p{i}", "jobs.add", max_attempts=1) for i in (3, 4, 5)])
    yield T.defer_call(qk, T.NewJob("c4", "jobs.add"), [(make_handle(qk.name, "p4"), False)])
    yield T.register_call(qk, child_dependent(qk.name, "c4"), ["p3", "p4", "p5"])
    yield T.cancel_call(qk, "p3", 60_000, "ok")
    yield T.delete_call(qk, "p4", "purge")
    yield T.resolve_call(qk, "c4", make_handle(qk.name, "p4"), "purge", 60_000)  # deleted
    yield T.defer_call(qk, T.NewJob("c5", "jobs.add"), [(make_handle(qk.name, "p5"), False)])
    yield T.register_call(qk, child_dependent(qk.name, "c5"), ["p5"])
    yield T.cancel_call(qk, "c5", 0, "canceled")  # a deferred job leaves the deferred set
    yield T.lease_call(qk, 1, 1, "w1", 60_000)
    time.sleep(0.01)
    yield T.requeue_expired_call(qk, 100, 3, 60_000)  # p5 abandoned: its dependents are told


@pytest.mark.parametrize("clusterq_topology", ["standalone"], indirect=True)
def test_scripts_touch_only_declared_keys_all_in_the_queues_slot(clusterq_topology: Topology) -> None:
    clusterq_topology.flush()
    client = redis.Redis.from_url(clusterq_topology.url)
    store = T.Store(client)
    port = int(clusterq_topology.url.rsplit(":", 1)[1].split("/")[0])
    qk = K.QueueKeys("hostile{name}")
    slot = K.queue_slot(qk.name)
    monitor = Monitor(port)
    seen_scripts = set()
    try:
        gen = _exercise_every_script(store, qk, client)
        for call in gen:
            store.run(call)
            seen_scripts.add(call.script.name)
            declared = {k.encode() for k in call.keys}
            prefixes = [k.encode() for k in call.keys
                        if k.endswith((":j:", ":h:", ":dep:", ":lr:", ":lw:", ":v:", ":f:"))]
            # Every key in one slot: the queue's, or for a counter buffer's scripts its partition's.
            expected = K.key_slot(call.keys[0]) if call.script.name.startswith("buffer_") else slot
            commands = monitor.take(client)
            assert commands, f"{call.script.name} ran no command?"
            for command in commands:
                for key in _keys_of(client, command):
                    assert key in declared or any(key.startswith(p) for p in prefixes), (
                        f"{call.script.name} touched undeclared key {key!r} in {command[0]!r}")
                    assert K.key_slot(key) == expected
    finally:
        monitor.close()
        client.close()
    assert seen_scripts == {s.name for s in S.ALL}, "every script must be exercised"


# --- NOSCRIPT --------------------------------------------------------------------------------------

def _flush_scripts_everywhere(topology: Topology) -> None:
    for node in topology.processes:
        if not node.sentinel and node.is_running():
            client = node.client()
            client.script_flush()
            client.close()


def test_a_flushed_script_cache_on_every_node_fails_nothing(url: str, clusterq_topology: Topology,
                                                              qname: str) -> None:
    queues = [Queue(f"{qname}-{i}", url) for i in range(4)]
    for q in queues:
        q.enqueue_many([q.prepare_data("jobs.add", (i, 1)) for i in range(50)])
    _flush_scripts_everywhere(clusterq_topology)
    jobs = [q.enqueue("jobs.add", 2, 2) for q in queues]
    worker = Worker(queues, url, install_signal_handlers=False, max_batch=5)
    flusher_stop = threading.Event()

    def flush_repeatedly() -> None:
        while not flusher_stop.wait(0.01):
            _flush_scripts_everywhere(clusterq_topology)

    flusher = threading.Thread(target=flush_repeatedly, daemon=True)
    flusher.start()
    try:
        processed = worker.work(burst=True)
    finally:
        flusher_stop.set()
        flusher.join()
    assert processed == 4 * 51
    assert all(j.return_value() == 4 for j in jobs)
    assert sum(q.finished_job_registry.count for q in queues) == 4 * 51
    assert sum(q.failed_job_registry.count for q in queues) == 0


def test_includes_are_expanded_and_every_library_part_is_used() -> None:
    here = Path(S.__file__).parent
    used = set()
    for path in [*here.glob("*.lua"), *here.glob("lib/*.lua")]:
        raw = path.read_bytes()
        used.update(line[len(S.INCLUDE):].strip().decode() for line in raw.splitlines() if line.startswith(S.INCLUDE))
    for script in S.ALL:
        assert S.INCLUDE not in script.source, f"{script.name}: an include line was not expanded"
        for part in used:  # each part defined once, however many includes reach it (free_slot includes push_job)
            assert script.source.count(f"local function {part}(".encode()) <= 1, f"{script.name} defines {part} twice"
    library = {p.stem for p in (here / "lib").glob("*.lua")}
    assert used == library
