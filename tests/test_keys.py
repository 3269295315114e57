"""``key_slot`` agrees with the server's ``CLUSTER KEYSLOT`` for every key of hostile queue names. (The
naming itself, without a server: tests/unit/test_key_slots.py.)"""

from __future__ import annotations

import pytest

from clusterq.state import keys as K
from key_names import HOSTILE_NAMES, all_keys, random_names


@pytest.mark.parametrize("clusterq_topology", ["cluster"], indirect=True)
def test_key_slot_agrees_with_the_servers_cluster_keyslot(clusterq_topology) -> None:
    client = clusterq_topology.client()
    try:
        keys = [k for name in HOSTILE_NAMES + random_names(60, seed=3) for k in all_keys(name)]
        keys += ["plain", "{}", "{}{tag}", "a{}b{c}", "{{a}}", "", "{a", "a}", "{tag}x{other}"]
        for key in keys:
            server_slot = client.execute_command("CLUSTER KEYSLOT", key)
            assert K.key_slot(key) == server_slot, key
    finally:
        client.close()
