"""The dashboard as an ASGI app: ``create_app(url)`` returns a Starlette app to serve with uvicorn
(``clusterq dashboard``) or to mount inside FastAPI/Starlette (``app.mount("/jobs", create_app(url))``).

Every page is rendered on the server by Jinja2 with autoescaping, so a job's arguments, exception text,
meta, function and queue names are text, never markup. Scripts and styles come from the package's
``static/`` folder under a Content-Security-Policy that allows only them (with a per-response nonce) and
no inline script. Every action is a POST carrying a CSRF token bound to the session, checked together
with ``Origin``/``Sec-Fetch-Site``; a GET on an action is answered 405.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import logging
import os
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode

from anyio import to_thread
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from clusterq.api.job import make_handle
from clusterq.api.queue import Queue
from clusterq.connection.sync import REDIS_ERRORS, Client, ConnectionLike, connect, short_error
from clusterq.dashboard import actions as A
from clusterq.dashboard import charts as C
from clusterq.dashboard import data as D
from clusterq.dashboard.auth import SESSION_TTL_S, AuthConfig, Principal
from clusterq.dashboard.live import Ticker
from clusterq.dashboard.oidc import OIDCClient, SSOError
from clusterq.exceptions import ClusterQError
from clusterq.observability.backlog import autoscale

log = logging.getLogger("clusterq.dashboard")
HERE = os.path.dirname(os.path.abspath(__file__))
SESSION_COOKIE = "cq_session"
SSO_COOKIE = "cq_sso"
FLASH_COOKIE = "cq_flash"


@dataclass
class Settings:
    client: Client
    auth: AuthConfig
    read_only: bool = False
    redact_args: bool = False
    insecure: bool = False
    allowed_origins: Sequence[str] = ()
    env: Environment = field(init=False)

    def __post_init__(self) -> None:
        self.env = Environment(loader=FileSystemLoader(os.path.join(HERE, "templates")),
                               autoescape=select_autoescape(default=True, default_for_string=True))
        self.env.filters["t"] = D.fmt_time
        self.env.filters["show"] = D.fmt_value
        self.env.filters["handle"] = lambda s: make_handle(s.queue, s.id)
        self.env.globals["STATES"] = D.STATES
        self.env.globals["WINDOWS"] = tuple(D.HISTORY_WINDOWS)
        self.env.globals["throughput_chart"] = C.throughput_chart
        self.env.globals["failure_chart"] = C.failure_chart
        self.env.filters["age"] = D.fmt_age


class Refused(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


@dataclass
class Ctx:
    """One request's view of who asks and what the page needs (nonce, CSRF token, links)."""

    request: Request
    settings: Settings
    principal: Principal | None
    session: dict[str, Any]
    new_session: bool
    nonce: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    flash: str | None = None

    @property
    def root(self) -> str:
        return str(self.request.scope.get("root_path", "")).rstrip("/")

    def url(self, path: str, **params: Any) -> str:
        query = urlencode({k: v for k, v in params.items() if v not in (None, "")})
        return f"{self.root}{path}" + (f"?{query}" if query else "")

    @property
    def csrf(self) -> str:
        return self.settings.auth.csrf_token(self.session["sid"])

    def can(self, action: str, queue: str | None = None, job: str | None = None) -> bool:
        """Whether to offer (and allow) ``action`` on ``queue``, or on the queue of ``job`` (a handle);
        neither: on every queue at once (suspend all), which a principal scoped to some queues may not."""
        if not self.principal or self.settings.read_only:
            return False
        role = A.ACTION_ROLES.get(action, "admin")
        return self.principal.can(role, A.target_queue(queue, job), scoped=True)


def _is_loopback(host: str | None) -> bool:
    try:
        return host is not None and ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _principal(request: Request, settings: Settings, session: dict[str, Any]) -> Principal | None:
    auth = settings.auth
    if not auth.enabled:
        client_host = request.client.host if request.client else None
        if not settings.insecure and not _is_loopback(client_host):
            raise Refused(403, "this dashboard has no login, so it answers only on loopback; configure users "
                               "or tokens (or make it insecure on purpose)")
        return Principal("local", "admin", "local")
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer":
        found = auth.check_token(value.strip())
        if found is None:
            raise Refused(401, "invalid bearer token", {"WWW-Authenticate": "Bearer"})
        return found
    if scheme.lower() == "basic":
        try:
            name, _, password = base64.b64decode(value.strip()).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            name, password = "", ""
        found = auth.check_password(name, password)
        if found is None:
            raise Refused(401, "wrong user name or password", {"WWW-Authenticate": 'Basic realm="clusterq"'})
        return found
    if session.get("sso") and auth.oidc is not None and session.get("r") in ("viewer", "operator", "admin"):
        return Principal(str(session.get("u")), str(session["r"]), "session")
    user = next((u for u in auth.users if session.get("u") and u.name == session.get("u")), None)
    return Principal(user.name, user.role, "session", user.queues) if user else None


