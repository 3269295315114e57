"""An RQ application ported by changing its imports and its connection line only (issue 15), run on
every topology: progress in ``job.meta`` with ``get_current_job``, ``Job.fetch`` by id, retries with
intervals, success and failure callbacks, exception handlers, ``result_ttl=0``, ``is_async=False``,
``FailedJobRegistry`` and requeue.

``tests/rq_port/rq_original/*.py.txt`` is the RQ application as written for RQ; ``tests/rq_port/*.py``
is the port. The first test holds the two to "only imports and the connection line differ"."""

from __future__ import annotations

import difflib
import importlib
import re
import time
from pathlib import Path

import pytest

from clusterq import Queue, Worker
from worker_thread import running

PORT = Path(__file__).parent / "rq_port"
DEADLINE_S = 60.0
ALLOWED_CHANGE = re.compile(r"^(from \S+ import .*|import \S+|redis_conn = .*)$")


@pytest.mark.parametrize("module", ["app", "tasks"])
def test_the_port_changes_only_imports_and_the_connection_line(module: str) -> None:
    original = (PORT / "rq_original" / f"{module}.py.txt").read_text().splitlines()
    ported = (PORT / f"{module}.py").read_text().splitlines()
    changed = [line[2:] for line in difflib.ndiff(original, ported) if line[:2] in ("- ", "+ ")]
    assert changed, "the port must differ somewhere (its imports)"
    assert [line for line in changed if line.strip() and not ALLOWED_CHANGE.match(line)] == []


def _wait(what: str, check) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + DEADLINE_S
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_the_ported_rq_app_runs(url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", url)
    import rq_port.app

    app = importlib.reload(rq_port.app)  # its module-level connection reads REDIS_URL

    # is_async=False: runs at once, in this thread
    assert app.thumbnail_now("cat.png") == "cat-small.png"

    export_id = app.launch_export(7, 5)
    assert len(export_id) <= 36  # fits the app's task column
    assert app.export_status(export_id)["status"] == "queued"
    mail_id = app.send_welcome("ann@example.com", str(tmp_path / "smtp-tries"))
    visit_id = app.record_visit()
    bad_id = app.resize_later("scan.bmp")

    worker = Worker([app.task_queue, app.email_queue], url, pool="thread", concurrency=2,
                    install_signal_handlers=False, exception_handlers=app.EXCEPTION_HANDLERS)
    with running(worker):
        _wait("the export", lambda: app.export_status(export_id)["notified"] is not None)
        status = app.export_status(export_id)
        assert status == {"status": "finished", "progress": 100.0, "result": {"user": 7, "posts": 5},
                          "notified": 5}
        _wait("the e-mail, retried twice", lambda: app.email_status(mail_id)[0] == "finished")
        assert app.email_status(mail_id) == ("finished", "sent to ann@example.com after 3 tries", 1)
        _wait("the fire-and-forget job", lambda: app.visit_recorded(visit_id))
        _wait("the failed resize", lambda: app.failed_tasks() == [bad_id])
        assert app.failure_of(bad_id) == "unsupported format: scan.bmp"
        # RQ's exception-handler chain ran in the worker: the second handler returned False.
        assert app.crash_of(bad_id) == ("ValueError: unsupported format: scan.bmp", None)

        app.retry_failed_tasks()
        _wait("the requeued resize to fail again", lambda: app.failed_tasks() == [bad_id]
              and Queue("myapp-tasks", url).count == 0)
    assert app.export_status(bad_id)["status"] == "failed"
