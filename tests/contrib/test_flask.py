"""clusterq.contrib.flask: app factories, the `flask clusterq` commands running a real worker in an app
context, and the dashboard behind the app's own login (through the ASGI bridge)."""

from __future__ import annotations

import re
from urllib.parse import urlencode

import pytest
from flask import Flask
from flaskapp import create_app, greet

from clusterq import Job, JobStatus
from clusterq.contrib.flask import ClusterQ


def test_an_app_without_init_app_is_a_clear_error(url) -> None:
    cq = ClusterQ()
    app = Flask("bare")
    with app.app_context(), pytest.raises(RuntimeError, match=r"not initialised for app 'bare'.*init_app"):
        cq.get_queue("x")
    with pytest.raises(RuntimeError, match="application context"):
        cq.get_queue("x")
    with pytest.raises(ValueError, match=r"app.config\['CLUSTERQ_URL'\] is missing"):
        cq.init_app(Flask("nourl"))
    broken = Flask("broken")
    broken.config.update(CLUSTERQ_URL=url, CLUSTERQ_QUEUES="mail")
    with pytest.raises(ValueError, match=r"CLUSTERQ_QUEUES"):
        cq.init_app(broken)


def test_one_extension_serves_apps_made_by_a_factory(url, clusterq_standalone) -> None:
    first, second = create_app(url), create_app(clusterq_standalone.url)
    with first.app_context():
        job = greet.delay("ada")
        assert job.get_status() == JobStatus.QUEUED
    with second.app_context():
        assert ClusterQ().state(second).url == clusterq_standalone.url
    assert Job.fetch(job.handle, url).args == ["ada"]


def test_the_worker_command_runs_jobs_in_an_app_context(url) -> None:
    app = create_app(url, GREETING="Bonjour")
    with app.test_client() as client:
        handle = client.post("/greet/ada").get_json()["handle"]
    result = app.test_cli_runner().invoke(args=["clusterq", "worker", "--burst", "-P", "solo"])  # CLUSTERQ_QUEUES
    assert result.exit_code == 0, result.output
    job = Job.fetch(handle, url)
    assert job.get_status() == JobStatus.FINISHED and job.return_value() == "Bonjour, ada"
    info = app.test_cli_runner().invoke(args=["clusterq", "info"])
    assert info.exit_code == 0 and "mail" in info.output
    app.test_cli_runner().invoke(args=["clusterq", "suspend", "mail"])
    with app.app_context():
        from flaskapp import cq

        assert cq.get_queue("mail").is_suspended
    assert app.test_cli_runner().invoke(args=["clusterq", "resume", "mail"]).exit_code == 0
    bad = app.test_cli_runner().invoke(args=["clusterq", "worker", "--pool", "nope"])
    assert bad.exit_code != 0


def test_synchronous_mode(url) -> None:
    app = create_app(url, CLUSTERQ_SYNC=True)
    with app.app_context():
        job = greet.delay("bo")
        assert job.get_status() == JobStatus.FINISHED and job.return_value() == "Hello, bo"


def test_the_dashboard_is_behind_the_apps_login(url) -> None:
    app = create_app(url)
    with app.app_context():
        from flaskapp import cq

        cq.enqueue("flaskapp.greet", "x", queue="mail")
    client = app.test_client()
    first = client.get("/jobs/")
    assert first.status_code == 302 and first.headers["Location"].startswith("/login?next=%2Fjobs%2F")
    assert client.post("/jobs/action/suspend", data={"queue": "mail"}).status_code == 401
    client.post("/login", data={"user": "ada", "role": "operator"})
    page = client.get("/jobs/")
    assert page.status_code == 200 and b"mail" in page.data and b'href="/jobs/queue?name=mail' in page.data
    queue_page = client.get("/jobs/queue?name=mail")
    token = re.search(rb'name="csrf" value="([0-9a-f]+)"', queue_page.data).group(1).decode()
    done = client.post("/jobs/action/suspend", data=urlencode({"csrf": token, "queue": "mail"}),
                       content_type="application/x-www-form-urlencoded")
    assert done.status_code == 303
    with app.app_context():
        assert cq.get_queue("mail").is_suspended
    assert client.get("/jobs/static/dashboard.css").status_code == 200
