"""A Flask app (factory) using clusterq: run it with

    export CLUSTERQ_URL=redis://localhost:6379/0            # in examples/flask_app
    flask --app app run                                      # the web app
    flask --app app clusterq worker                          # a worker (queues: CLUSTERQ_QUEUES)

POST /greet/<name> enqueues a job; GET /status/<handle> reads it; /jobs/ is the dashboard, for users logged
in through this app's session (POST /login with user=...; a stand-in for Flask-Login or the like).
"""

from __future__ import annotations

import os

from ext import cq
from flask import Flask, redirect, request, session

from clusterq import Job


def create_app() -> Flask:
    app = Flask(__name__)
    app.config.update(SECRET_KEY=os.environ.get("APP_SECRET", "change-me-0123456789abcdef"),
                      CLUSTERQ_URL=os.environ.get("CLUSTERQ_URL"), CLUSTERQ_QUEUES=["mail"], GREETING="Hello")
    cq.init_app(app)
    cq.init_dashboard(app, "/jobs", role=lambda: "admin" if session.get("user") else None, login_url="/login")

    @app.post("/login")
    def login():
        session["user"] = request.form["user"]
        return redirect(request.args.get("next") or "/")

    @app.post("/greet/<name>")
    def greet(name: str):
        from tasks import greet

        return {"job": greet.delay(name).handle}

    @app.get("/status/<path:handle>")
    def status(handle: str):
        job = Job.fetch(handle, cq.connection())
        state = job.get_status(refresh=False)
        return {"status": state.value if state else None,
                "result": job.return_value(refresh=False) if state and state.value == "finished" else None}

    return app
