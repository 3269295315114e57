"""``clusterq.api.partitions.gather`` (pure: plans are generators, driven here by hand): the partitions'
script calls of one turn go out as one ``run_many`` (which the store sends as one pipeline per node), other
steps one by one, and each plan gets its own replies and errors. Also the partition names' slots."""

from __future__ import annotations

from typing import Any

import pytest

from clusterq.api.partitions import gather
from clusterq.state import keys as K
from clusterq.state.plan import Plan, Step, client_step, store_step

pytestmark = pytest.mark.unit


def _plan(tag: str, log: list[str]) -> Plan[str]:
    one = yield store_step("run", f"{tag}-a")
    many = yield store_step("run_many", [f"{tag}-b", f"{tag}-c"], raise_on_error=False)
    other = yield client_step("hget", "k", tag)
    log.append(f"{tag}:{other}")
    return f"{tag}:{one}:{','.join(many)}"


def _drive(plan: Plan[Any], answer: Any) -> tuple[Any, list[Step]]:
    sent: list[Step] = []
    try:
        step = next(plan)
        while True:
            sent.append(step)
            try:
                reply = answer(step)
            except Exception as exc:
                step = plan.throw(exc)
            else:
                step = plan.send(reply)
    except StopIteration as stop:
        return stop.value, sent


def _answer(step: Step) -> Any:
    if step.method == "run_many":
        return [f"ok({call})" if "bad" not in call else ValueError(call) for call in step.args[0]]
    return f"h({step.args[1]})"


def test_script_calls_of_one_turn_are_merged_into_one_run_many() -> None:
    log: list[str] = []
    result, sent = _drive(gather([_plan("p0", log), _plan("p1", log), _plan("p2", log)]), _answer)
    assert result == [f"p{i}:ok(p{i}-a):ok(p{i}-b),ok(p{i}-c)" for i in range(3)]
    assert [s.method for s in sent] == ["run_many", "run_many", "hget", "hget", "hget"]
    assert sent[0].args[0] == ["p0-a", "p1-a", "p2-a"]
    assert sent[1].args[0] == ["p0-b", "p0-c", "p1-b", "p1-c", "p2-b", "p2-c"]
    assert log == ["p0:h(p0)", "p1:h(p1)", "p2:h(p2)"]


def test_an_error_goes_to_the_plan_whose_call_failed() -> None:
    def plan(tag: str) -> Plan[str]:
        try:
            reply = yield store_step("run", tag)
        except ValueError as exc:
            return f"caught {exc}"
        return str(reply)

    result, _ = _drive(gather([plan("good"), plan("bad"), plan("fine")]), _answer)
    assert result == ["ok(good)", "caught bad", "ok(fine)"]


@pytest.mark.parametrize("partitions", [2, 3, 12, 64, 1000, 1024])
@pytest.mark.parametrize("name", ["events", "q-{x}-%7B", "ünï", "a" * 1000])
def test_partitions_sit_at_evenly_spaced_slots(name: str, partitions: int) -> None:
    names = K.partition_names(name, partitions)
    assert names[0] == name and len(set(names)) == partitions
    base = K.queue_slot(name)
    assert [K.queue_slot(n) for n in names] == [(base + round(i * 16384 / partitions)) % 16384
                                                for i in range(partitions)]


def test_every_slot_value_has_a_suffix() -> None:
    assert len(K._suffix_table()) == 16384


def test_bad_partition_counts_and_long_names_are_refused() -> None:
    for bad in (0, -3, 1025, 1.5, "2", True, None):
        with pytest.raises(ValueError, match="partitions must be an int from 1 to 1024"):
            K.validate_partitions(bad)
    with pytest.raises(K.InvalidQueueName, match="at most 1008 bytes"):
        K.partition_names("x" * 1010, 2)
    assert K.partition_names("x" * 1010, 1) == ("x" * 1010,)