def _origin_ok(request: Request, settings: Settings) -> bool:
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None and fetch_site != "same-origin":
        return False
    origin = request.headers.get("origin")
    if origin is None:
        return True  # older browsers and scripts: the CSRF token alone decides
    own = f"{request.url.scheme}://{request.headers.get('host', '')}"
    return origin == own or origin in settings.allowed_origins


def _security_headers(response: Response, ctx: Ctx | None) -> Response:
    nonce = ctx.nonce if ctx else secrets.token_urlsafe(16)
    response.headers["Content-Security-Policy"] = (
        f"default-src 'none'; script-src 'self' 'nonce-{nonce}'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Cache-Control"] = "no-store"
    if ctx is not None:
        secure = ctx.request.url.scheme == "https"
        path = ctx.root or "/"
        if ctx.new_session:
            response.set_cookie(SESSION_COOKIE, ctx.settings.auth.sign(ctx.session), max_age=SESSION_TTL_S,
                                path=path, httponly=True, samesite="lax", secure=secure)
        if ctx.flash is not None:
            response.delete_cookie(FLASH_COOKIE, path=path)
    return response


def render(ctx: Ctx, template: str, status: int = 200, **values: Any) -> HTMLResponse:
    html = ctx.settings.env.get_template(template).render(ctx=ctx, **values)
    return HTMLResponse(html, status_code=status)


def _message(ctx: Ctx | None, settings: Settings, request: Request, status: int, text: str,
             headers: dict[str, str] | None = None) -> Response:
    if ctx is None:
        ctx = Ctx(request, settings, None, settings.auth.new_session(), False)
    response = render(ctx, "message.html", status, title=f"{status}", text=text)
    response.headers.update(headers or {})
    return response


Handler = Callable[[Request, Ctx], Awaitable[Response]]
MAX_FORM_BYTES = 64 * 1024


async def read_form(request: Request) -> dict[str, str]:
    """The posted form (urlencoded, at most :data:`MAX_FORM_BYTES`), read once per request. Parsed here
    rather than by python-multipart: the dashboard's forms are small and never upload files."""
    cached = getattr(request.state, "form", None)
    if cached is not None:
        return dict(cached)
    kind = request.headers.get("content-type", "").split(";")[0].strip()
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise Refused(413, "form too large")
    form: dict[str, str] = {}
    if kind == "application/x-www-form-urlencoded":
        form = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
    request.state.form = form
    return dict(form)


def endpoint(settings: Settings, min_role: str | None, handler: Handler, *, post: bool = False) -> Any:
    """Wrap a handler: session, principal, role, CSRF (for POST), security headers, clear error pages."""

    async def run(request: Request) -> Response:
        ctx: Ctx | None = None
        try:
            session = settings.auth.unsign(request.cookies.get(SESSION_COOKIE))
            new = session is None
            session = session or settings.auth.new_session()
            ctx = Ctx(request, settings, _principal(request, settings, session), session, new)
            flash = settings.auth.unsign(request.cookies.get(FLASH_COOKIE))
            ctx.flash = str(flash.get("m", "")) if flash else ("" if FLASH_COOKIE in request.cookies else None)
            if post and (ctx.principal is None or ctx.principal.via != "bearer"):
                form = await read_form(request)
                if not _origin_ok(request, settings) or not settings.auth.check_csrf(session["sid"],
                                                                                     str(form.get("csrf", ""))):
                    raise Refused(403, "refused: this form did not come from this dashboard (CSRF check failed); "
                                       "reload the page and try again")
            if min_role is not None and ctx.principal is None:
                if request.method == "GET" and "text/html" in request.headers.get("accept", ""):
                    return _security_headers(RedirectResponse(ctx.url("/login", next=_here(request)), 303), ctx)
                raise Refused(401, "log in first", {"WWW-Authenticate": 'Basic realm="clusterq"'})
            if min_role is not None and ctx.principal is not None and not ctx.principal.can(min_role):
                raise Refused(403, f"your role ({ctx.principal.role}) may not do this")
            response = await handler(request, ctx)
        except Refused as exc:
            response = _message(ctx, settings, request, exc.status, exc.message, exc.headers)
        except REDIS_ERRORS as exc:
            response = _message(ctx, settings, request, 503, f"cannot reach Redis: {short_error(exc)}")
        except (ClusterQError, ValueError) as exc:
            response = _message(ctx, settings, request, 400, str(exc))
        except Exception:  # logged with its traceback here, shown as one line there
            log.exception("dashboard page %s failed", request.url.path)
            response = _message(ctx, settings, request, 500, "the dashboard hit an unexpected error (see its log)")
        return _security_headers(response, ctx)

    return run


