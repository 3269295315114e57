"""Finding a job's function without a server: the dotted path a worker will import, refused when a
worker could not import it; import errors name the path and the reason; the allowlist refuses before
anything is imported and cannot be walked around."""

from __future__ import annotations

import sys

import pytest

from clusterq.api.execution import FunctionResolver
from clusterq.exceptions import FunctionNotFound
from clusterq.utils import function_path, import_attribute


class Tasks:
    def method(self) -> None:
        pass


def module_level() -> None:
    pass


def test_module_level_functions_and_methods_have_a_path_a_worker_can_import() -> None:
    here = __name__
    assert function_path(module_level) == f"{here}.module_level"
    assert function_path(Tasks.method) == f"{here}:Tasks.method"  # ":" ends the module part
    assert function_path("any.dotted.path") == "any.dotted.path"
    assert import_attribute(function_path(Tasks.method)) is Tasks.method
    assert import_attribute(f"{here}.module_level") is module_level


def test_what_a_worker_cannot_import_is_refused_at_enqueue() -> None:
    def local() -> None:
        pass

    for func in (local, lambda: None):
        with pytest.raises(FunctionNotFound, match="enqueue a module-level function"):
            function_path(func)
    local.__module__ = "__main__"
    local.__qualname__ = "local"
    with pytest.raises(FunctionNotFound, match="defined in __main__"):
        function_path(local)


@pytest.mark.parametrize("path, reason", [
    ("", "invalid function path"),
    ("nodots", "must look like 'package.module.function'"),
    ("no_such_module_here.f", "module 'no_such_module_here' not found"),
    ("broken_module.f", "importing 'broken_module' raised"),
    ("os.no_such_function", "'os' has no attribute 'no_such_function'"),
])
def test_an_unimportable_path_is_refused_naming_the_reason(path: str, reason: str) -> None:
    with pytest.raises(FunctionNotFound, match=reason):
        import_attribute(path)


def test_the_allowlist_refuses_before_importing_and_cannot_be_walked_around() -> None:
    resolver = FunctionResolver(allow=["jobs.*"])
    assert resolver.resolve("jobs.add")(1, 2) == 3
    sys.modules.pop("no_such_module_here", None)
    with pytest.raises(FunctionNotFound, match="not in this worker's allowlist"):
        resolver.resolve("no_such_module_here.f")
    with pytest.raises(FunctionNotFound, match="reaches into another module"):
        FunctionResolver(allow=["jobs*"]).resolve("jobs:os.system")  # matches "jobs*", yet it is os.system
    with pytest.raises(FunctionNotFound, match="not a function"):
        FunctionResolver().resolve("jobs.SETTINGS")  # a dict: no underscore, still not a job
