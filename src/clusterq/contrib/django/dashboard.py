"""The dashboard inside a Django project, behind Django's own login and the staff flag:

    # urls.py
    urlpatterns = [path("admin/", admin.site.urls), path("jobs/", include("clusterq.contrib.django.urls"))]

Anyone not logged in as an active staff user is sent to the admin's login page (Django's
``staff_member_required``). The user's dashboard role comes from ``CLUSTERQ["DASHBOARD"]["ROLE"]`` (a
dotted path to ``role_of(user) -> "viewer" | "operator" | "admin" | None``); by default a superuser is
``admin`` and any other staff user ``operator``. ``CLUSTERQ["DASHBOARD"]["READ_ONLY"] = True`` offers no
actions. The view runs the dashboard's ASGI app through :class:`~clusterq.contrib.asgi_bridge.ASGIBridge`,
so it works the same under WSGI (runserver, gunicorn) and ASGI (uvicorn, daphne).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import AsyncIterator, Iterator
from http.cookies import SimpleCookie
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.admin.views.decorators import staff_member_required
from django.core.exceptions import ImproperlyConfigured
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.urls import reverse
from django.utils.module_loading import import_string
from django.views.decorators.csrf import csrf_exempt

from clusterq.contrib.asgi_bridge import ASGIBridge, principal_from_scope
from clusterq.contrib.django import conf
from clusterq.contrib.django.queues import get_connection

_lock = threading.Lock()
_bridge: tuple[conf.Config, ASGIBridge] | None = None
ROLES = ("viewer", "operator", "admin")


def default_role(user: Any) -> str | None:
    """A superuser is ``admin``; any other active staff user ``operator``."""
    if not (user.is_active and user.is_staff):
        return None
    return "admin" if user.is_superuser else "operator"


def role_of(user: Any) -> str | None:
    path = conf.load().dashboard.get("ROLE")
    if path is None:
        return default_role(user)
    try:
        fn = import_string(path) if isinstance(path, str) else path
    except ImportError as exc:
        raise ImproperlyConfigured(f"settings.CLUSTERQ['DASHBOARD']['ROLE'] cannot be imported: {exc}") from None
    role = fn(user)
    if role is not None and role not in ROLES:
        raise ImproperlyConfigured(f"settings.CLUSTERQ['DASHBOARD']['ROLE'] returned {role!r}; "
                                   f"expected one of {', '.join(ROLES)} or None")
    return role


def _get_bridge() -> ASGIBridge:
    global _bridge
    config = conf.load()
    with _lock:
        if _bridge is None or _bridge[0] is not config:
            from clusterq.dashboard.app import create_app
            from clusterq.dashboard.auth import AuthConfig

            # the dashboard signs its own session cookie (it binds CSRF tokens): a key derived from SECRET_KEY
            secret = hashlib.sha256(f"clusterq-dashboard|{settings.SECRET_KEY}".encode()).digest()
            app = create_app(get_connection(), auth=AuthConfig(secret_key=secret),
                             authenticate=principal_from_scope,
                             read_only=bool(config.dashboard.get("READ_ONLY", False)),
                             redact_args=bool(config.dashboard.get("REDACT_ARGS", False)),
                             login_url=reverse("admin:login") if _has_admin() else None)
            _bridge = (config, ASGIBridge(app))
        return _bridge[1]


def _has_admin() -> bool:
    from django.apps import apps

    return apps.is_installed("django.contrib.admin")


async def _async_chunks(chunks: Iterator[bytes]) -> AsyncIterator[bytes]:
    """A sync stream as an async one, for Django under ASGI (which would otherwise read a sync stream to its
    end before sending anything: never, for the live counts). Each chunk is awaited in a worker thread."""
    pull = sync_to_async(lambda: next(chunks, None), thread_sensitive=False)
    try:
        while True:
            chunk = await pull()
            if chunk is None:
                return
            yield chunk
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            await sync_to_async(close, thread_sensitive=False)()


def _to_django(status: int, headers: list[tuple[str, str]], body: Any, asgi: bool) -> HttpResponse:
    response: HttpResponse
    kind = dict((k.lower(), v) for k, v in headers).get("content-type", "")
    if kind.startswith("text/event-stream"):
        response = StreamingHttpResponse(_async_chunks(body) if asgi else body, status=status)
    else:
        response = HttpResponse(b"".join(body), status=status)
    for name, value in headers:
        lower = name.lower()
        if lower == "set-cookie":
            response.cookies.load(SimpleCookie(value))
        elif lower != "content-length":
            response.headers[name] = value
    return response


@csrf_exempt  # every dashboard action checks its own CSRF token, bound to the dashboard's session
@staff_member_required
def dashboard_view(request: HttpRequest, path: str = "") -> HttpResponse:
    role = role_of(request.user)
    if role is None:
        return HttpResponse("your account may not see the jobs dashboard", status=403, content_type="text/plain")
    full = request.path
    root = full[: len(full) - len(path)].rstrip("/") if path else full.rstrip("/")
    meta = request.META
    port = int(meta.get("SERVER_PORT") or 80)
    remote = meta.get("REMOTE_ADDR") or "127.0.0.1"
    answer = _get_bridge().request(
        method=request.method or "GET", path=full if path else root + "/", root_path=root,
        query_string=(meta.get("QUERY_STRING") or "").encode("latin-1"),
        headers=list(request.headers.items()), body=request.body,
        client=(remote, 0), server=(request.get_host().split(":")[0], port), scheme=request.scheme or "http",
        principal=(request.user.get_username(), role))
    return _to_django(answer.status, answer.headers, answer.body, isinstance(request, ASGIRequest))
