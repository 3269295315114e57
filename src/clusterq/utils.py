"""Small helpers shared by the producer and the worker."""

from __future__ import annotations

import importlib
import time
from collections.abc import Iterable
from importlib import metadata
from typing import Any

from clusterq.exceptions import FunctionNotFound


def import_attribute(path: str) -> object:
    """Import ``package.module.attr`` (or ``package.module:attr``) and return the attribute.

    Raises :class:`FunctionNotFound` naming the path and the reason: a missing module, a missing
    attribute, or an exception raised while the module was imported. Typed ``object``: the caller
    checks that it got what it needs (a callable, a serializer).
    """
    if not isinstance(path, str) or not path:
        raise FunctionNotFound(f"invalid function path {path!r}")
    if ":" in path:
        module_name, _, attr_path = path.partition(":")
    else:
        module_name, _, attr_path = path.rpartition(".")
    if not module_name or not attr_path:
        raise FunctionNotFound(f"function path {path!r} must look like 'package.module.function'")
    try:
        obj: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise FunctionNotFound(f"cannot import {path!r}: module {exc.name!r} not found") from None
    except Exception as exc:
        raise FunctionNotFound(
            f"cannot import {path!r}: importing {module_name!r} raised {type(exc).__name__}: {exc}"
        ) from None
    for part in attr_path.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise FunctionNotFound(f"cannot import {path!r}: {module_name!r} has no attribute {attr_path!r}") from None
    return obj


def entry_points(group: str) -> list[metadata.EntryPoint]:
    """The entry points of ``group`` in the installed distributions, like
    ``importlib.metadata.entry_points(group=group)`` (the first distribution of a name on ``sys.path`` wins),
    but only the distributions whose ``entry_points.txt`` names the group are parsed: the standard call parses
    every one, about 5 ms with a hundred packages installed, paid at each worker start."""
    header = f"[{group}]"
    seen: set[str] = set()
    found: list[metadata.EntryPoint] = []
    for dist in metadata.distributions():
        name = getattr(dist, "_normalized_name", None) or str(dist.metadata["Name"] or "").lower().replace("-", "_")
        if name in seen:
            continue
        seen.add(name)
        text = dist.read_text("entry_points.txt")
        if text and header in text:
            found.extend(point for point in dist.entry_points if point.group == group)
    return found


def function_path(func: Any) -> str:
    """The dotted path a worker will import to find ``func``; refuses what cannot be found that way."""
    if isinstance(func, str):
        return func
    module = getattr(func, "__module__", None)
    qualname = getattr(func, "__qualname__", None)
    if not module or not qualname or "<locals>" in qualname or "<lambda>" in qualname:
        raise FunctionNotFound(
            f"{func!r} cannot be imported by a worker: enqueue a module-level function or its dotted path"
        )
    if module == "__main__":
        raise FunctionNotFound(
            f"{qualname} is defined in __main__, which a worker cannot import: move it to a module"
        )
    # A method or nested function: "module:Class.method", so the worker knows where the module ends.
    return f"{module}:{qualname}" if "." in qualname else f"{module}.{qualname}"


def now_ms() -> int:
    return int(time.time() * 1000)


def decode_all(members: Iterable[Any]) -> list[str]:
    """Members of a list or sorted-set reply as str, whether the client decodes replies or not. (Typed
    ``Any``: redis-py types a ZRANGE reply as members or (member, score) pairs alike.)"""
    return [m.decode() if isinstance(m, bytes) else str(m) for m in members]
