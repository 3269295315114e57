"""Serializers without a server: JSON carries exactly what it is given or refuses naming the value;
payloads that are not JSON are refused with a preview; a serializer named by a dotted path must be one."""

from __future__ import annotations

import pickle

import pytest

from clusterq import JSONSerializer, PickleSerializer
from clusterq.exceptions import DeserializationError, FunctionNotFound, SerializationError
from clusterq.serializers import DEFAULT_SERIALIZER, resolve_serializer


class Odd:
    pass


def test_json_round_trips_plain_data_and_turns_tuples_into_lists() -> None:
    value = {"a": [1, 2.5, None, True, "é🚀"], "nested": {"t": (1, 2)}}
    data = JSONSerializer().dumps(value)
    assert isinstance(data, bytes) and b" " not in data  # compact
    assert JSONSerializer().loads(data) == {"a": [1, 2.5, None, True, "é🚀"], "nested": {"t": [1, 2]}}
    assert JSONSerializer().loads(data.decode()) == JSONSerializer().loads(data)  # str replies too


@pytest.mark.parametrize("value, named", [
    ({1: "a"}, "a dict key of type int"),
    ({"outer": {2: "b"}}, "a dict key of type int at ['outer']"),
    ([1, {"x": Odd()}], "a value of type Odd at [1]['x']"),
    ({"when": {1, 2}}, "a value of type set at ['when']"),
])
def test_json_refuses_what_it_would_change_or_cannot_carry_naming_where(value: object, named: str) -> None:
    with pytest.raises(SerializationError) as info:
        JSONSerializer().dumps(value)
    assert named in str(info.value)


@pytest.mark.parametrize("payload", [b"{not json", "{not json", bytearray(b"\xff\xfe")])
def test_a_payload_that_is_not_json_is_refused_with_a_preview(payload: bytes | str) -> None:
    with pytest.raises(DeserializationError, match="not valid JSON") as info:
        JSONSerializer().loads(payload)  # type: ignore[arg-type]
    assert "not json" in str(info.value) or "\\xff" in str(info.value)


def test_pickle_warns_when_made_and_round_trips_what_json_cannot() -> None:
    with pytest.warns(UserWarning, match="run code on your workers"):
        PickleSerializer()
    quiet = PickleSerializer(warn=False)
    assert quiet.loads(quiet.dumps({1: {2, 3}})) == {1: {2, 3}}
    with pytest.raises(SerializationError, match="pickle cannot carry"):
        quiet.dumps(lambda: None)
    with pytest.raises(DeserializationError, match="not a valid pickle"):
        quiet.loads(b"nonsense")
    assert pickle.loads(quiet.dumps([1])) == [1]


def test_serializers_are_resolved_from_names_paths_and_instances() -> None:
    assert resolve_serializer(None) is DEFAULT_SERIALIZER and resolve_serializer("json") is DEFAULT_SERIALIZER
    custom = JSONSerializer()
    assert resolve_serializer(custom) is custom
    assert isinstance(resolve_serializer("clusterq.serializers.JSONSerializer"), JSONSerializer)  # a class: made
    assert resolve_serializer("clusterq.serializers.DEFAULT_SERIALIZER") is DEFAULT_SERIALIZER  # an instance
    with pytest.warns(UserWarning):
        assert resolve_serializer("pickle").name == "pickle"


def test_a_path_to_something_that_is_not_a_serializer_is_refused_where_it_is_named() -> None:
    with pytest.raises(TypeError, match="is not a serializer"):
        resolve_serializer("clusterq.utils.now_ms")
    with pytest.raises(TypeError, match="is not a serializer"):
        resolve_serializer(42)  # type: ignore[arg-type]
    with pytest.raises(FunctionNotFound, match="no_such_module"):
        resolve_serializer("no_such_module.Serializer")
