"""A Flask app factory using the extension (for tests/contrib/test_flask.py)."""

from __future__ import annotations

from flask import Flask, current_app, redirect, request, session

from clusterq.contrib.flask import ClusterQ

cq = ClusterQ()


@cq.job("mail")
def greet(name: str) -> str:
    """Runs on the worker inside an app context: it reads the app's config."""
    return f"{current_app.config['GREETING']}, {name}"


def create_app(url: str, **config: object) -> Flask:
    app = Flask(__name__)
    app.config.update({"SECRET_KEY": "flask-tests-secret-0123456789", "CLUSTERQ_URL": url,
                       "CLUSTERQ_QUEUES": ["mail"], "GREETING": "Hello", **config})
    cq.init_app(app)
    cq.init_dashboard(app, "/jobs", role=lambda: session.get("role"), login_url="/login")

    @app.post("/login")
    def login():
        session["user"], session["role"] = request.form["user"], request.form.get("role", "operator")
        return redirect(request.args.get("next", "/"))

    @app.post("/greet/<name>")
    def enqueue(name: str):
        job = greet.delay(name)
        return {"handle": job.handle}

    return app
