"""clusterq.contrib.fastapi: the client opened in lifespan, AsyncQueue injected with Depends, and the
dashboard mounted behind the app's own authentication (its ``authenticate`` hook)."""

# no `from __future__ import annotations`: FastAPI resolves the endpoints' local Annotated types
from typing import Annotated

import pytest
from fastapi import Depends, FastAPI, Request
from fastapi.testclient import TestClient
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from clusterq import AsyncQueue, Job, JobStatus
from clusterq.contrib.fastapi import ClusterQ
from clusterq.dashboard.auth import Principal


def make_app(url: str, authenticate=None) -> tuple[FastAPI, ClusterQ]:
    cq = ClusterQ(url)
    app = FastAPI(lifespan=cq.lifespan)

    @app.post("/enqueue/{name}")
    async def enqueue(name: str, queue: Annotated[AsyncQueue, Depends(cq.queue("web"))]) -> dict:
        job = await queue.enqueue("jobs.add", 1, 2, description=name)
        return {"handle": job.handle, "queue": id(queue)}

    cq.mount_dashboard(app, "/jobs", authenticate=authenticate, login_url="/login")
    return app, cq


def test_queues_are_injected_from_the_lifespans_client(url) -> None:
    app, _ = make_app(url)
    with TestClient(app) as client:
        first, second = client.post("/enqueue/a").json(), client.post("/enqueue/b").json()
    assert Job.fetch(first["handle"], url).get_status() == JobStatus.QUEUED and second["handle"].startswith("web/")
    assert first["queue"] == second["queue"]  # one AsyncQueue per name and app
    assert app.state.clusterq is None  # closed at shutdown


def test_without_the_lifespan_the_error_says_what_to_do(url) -> None:
    cq = ClusterQ(url)
    app = Starlette(routes=[Route("/", lambda request: JSONResponse(cq.get_queue(request).name))])
    with TestClient(app, raise_server_exceptions=True) as client, \
            pytest.raises(RuntimeError, match=r"FastAPI\(lifespan=cq.lifespan\)"):
        client.get("/")
    with pytest.raises(TypeError, match="must be a Redis URL"):
        ClusterQ(6379)  # type: ignore[arg-type]


def test_the_dashboard_follows_the_apps_authentication(url) -> None:
    def who(request: Request):
        token = request.headers.get("x-user")
        if token == "ops":
            return ("ops", "operator")
        if token == "boss":
            return Principal("boss", "admin", "embedded")
        if token == "weird":
            return ("weird", "root")
        return None

    app, _ = make_app(url, authenticate=who)
    with TestClient(app, follow_redirects=False) as client:
        client.post("/enqueue/x")
        away = client.get("/jobs/", headers={"accept": "text/html"})
        assert away.status_code == 303 and away.headers["location"] == "/login?next=%2Fjobs%2F"
        assert client.get("/jobs/api/counts").status_code == 401
        page = client.get("/jobs/queue", params={"name": "web"}, headers={"x-user": "ops"})
        assert page.status_code == 200 and b"web" in page.content
        assert b"action/empty" not in page.content  # an operator is offered no admin action
        admin = client.get("/jobs/queue", params={"name": "web"}, headers={"x-user": "boss"})
        assert b"action/empty" in admin.content
        assert client.get("/jobs/", headers={"x-user": "weird"}).status_code == 400
