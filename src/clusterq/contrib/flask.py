"""clusterq in a Flask application (``pip install 'clusterq[flask]'``), with app factories:

    from clusterq.contrib.flask import ClusterQ
    cq = ClusterQ()                       # module level, no app yet

    def create_app():
        app = Flask(__name__)
        app.config["CLUSTERQ_URL"] = "redis+cluster://10.0.0.1:6379"
        cq.init_app(app)
        cq.init_dashboard(app, "/jobs", role=lambda: "admin" if session.get("user") else None, login_url="/login")
        return app

    @cq.job("emails")
    def send_welcome(address): ...        # runs inside an app context on the worker

    $ flask --app myapp clusterq worker emails     # also: cron, info, suspend, resume

Configuration keys: ``CLUSTERQ_URL`` (required, a Redis URL), ``CLUSTERQ_QUEUES`` (what ``flask clusterq
worker`` serves by default), ``CLUSTERQ_SIGNING_KEY``, ``CLUSTERQ_SYNC`` (tests: jobs run at once). Using
the extension in an app it was not initialised for raises a :class:`RuntimeError` saying so.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import click
from flask import Blueprint, Flask, Response, current_app, redirect, request
from flask.cli import AppGroup

from clusterq.api.decorators import DelayedFunction
from clusterq.api.decorators import job as _job
from clusterq.api.job import Job
from clusterq.api.queue import Queue
from clusterq.connection.sync import Client, connect
from clusterq.contrib.asgi_bridge import ASGIBridge, principal_from_scope
from clusterq.signing import KEY_ENV

EXTENSION = "clusterq"
ROLES = ("viewer", "operator", "admin")


@dataclass
class _State:
    url: str
    queues: tuple[str, ...]
    signing_key: bytes | None
    sync: bool
    client: Client | None = None
    opened: dict[str, Queue] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _config(app: Flask) -> _State:
    def bad(key: str, problem: str) -> ValueError:
        return ValueError(f"app.config[{key!r}] {problem} (app {app.name!r})")

    url = app.config.get("CLUSTERQ_URL") or os.environ.get("CLUSTERQ_URL")
    if not url:
        raise bad("CLUSTERQ_URL", "is missing: give a Redis URL (redis://, redis+sentinel://, redis+cluster://)")
    if not isinstance(url, str):
        raise bad("CLUSTERQ_URL", f"must be a str (a Redis URL), got {type(url).__name__}")
    queues = app.config.get("CLUSTERQ_QUEUES", ["default"])
    if isinstance(queues, str) or not isinstance(queues, (list, tuple)) or not queues \
            or not all(isinstance(q, str) and q for q in queues):
        raise bad("CLUSTERQ_QUEUES", f"must be a non-empty list of queue names, got {queues!r}")
    key = app.config.get("CLUSTERQ_SIGNING_KEY")
    if key is not None and not isinstance(key, (str, bytes)):
        raise bad("CLUSTERQ_SIGNING_KEY", f"must be a str or bytes, got {type(key).__name__}")
    sync = app.config.get("CLUSTERQ_SYNC", False)
    if not isinstance(sync, bool):
        raise bad("CLUSTERQ_SYNC", f"must be True or False, got {sync!r}")
    return _State(url, tuple(queues), key.encode() if isinstance(key, str) else key, sync)


class AppContextHook:
    """A worker hook: every job runs inside ``app.app_context()`` (``current_app``, extensions, config)."""

    def __init__(self, app: Flask) -> None:
        self.app = app

    def around_perform(self, job: Any) -> contextlib.AbstractContextManager[Any]:
        return self.app.app_context()


class ClusterQ:
    """The extension. One object serves any number of apps (``init_app`` each)."""

    def __init__(self, app: Flask | None = None) -> None:
        self._dashboards: dict[int, ASGIBridge] = {}
        if app is not None:
            self.init_app(app)

    # --- setup -----------------------------------------------------------------------------------

    def init_app(self, app: Flask) -> None:
        app.extensions[EXTENSION] = _config(app)
        if "clusterq" not in app.cli.commands:
            app.cli.add_command(_cli_group(self))

    def state(self, app: Flask | None = None) -> _State:
        if app is None:
            try:
                app = current_app._get_current_object()  # type: ignore[attr-defined]
            except RuntimeError:
                raise RuntimeError("clusterq's Flask extension needs an application context (with app.app_context(): "
                                   "...) or an explicit app") from None
        found = app.extensions.get(EXTENSION)
        if found is None:
            raise RuntimeError(f"clusterq's Flask extension was not initialised for app {app.name!r}: call "
                               f"ClusterQ.init_app(app) (or ClusterQ(app)) in your app factory")
        return found

    # --- producing ---------------------------------------------------------------------------------

    def connection(self, app: Flask | None = None) -> Client:
        state = self.state(app)
        with state.lock:
            if state.client is None:
                state.client = connect(state.url)
            return state.client

    def get_queue(self, name: str = "default", app: Flask | None = None) -> Queue:
        """The queue ``name`` of the current app's deployment (one object per name and app)."""
        state = self.state(app)
        client = self.connection(app)
        with state.lock:
            queue = state.opened.get(name)
            if queue is None:
                queue = state.opened[name] = Queue(name, client, signing_key=state.signing_key,
                                                   is_async=not state.sync)
            return queue

    def enqueue(self, f: Callable[..., Any] | str, *args: Any, queue: str = "default", **kwargs: Any) -> Job:
        return self.get_queue(queue).enqueue(f, *args, **kwargs)

    def job(self, queue: str, **options: Any) -> Callable[[Callable[..., Any]], DelayedFunction[Any]]:
        """``@cq.job("emails", **options)``: :func:`clusterq.job` on the current app's deployment
        (``f.delay(...)`` needs an app context)."""
        extension = self

        class _bound(_job):
            def _queue(self) -> Queue:
                return extension.get_queue(queue)

        return _bound(queue, **options)

    # --- the dashboard -----------------------------------------------------------------------------

    def init_dashboard(self, app: Flask, url_prefix: str = "/jobs", *, role: Callable[[], str | None],
                       login_url: str | None = None, read_only: bool = False, redact_args: bool = False,
                       secret_key: str | bytes | None = None) -> None:
        """Mount the dashboard at ``url_prefix``, behind the app's own login: ``role()`` is called in each
        request's context and returns ``"viewer"``, ``"operator"``, ``"admin"`` or None (not logged in:
        redirect to ``login_url``, else 401)."""
        self.state(app)
        if not callable(role):
            raise TypeError(f"init_dashboard(role=...) must be a function returning a role or None, got {role!r}")
        prefix = "/" + url_prefix.strip("/")
        key = secret_key or app.config.get("SECRET_KEY")
        if not key:
            raise ValueError("init_dashboard needs app.config['SECRET_KEY'] (or secret_key=): it signs the "
                             "dashboard's session cookie")
        extension = self
        bridge: ASGIBridge | None = None
        lock = threading.Lock()

        def get_bridge() -> ASGIBridge:
            nonlocal bridge
            with lock:
                if bridge is None:
                    from clusterq.dashboard.app import create_app
                    from clusterq.dashboard.auth import AuthConfig

                    secret = hashlib.sha256(b"clusterq-dashboard|" + (key if isinstance(key, bytes)
                                                                      else str(key).encode())).digest()
                    bridge = ASGIBridge(create_app(extension.connection(app), auth=AuthConfig(secret_key=secret),
                                                   authenticate=principal_from_scope, read_only=read_only,
                                                   redact_args=redact_args, login_url=login_url))
                return bridge

        def view(path: str = "") -> Any:
            who = role()
            if who is None:
                if login_url and request.method == "GET":
                    return redirect(f"{login_url}?{urlencode({'next': request.full_path.rstrip('?')})}")
                return Response("log in first", 401, content_type="text/plain")
            if who not in ROLES:
                raise ValueError(f"init_dashboard(role=...) returned {who!r}; expected one of {', '.join(ROLES)} "
                                 "or None")
            root = request.script_root + prefix
            environ = request.environ
            answer = get_bridge().request(
                method=request.method, path=root + "/" + path, root_path=root,
                query_string=request.query_string, headers=list(request.headers.items()),
                body=request.get_data(), client=(request.remote_addr or "127.0.0.1", 0),
                server=(request.host.split(":")[0], int(environ.get("SERVER_PORT") or 80)), scheme=request.scheme,
                principal=(_user_name(), who))
            response = Response(_stream(answer.body), status=answer.status)
            for name, value in answer.headers:
                if name.lower() != "content-length":
                    response.headers.add(name, value)
            return response

        blueprint = Blueprint("clusterq_dashboard", __name__)
        blueprint.add_url_rule("/", "index", view, methods=["GET", "POST"], strict_slashes=False)
        blueprint.add_url_rule("/<path:path>", "page", view, methods=["GET", "POST"])
        app.register_blueprint(blueprint, url_prefix=prefix)


