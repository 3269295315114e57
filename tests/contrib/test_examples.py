"""The example apps of examples/ run for real: each web app in its own server process (uvicorn, Flask's
development server, Django's runserver), a real `clusterq worker` process running their jobs, and httpx
talking to them over TCP."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from clusterq import Queue

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def process(args: list[str], cwd: Path, env: dict[str, str]) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(args, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def wait_for(check: Callable[[], Any], what: str, proc: subprocess.Popen[str] | None = None,
             deadline_s: float = 60.0) -> Any:
    """Poll ``check`` until it returns something truthy (a readiness wait, not a timing assertion)."""
    end = time.monotonic() + deadline_s
    while True:
        try:
            found = check()
            if found:
                return found
        except (httpx.HTTPError, OSError):
            pass
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"{what}: the process exited: {proc.stdout.read() if proc.stdout else ''}")
        if time.monotonic() > end:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.2)


def serve(args: list[str], cwd: Path, env: dict[str, str], port: int) -> contextlib.AbstractContextManager[Any]:
    @contextlib.contextmanager
    def run() -> Iterator[str]:
        with process(args, cwd, env) as proc:
            base = f"http://127.0.0.1:{port}"
            wait_for(lambda: httpx.get(base + "/nothing-here", timeout=2).status_code, f"{args[0]} on {port}", proc)
            yield base
    return run()


@pytest.fixture
def example_env(subprocess_env: dict[str, str], url: str) -> dict[str, str]:
    return dict(subprocess_env, CLUSTERQ_URL=url, APP_SECRET="example-tests-secret-0123456789abcdef")


def test_the_fastapi_example(example_env: dict[str, str]) -> None:
    port = free_port()
    here = EXAMPLES / "fastapi_app"
    server = [str(BIN / "uvicorn"), "app:app", "--port", str(port), "--log-level", "warning"]
    with serve(server, here, example_env, port) as base, httpx.Client(base_url=base, timeout=10) as web:
        handle = web.post("/signup", params={"address": "ada@example.com"}).json()["job"]
        assert web.post("/signup", params={"address": "ada@example.com"}).json()["job"] == handle  # same id
        assert web.get(f"/jobs/status/{handle}").json()["status"] == "queued"
        resized = web.post("/resize", params={"image": "cat.png", "width": 64}).json()["job"]
        assert web.get("/jobs/status/emails/nope").status_code == 404
        worker = [sys.executable, "-m", "clusterq.cli", "worker", "-q", "-c", "1", "-P", "asyncio", "emails", "images"]
        with process(worker, here, example_env) as proc:
            done = wait_for(lambda: web.get(f"/jobs/status/{handle}").json()["status"] == "finished" and
                            web.get(f"/jobs/status/{resized}").json(), "the jobs", proc)
        assert done == {"status": "finished", "result": {"image": "cat.png", "width": 64}}
        assert web.get(f"/jobs/status/{handle}").json()["result"] == "welcome mail sent to ada@example.com"
        anonymous = web.get("/dashboard/", headers={"accept": "text/html"})
        assert anonymous.status_code == 303 and anonymous.headers["location"].startswith("/login?next=")
        web.post("/login", params={"user": "ada"})
        page = web.get("/dashboard/queue", params={"name": "emails"})
        assert page.status_code == 200 and b"emails" in page.content and b'action="/dashboard/action/' in page.content


def test_the_flask_example(example_env: dict[str, str]) -> None:
    port = free_port()
    here = EXAMPLES / "flask_app"
    flask = [str(BIN / "flask"), "--app", "app"]
    with serve([*flask, "run", "--port", str(port)], here, example_env, port) as base, \
            httpx.Client(base_url=base, timeout=10) as web:
        handle = web.post("/greet/ada").json()["job"]
        assert web.get(f"/status/{handle}").json()["status"] == "queued"
        with process([*flask, "clusterq", "worker", "-q", "-c", "1"], here, example_env) as proc:
            wait_for(lambda: web.get(f"/status/{handle}").json()["status"] == "finished", "the job", proc)
        assert web.get(f"/status/{handle}").json()["result"] == "Hello, ada"
        assert web.get("/jobs/").status_code == 302
        web.post("/login", data={"user": "ada"})
        page = web.get("/jobs/")
        assert page.status_code == 200 and b"mail" in page.content


@pytest.fixture
def example_database() -> Iterator[str]:
    """A fresh PostgreSQL database for the Django example (dropped afterwards)."""
    import psycopg

    name = f"clusterq_example_{uuid.uuid4().hex[:8]}"
    with psycopg.connect("host=127.0.0.1 user=postgres dbname=postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        with psycopg.connect("host=127.0.0.1 user=postgres dbname=postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def django_project(example_env: dict[str, str], database: str) -> tuple[Path, dict[str, str], list[str]]:
    """The example project on a fresh database, migrated, with a superuser root / pw-123456."""
    here = EXAMPLES / "django_app"
    env = dict(example_env, EXAMPLE_PGDATABASE=database)
    env.pop("DJANGO_SETTINGS_MODULE", None)
    manage = [sys.executable, "manage.py"]
    subprocess.run([*manage, "migrate", "-v", "0"], cwd=here, env=env, check=True, timeout=300)
    subprocess.run([*manage, "shell", "-c", "from django.contrib.auth.models import User; "
                    "User.objects.create_superuser('root', 'root@example.com', 'pw-123456')"],
                   cwd=here, env=env, check=True, timeout=120)
    return here, env, manage


def admin_login(web: httpx.Client) -> None:
    web.get("/admin/login/")
    web.post("/admin/login/?next=/admin/", data={"username": "root", "password": "pw-123456",
                                                "csrfmiddlewaretoken": web.cookies["csrftoken"], "next": "/admin/"})


def test_the_django_example(example_env: dict[str, str], example_database: str) -> None:
    here, env, manage = django_project(example_env, example_database)
    port = free_port()
    with serve([*manage, "runserver", "--noreload", f"127.0.0.1:{port}"], here, env, port) as base, \
            httpx.Client(base_url=base, timeout=10) as web:
        assert web.post("/orders/", params={"item": "lamp", "fail": "1"}).json() == {"order": None}
        order = web.post("/orders/", params={"item": "desk"}).json()["order"]
        result_id = web.post("/sum/", params={"a": 2, "b": 40}).json()["result_id"]
        assert web.get(f"/tasks/{result_id}").json()["status"] == "READY"
        with process([*manage, "clusterq_worker", "-q", "-c", "1"], here, env) as proc:
            wait_for(lambda: web.get(f"/orders/{order}/").json()["shipped"], "the order shipped", proc)
            wait_for(lambda: web.get(f"/tasks/{result_id}").json()["status"] == "SUCCESSFUL", "the task", proc)
        assert web.get(f"/tasks/{result_id}").json()["value"] == 42
        info = subprocess.run([*manage, "clusterq_info"], cwd=here, env=env, capture_output=True, text=True,
                              timeout=120)
        assert info.returncode == 0 and "orders" in info.stdout
        # the rolled-back order enqueued nothing: one job ever ran on "orders"
        orders = Queue("orders", example_env["CLUSTERQ_URL"])
        assert orders.finished_job_registry.count == 1 and orders.failed_job_registry.count == 0
        # the dashboard, behind the admin's login
        assert web.get("/jobs/").headers["location"].startswith("/admin/login/")
        admin_login(web)
        assert b'href="/jobs/"' in web.get("/admin/").content
        page = web.get("/jobs/queue", params={"name": "orders"})
        assert page.status_code == 200 and b"orders" in page.content


def test_the_django_example_under_asgi_streams_the_live_counts(example_env: dict[str, str],
                                                              example_database: str) -> None:
    """Under uvicorn (ASGI) the dashboard view's event stream is sent chunk by chunk, not read to its end."""
    here, env, _ = django_project(example_env, example_database)
    port = free_port()
    server = [str(BIN / "uvicorn"), "mysite.asgi:application", "--port", str(port), "--log-level", "warning"]
    with serve(server, here, env, port) as base, httpx.Client(base_url=base, timeout=10) as web:
        assert web.get("/jobs/").status_code == 302
        admin_login(web)
        assert web.get("/jobs/").status_code == 200
        with web.stream("GET", "/jobs/events") as events:
            assert events.status_code == 200 and events.headers["content-type"].startswith("text/event-stream")
            received = ""
            for text in events.iter_text():
                received += text
                if "data:" in received:
                    break
        assert "retry:" in received and "data:" in received
