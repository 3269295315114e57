"""Key naming: one hash tag per queue, escaped so a user's name can never move a key to another slot;
``key_slot`` agrees with the server's ``CLUSTER KEYSLOT``."""

from __future__ import annotations

import random
import string

import pytest

from clusterq.exceptions import InvalidQueueName
from clusterq.state import keys as K

HOSTILE_NAMES = [
    "{", "}", "}{", "{}", "{{}}", "a{b}c", "{a}", "}a{", "%", "%7B", "%7D", "%25", "{%7B}",
    "emails", "队列-🚀", "ñandú", "tab\tand\nnewline", "sp ace", ":", "cq:{x}:pending", " ",
    "x" * 1024, "{" * 1024, "}" * 1024, "é" * 512,
]


def _random_names(count: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    alphabet = string.ascii_letters + string.digits + "{}%:-_ /\\" + "é中🚀"
    return ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 40))) for _ in range(count)]


def _all_keys(name: str) -> list[str]:
    qk = K.QueueKeys(name)
    return [qk.pending, qk.active, qk.finished, qk.failed, qk.canceled, qk.stats, qk.wake_channel,
            qk.job("some-id"), qk.job("{evil}"), qk.job("}{"), qk.job_prefix]


@pytest.mark.parametrize("name", HOSTILE_NAMES + _random_names(40), ids=lambda n: repr(n)[:30])
def test_every_key_of_a_queue_lands_in_the_queues_slot(name: str) -> None:
    slot = K.queue_slot(name)
    assert {K.key_slot(key) for key in _all_keys(name)} == {slot}


def test_escaping_never_makes_two_queue_names_share_keys() -> None:
    names = HOSTILE_NAMES + _random_names(200, seed=11)
    bases = {K.QueueKeys(n).base for n in names}
    assert len(bases) == len(set(names))


def test_escaped_name_contains_no_brace() -> None:
    for name in HOSTILE_NAMES:
        escaped = K.escape_name(name)
        assert "{" not in escaped and "}" not in escaped


@pytest.mark.parametrize("clusterq_topology", ["cluster"], indirect=True)
def test_key_slot_agrees_with_the_servers_cluster_keyslot(clusterq_topology) -> None:
    client = clusterq_topology.client()
    try:
        keys = [k for name in HOSTILE_NAMES + _random_names(60, seed=3) for k in _all_keys(name)]
        keys += ["plain", "{}", "{}{tag}", "a{}b{c}", "{{a}}", "", "{a", "a}", "{tag}x{other}"]
        for key in keys:
            server_slot = client.execute_command("CLUSTER KEYSLOT", key)
            assert K.key_slot(key) == server_slot, key
    finally:
        client.close()


def test_crc16_matches_the_reference_vector() -> None:
    # The Redis Cluster specification gives CRC16("123456789") == 0x31C3.
    assert K.crc16(b"123456789") == 0x31C3


@pytest.mark.parametrize("bad", ["", None, 42, "x" * 1025, "é" * 513])
def test_invalid_queue_names_are_refused_with_a_clear_error(bad: object) -> None:
    with pytest.raises(InvalidQueueName) as info:
        K.validate_queue_name(bad)
    assert any(word in str(info.value) for word in ("empty", "bytes", "str"))


def test_registry_names_map_to_the_queues_sorted_sets() -> None:
    qk = K.QueueKeys("q")
    assert qk.registry("started") == qk.active
    assert qk.registry("failed") == qk.failed
    with pytest.raises(ValueError, match="unknown registry"):
        qk.registry("nope")
