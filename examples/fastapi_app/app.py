"""A FastAPI app using clusterq: run it with

    CLUSTERQ_URL=redis://localhost:6379/0 uvicorn app:app          # in examples/fastapi_app
    CLUSTERQ_URL=redis://localhost:6379/0 clusterq worker emails images

POST /signup?address=... enqueues a job; GET /jobs/status/{handle} reads it; /jobs/ is the dashboard,
for users logged in through this app's own session (POST /login?user=...; a stand-in for real auth).
"""

from __future__ import annotations

import os
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Request
from starlette.middleware.sessions import SessionMiddleware

from clusterq import AsyncJob, AsyncQueue, NoSuchJobError
from clusterq.contrib.fastapi import ClusterQ

cq = ClusterQ(os.environ.get("CLUSTERQ_URL"))
app = FastAPI(lifespan=cq.lifespan)
app.add_middleware(SessionMiddleware, secret_key=os.environ.get("APP_SECRET", "change-me-0123456789abcdef"))
ADMINS = {"ada"}
Emails = Annotated[AsyncQueue, Depends(cq.queue("emails"))]  # injected per request, from the lifespan's client
Images = Annotated[AsyncQueue, Depends(cq.queue("images"))]
Redis = Annotated[object, Depends(cq.connection())]


def dashboard_user(request: Request) -> tuple[str, str] | None:
    """Who may see the dashboard: this app's logged-in users (admins may do everything)."""
    user = request.session.get("user")
    if not user:
        return None
    return (user, "admin" if user in ADMINS else "viewer")


cq.mount_dashboard(app, "/dashboard", authenticate=dashboard_user, login_url="/login")


@app.post("/login")
async def login(request: Request, user: str) -> dict:
    request.session["user"] = user
    return {"user": user}


@app.post("/signup")
async def signup(address: str, emails: Emails) -> dict:
    job = await emails.enqueue("tasks.send_welcome", address, job_id=f"welcome:{address}")
    return {"job": job.handle}


@app.post("/resize")
async def resize(image: str, width: int, images: Images) -> dict:
    job = await images.enqueue("tasks.resize", image, width, priority=1)
    return {"job": job.handle}


@app.get("/jobs/status/{handle:path}")
async def status(handle: str, redis: Redis) -> dict:
    try:
        job = await AsyncJob.fetch(handle, redis)
    except NoSuchJobError:
        raise HTTPException(404, f"no job {handle}") from None
    state = await job.get_status(refresh=False)
    finished = state is not None and state.value == "finished"
    return {"status": state.value if state else None, "result": await job.return_value(refresh=False) if finished
            else None}
