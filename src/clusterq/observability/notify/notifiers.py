"""Notifiers: where an alert digest goes. The interface, the built-ins (a signed webhook, a chat
incoming webhook, email over SMTP) and the plugins published under the ``clusterq.notifiers`` entry
point group.

A notifier is any object with ``send(notification)`` that returns once the notification was accepted and
raises otherwise (any exception: the delivery is retried with the same id). It is made from its
configuration by a factory called with the configured options as keyword arguments (a class is a
factory). A plugin distribution publishes its factory::

    [project.entry-points."clusterq.notifiers"]
    pager = "mypkg.pager:PagerNotifier"

and is configured by that name (``{"type": "pager", ...}``); ``{"type": "mypkg.pager:PagerNotifier"}`` names
a factory by its import path instead.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import smtplib
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from email.message import EmailMessage
from typing import Any, Protocol

from clusterq.exceptions import FunctionNotFound
from clusterq.utils import entry_points, import_attribute

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "clusterq.notifiers"
DEFAULT_TIMEOUT_S = 10.0
SECRET_PREFIX = "whsec_"


@dataclass
class Notification:
    """One digest: ``count`` events of ``event`` matched rule ``rule`` between ``window_start`` and
    ``window_end`` (Unix seconds); ``samples`` are the first few (arguments redacted unless configured
    otherwise); ``id`` is stable across redeliveries (the Standard Webhooks ``webhook-id``)."""

    id: str
    rule: str
    event: str
    count: int
    window_start: float
    window_end: float
    samples: list[dict[str, Any]] = field(default_factory=list)
    type: str = "clusterq.alert"

    @property
    def subject(self) -> str:
        return f"[clusterq] {self.rule}: {self.count} x {self.event}"

    @property
    def text(self) -> str:
        """A few human lines: the summary, then one line per sample."""
        span = max(0.0, self.window_end - self.window_start)
        lines = [f"{self.subject} in {span:.0f} s"]
        for sample in self.samples:
            lines.append("- " + ", ".join(f"{k}={v}" for k, v in sample.items() if k != "event"))
        if self.count > len(self.samples):
            lines.append(f"(and {self.count - len(self.samples)} more)")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "text": self.text}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Notification:
        names = {"id", "rule", "event", "count", "window_start", "window_end", "samples", "type"}
        return cls(**{k: v for k, v in data.items() if k in names})


class Notifier(Protocol):
    """What a notifier is: ``send`` raises unless the notification was accepted."""

    def send(self, notification: Notification) -> None: ...


class NotificationFailed(Exception):
    """A notifier refused or failed a delivery (the delivery job raises it and is retried)."""


# --- the Standard Webhooks signature --------------------------------------------------------------

def _secret_bytes(secret: str | bytes) -> bytes:
    if isinstance(secret, bytes):
        return secret
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError("a webhook secret is 'whsec_' followed by base64 (Standard Webhooks), "
                         f"got one starting {secret[:6]!r}")
    try:
        return base64.b64decode(secret[len(SECRET_PREFIX):], validate=True)
    except ValueError as exc:
        raise ValueError(f"the webhook secret after 'whsec_' is not valid base64: {exc}") from None


def sign(secret: str | bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """``webhook-signature``: "v1," + base64(HMAC-SHA256(secret, "<id>.<timestamp>.<body>"))."""
    mac = hmac.new(_secret_bytes(secret), f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256)
    return "v1," + base64.b64encode(mac.digest()).decode()


def _post(url: str, body: bytes, headers: Mapping[str, str], timeout_s: float) -> int:
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": "application/json", "User-Agent": "clusterq",
                                              **headers})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            response.read(65536)
            return int(response.status)
    except urllib.error.HTTPError as exc:
        raise NotificationFailed(f"{url} answered HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise NotificationFailed(f"{url} could not be reached: {reason}") from None


def _check_url(url: Any, what: str) -> str:
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise ValueError(f"{what} needs url='http(s)://...', got {url!r}")
    return url


class WebhookNotifier:
    """POSTs the notification as JSON, signed per Standard Webhooks when a ``secret`` (``whsec_...``) is
    configured: headers ``webhook-id`` (the same on every redelivery), ``webhook-timestamp`` and
    ``webhook-signature``. A status other than 2xx, or no answer within ``timeout_s``, fails."""

    def __init__(self, url: str, secret: str | None = None, timeout_s: float = DEFAULT_TIMEOUT_S,
                 headers: Mapping[str, str] | None = None) -> None:
        self.url = _check_url(url, "the webhook notifier")
        self.secret = _secret_bytes(secret) if secret else None
        self.timeout_s = float(timeout_s)
        self.headers = dict(headers or {})

    def __repr__(self) -> str:
        return f"WebhookNotifier({self.url!r})"

    def send(self, notification: Notification) -> None:
        body = json.dumps(notification.to_dict(), separators=(",", ":")).encode()
        timestamp = int(time.time())
        headers = {**self.headers, "webhook-id": notification.id, "webhook-timestamp": str(timestamp)}
        if self.secret is not None:
            headers["webhook-signature"] = sign(self.secret, notification.id, timestamp, body)
        _post(self.url, body, headers, self.timeout_s)


class ChatNotifier:
    """A Slack-compatible incoming webhook (Slack, Mattermost, Rocket.Chat, Google Chat's simple form):
    POSTs ``{"text": ...}``."""

    def __init__(self, url: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self.url = _check_url(url, "the chat notifier")
        self.timeout_s = float(timeout_s)

    def __repr__(self) -> str:
        return f"ChatNotifier({self.url!r})"

    def send(self, notification: Notification) -> None:
        body = json.dumps({"text": notification.text}).encode()
        _post(self.url, body, {}, self.timeout_s)


class EmailNotifier:
    """Email over SMTP (``smtplib``): ``starttls`` and a login (``username``/``password``) are optional;
    ``ssl=True`` connects with implicit TLS (port 465)."""

    def __init__(self, host: str, to: str | Sequence[str], sender: str, port: int = 25, *,
                 starttls: bool = False, ssl: bool = False, username: str | None = None,
                 password: str | None = None, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        if not host or not isinstance(host, str):
            raise ValueError(f"the email notifier needs host='smtp.example.com', got {host!r}")
        recipients = [to] if isinstance(to, str) else list(to)
        if not recipients or not all(isinstance(r, str) and "@" in r for r in recipients):
            raise ValueError(f"the email notifier needs to=['ops@example.com', ...], got {to!r}")
        if not isinstance(sender, str) or "@" not in sender:
            raise ValueError(f"the email notifier needs sender='clusterq@example.com', got {sender!r}")
        self.host, self.port, self.to, self.sender = host, int(port), recipients, sender
        self.starttls, self.ssl = bool(starttls), bool(ssl)
        self.username, self.password = username, password
        self.timeout_s = float(timeout_s)

    def __repr__(self) -> str:
        return f"EmailNotifier({self.host!r}, {self.port})"

    def send(self, notification: Notification) -> None:
        message = EmailMessage()
        message["Subject"] = notification.subject
        message["From"] = self.sender
        message["To"] = ", ".join(self.to)
        message["Message-ID"] = f"<{notification.id}@clusterq>"
        message.set_content(notification.text)
        context = ssl.create_default_context()
        smtp: smtplib.SMTP = (smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout_s, context=context)
                              if self.ssl else smtplib.SMTP(self.host, self.port, timeout=self.timeout_s))
        try:
            if self.starttls:
                smtp.starttls(context=context)
            if self.username:
                smtp.login(self.username, self.password or "")
            smtp.send_message(message)
        except (smtplib.SMTPException, OSError) as exc:
            raise NotificationFailed(f"SMTP {self.host}:{self.port}: {type(exc).__name__}: {exc}") from None
        finally:
            try:
                smtp.quit()
            except (smtplib.SMTPException, OSError):
                smtp.close()


BUILTIN: dict[str, Callable[..., Any]] = {
    "webhook": WebhookNotifier,
    "chat": ChatNotifier,
    "slack": ChatNotifier,
    "email": EmailNotifier,
}

_plugins: dict[str, Callable[..., Any]] | None = None
_broken: dict[str, str] = {}
_plugins_lock = threading.Lock()


def discover(refresh: bool = False) -> tuple[dict[str, Callable[..., Any]], dict[str, str]]:
    """The factories published under ``clusterq.notifiers`` and the entry points that could not be
    loaded (name -> why), looked up once per process. Each broken one is logged once, here."""
    global _plugins
    with _plugins_lock:
        if _plugins is None or refresh:
            found: dict[str, Callable[..., Any]] = {}
            broken: dict[str, str] = {}
            for point in entry_points(ENTRY_POINT_GROUP):
                try:
                    factory = point.load()
                    if not callable(factory):
                        raise TypeError(f"it names a {type(factory).__name__}, not a notifier class or factory")
                    found[point.name] = factory
                except Exception as exc:  # a broken plugin never stops the worker
                    broken[point.name] = f"{type(exc).__name__}: {exc}"
                    if _broken.get(point.name) != broken[point.name]:
                        log.error("clusterq notifier entry point %r (%s) cannot be loaded and is ignored (counted "
                                  "in clusterq_notifications_total{outcome=\"invalid\"}): %s", point.name,
                                  point.value, broken[point.name])
            _plugins = found
            _broken.clear()
            _broken.update(broken)
        return dict(_plugins), dict(_broken)


def make_notifier(name: str, options: Mapping[str, Any]) -> Any:
    """The notifier configured as ``name`` with ``options`` (``type`` picks the factory: a built-in, else a
    plugin). Raises ValueError naming the notifier when it cannot be made."""
    options = dict(options)
    kind = options.pop("type", None)
    if not isinstance(kind, str):
        raise ValueError(f"notifier {name!r} needs a 'type' (one of {sorted(BUILTIN)} or a "
                         f"{ENTRY_POINT_GROUP} entry point), got {kind!r}")
    factory = BUILTIN.get(kind)
    if factory is None and ":" in kind:  # "package.module:Factory", without publishing an entry point
        try:
            found = import_attribute(kind)
        except FunctionNotFound as exc:
            raise ValueError(f"notifier {name!r} has type {kind!r}, which cannot be imported: {exc}") from None
        if not callable(found):
            raise ValueError(f"notifier {name!r} has type {kind!r}, a {type(found).__name__}, not a factory")
        factory = found
    if factory is None:
        plugins, broken = discover()
        factory = plugins.get(kind)
        if factory is None:
            why = f"its entry point is broken ({broken[kind]})" if kind in broken else (
                f"no built-in ({', '.join(sorted(BUILTIN))}) and no {ENTRY_POINT_GROUP} entry point has that name")
            raise ValueError(f"notifier {name!r} has type {kind!r}: {why}")
    try:
        notifier = factory(**options)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"notifier {name!r} (type {kind!r}): {exc}") from None
    if not callable(getattr(notifier, "send", None)):
        raise ValueError(f"notifier {name!r} (type {kind!r}) made a {type(notifier).__name__} with no send()")
    return notifier


__all__ = ["BUILTIN", "ENTRY_POINT_GROUP", "ChatNotifier", "EmailNotifier", "Notification", "NotificationFailed",
           "Notifier", "WebhookNotifier", "discover", "make_notifier", "sign"]
