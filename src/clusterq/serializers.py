"""How job arguments and results become bytes in Redis, and back.

JSON is the default: readable in ``redis-cli``, safe to decode, and it refuses at enqueue what it cannot
carry (with the argument named) instead of failing later on a worker. Pickle is available for those who
ask, with a warning: anyone who can write to Redis can then run code on the workers.
"""

from __future__ import annotations

import json
import math
import pickle
import warnings
from typing import Any, Protocol, runtime_checkable

from clusterq.exceptions import DeserializationError, SerializationError
from clusterq.utils import import_attribute


@runtime_checkable
class Serializer(Protocol):
    """Turns job arguments, results and meta into bytes and back. ``name`` is stored with each job."""

    name: str

    def dumps(self, value: Any) -> bytes: ...

    def loads(self, data: bytes) -> Any: ...


MAX_DEPTH = 200
"""How deeply JSON arguments, results and meta may nest: deeper would hit Python's recursion limit in
the encoder (or the worker's decoder) and fail with a RecursionError instead of a clear message."""


def _describe_path(path: str) -> str:
    return f" at {path}" if path else ""


def _find_unserializable(value: Any, path: str = "", depth: int = 0) -> str | None:
    """Return a description of the first value JSON cannot carry, for a precise error message."""
    if depth >= MAX_DEPTH and isinstance(value, (list, tuple, dict)):
        return f"values nested more than {MAX_DEPTH} levels deep{_describe_path(path[:80] + '...')}"
    if isinstance(value, float) and not math.isfinite(value):
        return f"the float {value!r}{_describe_path(path)} (JSON has no NaN or Infinity)"
    if value is None or isinstance(value, (str, bool, int, float)):
        return None
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            found = _find_unserializable(item, f"{path}[{index}]", depth + 1)
            if found:
                return found
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return f"a dict key of type {type(key).__name__}{_describe_path(path)} (JSON keys are strings)"
            found = _find_unserializable(item, f"{path}[{key!r}]", depth + 1)
            if found:
                return found
        return None
    return f"a value of type {type(value).__name__}{_describe_path(path)}"


_SCALARS = frozenset((str, int, float, bool, type(None)))
"""Types that hold no dict key and no nesting: the walk below does not visit them."""


def _has_non_str_key(value: Any) -> bool:
    """True if a dict key is not a str, or the value nests deeper than :data:`MAX_DEPTH` (walked with a
    stack of its own: a recursive walk would itself overflow on the values it is meant to refuse). Only
    containers are pushed: job arguments are mostly flat lists of scalars, which cost one type lookup each."""
    scalars = _SCALARS
    if type(value) in scalars:
        return False
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            if depth >= MAX_DEPTH:
                return True
            for key in item:
                if type(key) is not str and not isinstance(key, str):
                    return True
            children: Any = item.values()
        elif isinstance(item, (list, tuple)):
            if depth >= MAX_DEPTH:
                return True
            children = item
        else:
            continue
        for child in children:
            if type(child) not in scalars:
                stack.append((child, depth + 1))
    return False


def _one_shot_encoder(encoder: json.JSONEncoder) -> Any:
    """The C encoder ``encoder.encode`` builds on every call, built once (None where ``json`` has no C
    accelerator). Without the circular-reference markers: :func:`_has_non_str_key` has walked the value
    first, and a cycle nests deeper than :data:`MAX_DEPTH`, so no value with one reaches it."""
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return None
    try:
        escape = getattr(json.encoder, "c_encode_basestring", None) or json.encoder.encode_basestring
        return make(None, encoder.default, escape,
                    None, encoder.key_separator, encoder.item_separator, encoder.sort_keys, encoder.skipkeys,
                    encoder.allow_nan)
    except TypeError:  # another Python's signature: the encoder's own path
        return None


class JSONSerializer:
    """Compact JSON. Tuples come back as lists; non-str dict keys and other types are refused."""

    name = "json"

    def __init__(self) -> None:
        # No NaN/Infinity: they are not JSON, other readers refuse them, and a NaN argument is a bug to
        # report at enqueue rather than a value to carry.
        self._encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        self._decoder = json.JSONDecoder()
        self._one_shot = _one_shot_encoder(self._encoder)

    def dumps(self, value: Any) -> bytes:
        if _has_non_str_key(value):
            # json would silently turn {1: "a"} into {"1": "a"}: the job would get other data than sent.
            raise SerializationError(f"JSON cannot carry {_find_unserializable(value)}")
        try:
            if self._one_shot is not None:
                return "".join(self._one_shot(value, 0)).encode("utf-8")
            return self._encoder.encode(value).encode("utf-8")
        except UnicodeEncodeError as exc:
            raise SerializationError(f"JSON cannot carry a str with a lone surrogate ({exc.reason} at "
                                     f"position {exc.start}); pass valid text") from None
        except (TypeError, ValueError, RecursionError) as exc:
            what = _find_unserializable(value) or str(exc)
            raise SerializationError(
                f"JSON cannot carry {what}; pass plain data (str, int, float, bool, None, list, dict "
                "with str keys) or choose another serializer"
            ) from None

    def loads(self, data: bytes | str) -> Any:
        try:
            text = data.decode("utf-8") if isinstance(data, (bytes, bytearray)) else data
            return self._decoder.decode(text)
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            preview = bytes(data[:80]) if isinstance(data, (bytes, bytearray)) else data[:80]
            raise DeserializationError(f"payload is not valid JSON ({exc}): {preview!r}") from None


class PickleSerializer:
    """Pickle: carries any picklable object. Only for Redis servers no untrusted party can write to."""

    name = "pickle"

    def __init__(self, *, protocol: int = pickle.HIGHEST_PROTOCOL, warn: bool = True) -> None:
        self.protocol = protocol
        if warn:
            warnings.warn(
                "PickleSerializer: anyone who can write to this Redis can run code on your workers",
                stacklevel=2,
            )

    def dumps(self, value: Any) -> bytes:
        try:
            return pickle.dumps(value, protocol=self.protocol)
        except Exception as exc:
            raise SerializationError(f"pickle cannot carry this value: {exc}") from None

    def loads(self, data: bytes) -> Any:
        try:
            return pickle.loads(data)
        except Exception as exc:
            raise DeserializationError(f"payload is not a valid pickle ({type(exc).__name__}: {exc})") from None


DEFAULT_SERIALIZER: Serializer = JSONSerializer()


def resolve_serializer(serializer: Serializer | type[Serializer] | str | None) -> Serializer:
    """Accept a Serializer instance, ``"json"``, ``"pickle"`` or a dotted path to one; None means JSON."""
    if serializer is None or serializer is DEFAULT_SERIALIZER:
        return DEFAULT_SERIALIZER
    if type(serializer) in (JSONSerializer, PickleSerializer):  # isinstance on a Protocol costs ~20 µs
        return serializer  # type: ignore[return-value]
    if serializer is JSONSerializer:  # the class, as RQ takes it (Queue(serializer=JSONSerializer))
        return DEFAULT_SERIALIZER
    if isinstance(serializer, type):
        serializer = serializer()
    if serializer == "json":
        return DEFAULT_SERIALIZER
    if serializer == "pickle":
        return PickleSerializer()
    candidate: object = serializer
    if isinstance(serializer, str):
        obj = import_attribute(serializer)
        candidate = obj() if isinstance(obj, type) else obj
    if not isinstance(candidate, Serializer):
        raise TypeError(f"{candidate!r} is not a serializer (needs name, dumps and loads)")
    return candidate