def _here(request: Request) -> str:
    query = request.url.query
    return request.url.path + (f"?{query}" if query else "")


def _int(value: str | None, default: int, low: int = 1, high: int = 10**9) -> int:
    try:
        return min(high, max(low, int(value or default)))
    except ValueError:
        return default


def _window(request: Request) -> str:
    window = request.query_params.get("window", "hour")
    return window if window in D.HISTORY_WINDOWS else "hour"


def _redirect(ctx: Ctx, path: str, flash: str | None = None, **params: Any) -> Response:
    response = RedirectResponse(ctx.url(path, **params), 303)
    if flash is not None:
        response.set_cookie(FLASH_COOKIE, ctx.settings.auth.sign({"m": flash, "exp": time.time() + 60}),
                            max_age=60, path=ctx.root or "/", httponly=True, samesite="lax")
        ctx.flash = None
    return response


def _metrics_scraper(client: Any) -> Callable[[], bytes] | None:
    """What ``/metrics`` answers: the deployment's queue and worker gauges (the ``metrics`` extra), read
    through the same client as the pages; None when prometheus-client is not installed."""
    try:  # optional: the dashboard runs without the metrics extra
        from clusterq.observability.queues import deployment_registry, exposition
    except ImportError:
        return None
    registry = deployment_registry(client, lambda: [q.name for q in Queue.all(client)[:D.MAX_QUEUES]])
    return lambda: exposition(registry)


