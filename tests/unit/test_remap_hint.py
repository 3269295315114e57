"""What a failed cluster connection adds when the nodes announce addresses the client was not told how to
reach (NAT, port forwarding, Kubernetes): the addresses, and the ``remap`` option. Pure functions; the
same message from a real cluster behind kernel NAT: tests/nat/test_nat_cluster.py."""

from __future__ import annotations

from clusterq.connection.sync import announced_nodes, remap_hint, unmapped_nodes

SLOTS = [
    [0, 8191, [b"10.77.0.11", 6379, b"id-a", {}], [b"10.77.0.14", 6379, b"id-d", {}]],
    [8192, 16383, [b"10.77.0.12", 6379, b"id-b", {}], [b"", 6379, b"id-e", {}]],
]
SEEDS = [("10.78.0.2", 7001)]


def test_announced_nodes_lists_primaries_and_replicas_once_each_skipping_unknown_endpoints() -> None:
    assert announced_nodes(SLOTS) == [("10.77.0.11", 6379), ("10.77.0.14", 6379), ("10.77.0.12", 6379)]
    assert announced_nodes([[0, 16383, ["h", "7000", "id"]], [0, 1, ["h", 7000]]]) == [("h", 7000)]
    assert announced_nodes(None) == []


def test_without_a_remap_the_hint_names_the_announced_addresses_and_the_option() -> None:
    hint = remap_hint(announced_nodes(SLOTS), SEEDS, None)
    assert "10.77.0.11:6379, 10.77.0.14:6379, 10.77.0.12:6379" in hint
    assert "remap=announced_host:port>reachable_host:port" in hint and "docs/nat.md" in hint


def test_a_remap_that_misses_a_node_names_just_that_node() -> None:
    remap = {("10.77.0.11", 6379): ("10.78.0.2", 7001), ("10.77.0.12", 6379): ("10.78.0.2", 7002)}
    hint = remap_hint(announced_nodes(SLOTS), SEEDS, remap)
    assert "does not cover: 10.77.0.14:6379 " in hint and "10.77.0.11" not in hint
    remap[("10.77.0.14", 6379)] = ("10.78.0.2", 7004)
    assert remap_hint(announced_nodes(SLOTS), SEEDS, remap) == ""
    # A function remaps too: whatever it changes counts as covered.
    assert remap_hint(announced_nodes(SLOTS), SEEDS, lambda a: ("10.78.0.2", a[1])) == ""


def test_no_hint_when_the_nodes_announce_the_seeds_own_host() -> None:
    """A cluster on the client's own network that is merely down: the remap is not the problem."""
    local = [[0, 16383, [b"127.0.0.1", 7000, b"id"], [b"127.0.0.1", 7001, b"id2"]]]
    assert remap_hint(announced_nodes(local), [("127.0.0.1", 7000)], None) == ""


def test_a_long_list_is_cut_short() -> None:
    many = [(f"10.77.0.{i}", 6379) for i in range(20)]
    hint = remap_hint(many, SEEDS, None)
    assert "10.77.0.5:6379 (+14 more)" in hint and "10.77.0.6:" not in hint


def test_unmapped_nodes_are_those_a_remap_table_left_on_an_unseeded_host() -> None:
    remap = {("10.77.0.11", 6379): ("10.78.0.2", 7001), ("10.77.0.12", 6379): ("10.78.0.2", 7002)}
    opened = [("10.78.0.2", 7001), ("10.78.0.2", 7002), ("10.77.0.14", 6379)]  # as the client holds them
    assert unmapped_nodes(opened, SEEDS, remap) == [("10.77.0.14", 6379)]
    assert unmapped_nodes(opened, SEEDS, None) == []
    assert unmapped_nodes(opened, SEEDS, lambda a: a) == []  # a function: nothing to check against
    assert unmapped_nodes([("10.78.0.2", 7009)], SEEDS, remap) == []  # on a seed's host: reachable
