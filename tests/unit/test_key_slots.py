"""Key naming: one hash tag per queue, escaped so a user's name can never move a key to another slot.
(That ``key_slot`` agrees with a server's ``CLUSTER KEYSLOT`` is checked in tests/test_keys.py.)"""

from __future__ import annotations

import pytest

from clusterq.exceptions import InvalidQueueName
from clusterq.state import keys as K
from key_names import HOSTILE_NAMES, all_keys, random_names


@pytest.mark.parametrize("name", HOSTILE_NAMES + random_names(40), ids=lambda n: repr(n)[:30])
def test_every_key_of_a_queue_lands_in_the_queues_slot(name: str) -> None:
    slot = K.queue_slot(name)
    assert {K.key_slot(key) for key in all_keys(name)} == {slot}


def test_escaping_never_makes_two_queue_names_share_keys() -> None:
    names = HOSTILE_NAMES + random_names(200, seed=11)
    bases = {K.QueueKeys(n).base for n in names}
    assert len(bases) == len(set(names))


def test_escaped_name_contains_no_brace() -> None:
    for name in HOSTILE_NAMES:
        escaped = K.escape_name(name)
        assert "{" not in escaped and "}" not in escaped


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
