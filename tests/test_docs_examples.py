"""The documentation's examples run, on every topology: the ```python blocks of the migration guide, the
user guide and the README are executed against a real server, in order, in one interpreter per document.

Conventions, in the Markdown itself:

- A block whose first line is ``# path/to/module.py`` is a module: it is written to that path (blocks with
  the same path are joined) before anything runs, in the directory the examples run from. Its URLs are
  replaced by the test server's URL too (a module may open a queue, as ``@job("q", connection=...)`` does).
- Every other block runs, in document order, in one namespace per document (so a block may use what an
  earlier one made). Connection URLs in it (``redis://...``, ``redis+cluster://...``) are replaced by the
  test server's URL.
- HTML comments directly above a block change that: ``<!-- example: skip REASON -->`` marks a block that
  is intentionally not run (the reason is required: a fragment that needs what a test cannot give, such as
  a TLS server or a worker running until it is signalled; keep these few);
  ``<!-- example: worker QUEUE [QUEUE...] -->`` runs a ``clusterq worker`` on those queues while the block
  runs; ``<!-- example: output TEXT -->`` requires TEXT in what the block prints.

Also checked: every public RQ name listed below has a row in the migration guide's tables.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = ["docs/migrating-from-rq.md", "docs/user-guide.md", "README.md", "docs/partitioned-queues.md"]
DEADLINE_S = 300.0

_FENCE = re.compile(r"^```python[ \t]*$")
_MARKER = re.compile(r"^<!--\s*example:\s*(\w+)\s*(.*?)\s*-->\s*$")
_MODULE = re.compile(r"^#\s*([\w./-]+\.py)\s*$")
_URL = re.compile(r"""(?:redis|rediss|redis\+cluster|redis\+sentinel)://[^\s"'`)]*""")


@dataclass
class Block:
    document: str
    line: int  # of the opening fence, 1-based
    code: str
    skip: str | None = None
    worker: list[str] = field(default_factory=list)
    output: list[str] = field(default_factory=list)

    @property
    def module_path(self) -> str | None:
        first = self.code.splitlines()[0] if self.code.strip() else ""
        match = _MODULE.match(first)
        return match.group(1) if match else None


def extract(document: str) -> list[Block]:
    """The ```python blocks of a document, with the markers right above each."""
    lines = (ROOT / document).read_text().splitlines()
    blocks: list[Block] = []
    index = 0
    while index < len(lines):
        if not _FENCE.match(lines[index]):
            index += 1
            continue
        start = index
        index += 1
        body: list[str] = []
        while index < len(lines) and lines[index].strip() != "```":
            body.append(lines[index])
            index += 1
        block = Block(document, start + 1, "\n".join(body) + "\n")
        above = start - 1
        while above >= 0 and (match := _MARKER.match(lines[above])):
            kind, value = match.groups()
            if kind == "skip":
                assert value, f"{document}:{above + 1}: 'example: skip' needs a reason"
                block.skip = value
            elif kind == "worker":
                assert value, f"{document}:{above + 1}: 'example: worker' needs queue names"
                block.worker = value.split()
            elif kind == "output":
                block.output.append(value)
            else:
                raise AssertionError(f"{document}:{above + 1}: unknown example marker {kind!r}")
            above -= 1
        blocks.append(block)
        index += 1
    return blocks


RUNNER = r'''
import contextlib, io, json, os, subprocess, sys, traceback

blocks = json.load(open(sys.argv[1]))
namespace = {"__name__": "__main__"}
for block in blocks:
    where = f"{block['document']}:{block['line']}"
    worker = None
    if block["worker"]:
        worker = subprocess.Popen([sys.executable, "-m", "clusterq.cli", "worker", "-q", "-c", "1", *block["worker"]])
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            exec(compile(block["code"], where, "exec"), namespace)
    except BaseException:
        sys.stdout.write(printed.getvalue())
        traceback.print_exc()
        print(f"EXAMPLE FAILED: {where}", file=sys.stderr)
        sys.exit(1)
    finally:
        if worker is not None:
            worker.terminate()
            worker.wait(60)
    sys.stdout.write(printed.getvalue())
    for expected in block["output"]:
        if expected not in printed.getvalue():
            print(f"EXAMPLE FAILED: {where} printed {printed.getvalue()!r}, without {expected!r}", file=sys.stderr)
            sys.exit(1)
    print(f"EXAMPLE RAN: {where}")
'''