def _user_name() -> str:
    try:
        from flask_login import current_user  # optional: the usual login extension

        if getattr(current_user, "is_authenticated", False):
            return str(current_user.get_id())
    except ImportError:
        pass
    from flask import session

    return str(session.get("user") or session.get("user_id") or "flask-user")


def _stream(body: Iterator[bytes]) -> Iterator[bytes]:
    yield from body


def _cli_group(extension: ClusterQ) -> click.Group:
    group = AppGroup("clusterq", help="clusterq commands on this app's deployment (CLUSTERQ_URL).")
    passthrough = {"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []}

    def run(command: str, args: tuple[str, ...]) -> None:
        from clusterq import hooks
        from clusterq.cli import main as cli

        state = extension.state()
        if state.signing_key and not os.environ.get(KEY_ENV):
            os.environ[KEY_ENV] = state.signing_key.decode()
        argv = [command, "-u", state.url, *args]
        hook = None
        if command == "worker":
            named = cli.build_parser().parse_known_args(["worker", *args])[0].queues
            argv += [] if named else list(state.queues)
            hook = AppContextHook(current_app._get_current_object())  # type: ignore[attr-defined]
            hooks.register(hook)
        try:
            code = cli.main(argv)
        finally:
            if hook is not None:
                hooks.unregister(hook)
        if code:
            raise click.exceptions.Exit(code)

    for name, text in (("worker", "Run a worker (the app's CLUSTERQ_QUEUES unless named); jobs run in an app context."),
                       ("cron", "Run or list periodic jobs."), ("info", "Queues, counts and workers."),
                       ("suspend", "Stop workers from starting jobs."), ("resume", "Let workers start jobs again.")):
        def make(command: str) -> Callable[..., None]:
            def command_fn(args: tuple[str, ...]) -> None:
                run(command, args)
            return command_fn

        fn = make(name)
        fn.__doc__ = text
        group.command(name, context_settings=passthrough, help=f"{text} Arguments as for `clusterq {name}`.")(
            click.argument("args", nargs=-1, type=click.UNPROCESSED)(fn))
    return group


__all__ = ["AppContextHook", "ClusterQ"]