def create_app(connection: ConnectionLike = None, *, auth: AuthConfig | None = None, read_only: bool = False,
               redact_args: bool = False, insecure: bool = False, allowed_origins: Sequence[str] = (),
               live_interval_s: float = 1.0) -> Starlette:
    """The dashboard for the deployment at ``connection`` (a URL or a client).

    ``auth``: users and tokens (without them there is no login and only loopback clients are answered,
    unless ``insecure``). ``read_only``: no actions for anyone. ``redact_args``: job arguments, results and
    meta are not shown. ``allowed_origins``: other origins whose forms may post (behind a proxy that
    rewrites Host).
    """
    client = connect(connection)
    settings = Settings(client, auth or AuthConfig(), read_only, redact_args, insecure, tuple(allowed_origins))
    ticker = Ticker(lambda: D.live_counts(client), live_interval_s)

    def threaded(fn: Callable[..., Any]) -> Callable[..., Awaitable[Any]]:
        async def call(*args: Any) -> Any:
            return await to_thread.run_sync(fn, *args)
        return call

    async def overview(request: Request, ctx: Ctx) -> Response:
        window = _window(request)
        return render(ctx, "overview.html", view=await threaded(D.overview)(client, window))

    async def queue(request: Request, ctx: Ctx) -> Response:
        name = request.query_params.get("name", "")
        state = request.query_params.get("state", "waiting")
        page = _int(request.query_params.get("page"), 1, high=100_000)
        view = await threaded(D.queue_page)(client, name, state, page, _window(request))
        return render(ctx, "queue.html", view=view)

    async def job(request: Request, ctx: Ctx) -> Response:
        handle = request.query_params.get("h", "")
        view = await threaded(D.job_view)(client, handle, settings.redact_args)
        if view is None:
            return render(ctx, "message.html", 404, title="No such job",
                          text=f"no job {handle!r} (deleted, expired, or never enqueued)")
        return render(ctx, "job.html", job=view)

    async def workers(request: Request, ctx: Ctx) -> Response:
        return render(ctx, "workers.html", workers=await threaded(D.workers)(client), age=D.heartbeat_age_s)

    async def periodic(request: Request, ctx: Ctx) -> Response:
        return render(ctx, "periodic.html", periodic=await threaded(D.periodic)(client))

    async def audit(request: Request, ctx: Ctx) -> Response:
        return render(ctx, "audit.html", entries=await threaded(A.audit_log)(client))

    async def search(request: Request, ctx: Ctx) -> Response:
        q = request.query_params
        text, queue_name = q.get("q", "").strip(), q.get("queue", "").strip()
        if text:
            handle = await threaded(D.lookup)(client, text)
            if handle:
                return RedirectResponse(ctx.url("/job", h=handle), 303)
            return render(ctx, "search.html", result=None, params=q, missing=text)
        result = None
        if queue_name:
            result = await threaded(D.find_jobs)(client, queue_name, q.get("state", "failed"), q.get("func", ""),
                                                 _int(q.get("offset"), 0, low=0))
        return render(ctx, "search.html", result=result, params=q, missing=None)

    async def counts(request: Request, ctx: Ctx) -> Response:
        return Response(await ticker.snapshot(), media_type="application/json")

    async def events(request: Request, ctx: Ctx) -> Response:
        return StreamingResponse(ticker.stream(), media_type="text/event-stream",
                                 headers={"X-Accel-Buffering": "no"})

    async def login_form(request: Request, ctx: Ctx) -> Response:
        return render(ctx, "login.html", next=request.query_params.get("next", ""), error=None)

    async def login(request: Request, ctx: Ctx) -> Response:
        form = await read_form(request)
        found = settings.auth.check_password(str(form.get("user", "")), str(form.get("password", "")))
        if found is None:
            return render(ctx, "login.html", 401, next=form.get("next", ""), error="wrong user name or password")
        # a new session id at login: a session fixed before login is not carried over
        ctx.session, ctx.new_session = settings.auth.new_session(found.name, found.role), True
        target = str(form.get("next", ""))
        path = target if target.startswith("/") and not target.startswith("//") else "/"
        return RedirectResponse(ctx.url(path.removeprefix(ctx.root) or "/"), 303)

    async def logout(request: Request, ctx: Ctx) -> Response:
        ctx.session, ctx.new_session = settings.auth.new_session(), True
        return RedirectResponse(ctx.url("/login" if settings.auth.enabled else "/"), 303)

    async def action(request: Request, ctx: Ctx) -> Response:
        try:
            return await act(request, ctx)
        except (ClusterQError, ValueError) as exc:  # refused by the API: shown as 400, and audited too
            form = await read_form(request)
            target = form.get("job") or form.get("periodic") or form.get("queue") or "*"
            who = ctx.principal.name if ctx.principal else "?"
            await threaded(A.record)(client, who, request.path_params["name"], target, 0, False, str(exc))
            raise

    async def act(request: Request, ctx: Ctx) -> Response:
        name = request.path_params["name"]
        if name not in A.ACTION_ROLES:
            raise Refused(404, f"no action {name!r}")
        form = await read_form(request)
        if not ctx.can(name, str(form.get("queue", "")) or None, str(form.get("job", "")) or None):
            where = form.get("queue") or form.get("job") or "every queue"
            raise Refused(403, "this dashboard is read-only" if settings.read_only else
                          f"your role ({ctx.principal.role if ctx.principal else 'none'}) may not {name} "
                          f"on {where}")
        who = ctx.principal.name if ctx.principal else "?"
        queue_name = str(form.get("queue", ""))

        def audited(outcome: A.Outcome, target: str) -> A.Outcome:
            A.record(client, who, name, target, outcome.count, outcome.ok, outcome.message)
            return outcome

        if name in ("requeue", "cancel", "stop", "delete"):
            handle = str(form.get("job", ""))
            outcome = await threaded(lambda: audited(A.job_action(client, name, handle), handle))()
            return _redirect(ctx, "/job", outcome.message, h=handle)
        if name in ("suspend", "resume"):
            outcome = await threaded(lambda: audited(A.queue_action(client, name, queue_name), queue_name or "*"))()
            return _redirect(ctx, "/queue" if queue_name else "/", outcome.message, name=queue_name or None)
        if name == "run-now":
            periodic_name = str(form.get("periodic", ""))
            outcome = await threaded(lambda: audited(A.run_now(client, periodic_name, queue_name), periodic_name))()
            return _redirect(ctx, "/periodic", outcome.message)
        if name == "limits":
            outcome = await threaded(lambda: audited(A.set_limits(client, queue_name, form), queue_name))()
            return _redirect(ctx, "/queue", outcome.message, name=queue_name)
        if name == "empty":
            state = str(form.get("state", "waiting"))
            if str(form.get("confirm", "")) != queue_name:
                raise Refused(400, f"type the queue's name ({queue_name}) to confirm emptying it")
            outcome = await threaded(lambda: audited(A.empty(client, queue_name, state), f"{queue_name} ({state})"))()
            return _redirect(ctx, "/queue", outcome.message, name=queue_name, state=state)
        # requeue-failed: a dry run first (counts, changes nothing), then the same filter for real
        func = str(form.get("func", "")).strip()
        ids, cut = await threaded(A.matching_failed)(client, queue_name, func)
        if form.get("dry_run"):
            return render(ctx, "confirm_requeue.html", queue=queue_name, func=func, count=len(ids), cut=cut)
        done = await threaded(A.requeue_failed)(client, queue_name, ids)
        target = f"{queue_name} failed" + (f" func={func}" if func else "")
        message = f"requeued {done} failed job(s)" + (" (more remain: run it again)" if cut else "")
        await threaded(A.record)(client, who, name, target, done, True, message)
        return _redirect(ctx, "/queue", message, name=queue_name, state="failed")

    sso = OIDCClient(settings.auth.oidc) if settings.auth.oidc is not None else None

    async def sso_login(request: Request, ctx: Ctx) -> Response:
        if sso is None:
            raise Refused(404, "single sign-on is not configured")
        redirect_uri = settings.auth.oidc.redirect_uri or (
            f"{request.url.scheme}://{request.headers.get('host', '')}{ctx.root}/auth/callback")
        url, pending = await sso.start(redirect_uri)
        pending["next"] = request.query_params.get("next", "")
        response = RedirectResponse(url, 303)
        response.set_cookie(SSO_COOKIE, settings.auth.sign(pending), max_age=600, path=ctx.root or "/",
                            httponly=True, samesite="lax", secure=request.url.scheme == "https")
        return response

    async def sso_callback(request: Request, ctx: Ctx) -> Response:
        # A GET from the provider's redirect, so no CSRF token: state (bound to this browser's cookie),
        # nonce (bound into the signed ID token) and PKCE protect it instead; see docs/dashboard.md ("Logging in").
        if sso is None:
            raise Refused(404, "single sign-on is not configured")
        pending = settings.auth.unsign(request.cookies.get(SSO_COOKIE))
        response: Response
        try:
            claims = await sso.finish(dict(request.query_params), pending)
        except SSOError as exc:
            response = render(ctx, "message.html", 400, title="Sign-on refused", text=str(exc))
            response.delete_cookie(SSO_COOKIE, path=ctx.root or "/")
            return response
        admitted = settings.auth.oidc.admit(claims)
        if admitted is None:
            response = render(ctx, "message.html", 403, title="Not admitted",
                              text="your account is not admitted to this dashboard (a verified email, domain or "
                                   "group it accepts is needed)")
            response.delete_cookie(SSO_COOKIE, path=ctx.root or "/")
            return response
        ctx.session, ctx.new_session = settings.auth.new_session(*admitted), True
        ctx.session["sso"] = 1
        target = str((pending or {}).get("next", ""))
        path = target if target.startswith("/") and not target.startswith("//") else "/"
        response = RedirectResponse(ctx.url(path.removeprefix(ctx.root) or "/"), 303)
        response.delete_cookie(SSO_COOKIE, path=ctx.root or "/")  # one use: a replayed callback finds nothing
        return response

    scrape = _metrics_scraper(client)

    async def metrics(request: Request, ctx: Ctx) -> Response:
        if scrape is None:
            return Response("the dashboard's /metrics needs prometheus-client (pip install 'clusterq[metrics]')\n",
                            status_code=404, media_type="text/plain")
        return Response(await threaded(scrape)(), media_type="text/plain; version=0.0.4; charset=utf-8")

    async def autoscaling(request: Request, ctx: Ctx) -> Response:
        names = [n for value in request.query_params.getlist("queue") for n in value.split(",") if n]
        if not names or len(names) > D.MAX_QUEUES:
            raise Refused(400, f"name 1 to {D.MAX_QUEUES} queues: /api/autoscale?queue=a&queue=b")
        try:
            answer = await threaded(autoscale)(client, names)
        except ValueError as exc:  # a malformed queue name
            raise Refused(400, str(exc)) from None
        return JSONResponse(answer)

    def page(path: str, handler: Handler, role: str | None = "viewer", methods: tuple[str, ...] = ("GET",)) -> Route:
        return Route(path, endpoint(settings, role, handler, post="POST" in methods), methods=list(methods))

    routes = [
        page("/", overview), page("/queue", queue), page("/job", job), page("/workers", workers),
        page("/periodic", periodic), page("/audit", audit), page("/search", search),
        page("/api/counts", counts), page("/events", events), page("/metrics", metrics),
        page("/api/autoscale", autoscaling),
        page("/login", login_form, role=None), page("/login", login, role=None, methods=("POST",)),
        page("/logout", logout, role=None, methods=("POST",)),
        page("/auth/login", sso_login, role=None), page("/auth/callback", sso_callback, role=None),
        page("/action/{name}", action, methods=("POST",)),
        Mount("/static", StaticFiles(directory=os.path.join(HERE, "static")), name="static"),
    ]
    app = Starlette(routes=routes)
    app.state.ticker = ticker
    app.state.settings = settings
    return app