def run_document(document: str, url: str, workdir: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    blocks = extract(document)
    modules: dict[str, str] = {}
    runnable = []
    for block in blocks:
        if block.skip:
            continue
        path = block.module_path
        if path is not None:
            modules[path] = modules.get(path, "") + _URL.sub(url, block.code)
        else:
            runnable.append({"document": block.document, "line": block.line, "worker": block.worker,
                             "output": block.output, "code": _URL.sub(url, block.code)})
    for path, code in modules.items():
        target = workdir / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(code)
    (workdir / "blocks.json").write_text(json.dumps(runnable))
    (workdir / "runner.py").write_text(RUNNER)
    env = dict(env, CLUSTERQ_URL=url, PYTHONPATH=os.pathsep.join([str(workdir), env.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, "runner.py", "blocks.json"], cwd=workdir, env=env, capture_output=True,
                          text=True, timeout=DEADLINE_S)


@pytest.mark.parametrize("document", DOCUMENTS)
def test_the_python_examples_of_the_document_run(document: str, url: str, tmp_path: Path,
                                                 subprocess_env: dict[str, str]) -> None:
    result = run_document(document, url, tmp_path, subprocess_env)
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    ran = result.stdout.count("EXAMPLE RAN:")
    expected = [b for b in extract(document) if not b.skip and b.module_path is None]
    assert ran == len(expected) > 0


def test_the_example_runner_fails_on_a_failing_block_and_checks_output(url: str, tmp_path: Path,
                                                                       subprocess_env: dict[str, str]) -> None:
    """The harness itself can fail: a raising block and a missing output are reported with their line."""
    doc = tmp_path / "doc.md"
    doc.write_text("```python\n# pkg/mod.py\nVALUE = 2\n```\n\n<!-- example: output 4 -->\n```python\n"
                   "from pkg.mod import VALUE\nprint(VALUE * 2)\n```\n\n<!-- example: skip not valid Python -->\n"
                   "```python\nthis is not python\n```\n\n```python\nraise SystemExit(3)\n```\n")
    relative = os.path.relpath(doc, ROOT)
    workdir = tmp_path / "work"
    workdir.mkdir()
    result = run_document(relative, url, workdir, subprocess_env)
    assert result.returncode == 1 and f"EXAMPLE FAILED: {relative}:17" in result.stderr
    assert f"EXAMPLE RAN: {relative}:7" in result.stdout
    doc.write_text("<!-- example: output 5 -->\n```python\nprint(4)\n```\n")
    result = run_document(relative, url, workdir, subprocess_env)
    assert result.returncode == 1 and "without '5'" in result.stderr


# --- every public RQ name has a row ------------------------------------------------------------------

RQ_NAMES = [
    # top level and classes
    "Queue", "Job", "Worker", "SimpleWorker", "SpawnWorker", "Retry", "Repeat", "Callback", "Dependency",
    "get_current_job", "cancel_job", "requeue_job", "send_stop_job_command", "@job", "Result", "Group",
    # registries
    "StartedJobRegistry", "FinishedJobRegistry", "FailedJobRegistry", "CanceledJobRegistry",
    "ScheduledJobRegistry", "DeferredJobRegistry",
    # exceptions
    "NoSuchJobError", "InvalidJobOperation", "DeserializationError", "JobTimeoutException",
    # command line
    "rq worker", "rq worker-pool", "rq info", "rq enqueue", "rq empty", "rq requeue", "rq suspend",
    "rq resume", "rq cron",
]


def _first_cells(document: str) -> list[str]:
    cells = []
    for line in (ROOT / document).read_text().splitlines():
        if line.startswith("|") and not line.startswith("|---"):
            cells.append(line.split("|")[1])
    return cells


@pytest.mark.parametrize("name", RQ_NAMES)
def test_every_public_rq_name_has_a_row_in_the_migration_guide(name: str) -> None:
    cells = _first_cells("docs/migrating-from-rq.md")
    pattern = re.compile(rf"`{re.escape(name)}[`( .\[]")
    assert any(pattern.search(cell) for cell in cells), f"no row for RQ's {name!r} in docs/migrating-from-rq.md"
