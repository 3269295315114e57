"""Every row of the migration guide's "Every RQ name, checked" table holds: its clusterq name resolves,
and an RQ form marked refused raises the error the row names (issue 15)."""

from __future__ import annotations

import builtins
import importlib
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import clusterq
from clusterq import Job, Queue, Retry, Worker

GUIDE = Path(__file__).resolve().parent.parent / "docs" / "migrating-from-rq.md"
SECTION = "## Every RQ name, checked"
_CODE = re.compile(r"`([^`]+)`")
_REFUSED = re.compile(r"^refused: `(\w+)`")


def rows() -> list[tuple[str, str, str]]:
    text = GUIDE.read_text()
    assert SECTION in text, f"the migration guide lost its section {SECTION!r}"
    table = []
    for line in text.split(SECTION, 1)[1].splitlines():
        if line.startswith("## "):
            break
        if not line.startswith("|") or line.startswith("|---") or line.startswith("| RQ "):
            continue
        rq, ours, outcome = (cell.strip() for cell in line.strip("|").split("|")[:3])
        table.append((_CODE.findall(rq)[0], _CODE.findall(ours)[0], outcome))
    return table


def resolve(path: str) -> Any:
    """``clusterq.registry.FailedJobRegistry``, ``clusterq.Job.fetch``: the longest importable module,
    then attributes."""
    parts = path.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for name in parts[cut:]:
            obj = getattr(obj, name)
        return obj
    raise ImportError(path)


def _queue_key() -> None:
    Queue.key.fget(Queue.__new__(Queue))  # type: ignore[attr-defined]  # defined on QueueCore


def _worker(**options: Any) -> Callable[[], object]:
    return lambda: Worker(["default"], "redis://127.0.0.1:1/0", **options)


# How each refused RQ form is tried (no server needed: each is refused before anything is sent).
REFUSED: dict[str, Callable[[], object]] = {
    "rq.Queue.key": _queue_key,
    "rq.Queue(job_class=...)": lambda: Queue("default", "redis://127.0.0.1:1/0", job_class=Job),  # type: ignore[arg-type]
}


@pytest.mark.parametrize("rq,ours,outcome", rows(), ids=[row[0] for row in rows()])
def test_each_name_of_the_guide_resolves_or_raises_the_documented_error(rq: str, ours: str, outcome: str) -> None:
    assert ours.startswith("clusterq."), ours
    assert resolve(ours) is not None
    refused = _REFUSED.match(outcome)
    if refused is None:
        return
    error = getattr(clusterq, refused.group(1), None) or getattr(builtins, refused.group(1))
    assert rq in REFUSED, f"the guide marks {rq} refused: add how to try it to REFUSED"
    with pytest.raises(error):
        REFUSED[rq]()


def test_every_refused_form_tried_here_is_in_the_guide() -> None:
    assert set(REFUSED) == {rq for rq, _, outcome in rows() if _REFUSED.match(outcome)}


def test_the_rq_worker_forms_the_guide_lists_as_accepted_are_accepted(url: str) -> None:
    """``Worker(exception_handlers=...)``, ``disable_default_exception_handler``, ``Retry(on=...)`` and
    ``work(with_scheduler=True)``: once refused, now RQ's forms (tests/test_exception_handlers.py runs them)."""
    worker = Worker(["default"], url, pool="solo", exception_handlers=[print], disable_default_exception_handler=True,
                    install_signal_handlers=False)
    assert worker.executor.exception_handlers == (print,)
    assert Retry(max=1, on=[ValueError]).on == (ValueError,)
    assert worker.work(burst=True, with_scheduler=True) == 0
