"""Who is asking, and what they may do: users, tokens, roles, signed session cookies, CSRF tokens.

No state on the server: a session is a signed cookie (HMAC-SHA256 with the dashboard's secret key)
holding a random session id, the user, the role and an expiry; the CSRF token is an HMAC of the session
id, so it is bound to one browser session and checked without a store (a stateless synchronizer token).
Passwords are kept as scrypt hashes (stdlib) and compared in constant time; bearer tokens as SHA-256.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from clusterq.dashboard.roles import ROLES, role_rank

SESSION_TTL_S = 8 * 3600
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    """``scrypt$N$r$p$salt$hash`` (hex), for the ``password_hash`` of a dashboard user."""
    salt = salt or os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        kind, n, r, p, salt, digest = stored.split("$")
        if kind != "scrypt":
            return False
        got = hashlib.scrypt(password.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p),
                             dklen=len(bytes.fromhex(digest)))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got.hex(), digest)


def hash_token(token: str) -> str:
    """SHA-256 (hex) of a bearer token: what the dashboard's settings keep, never the token itself."""
    return hashlib.sha256(token.encode()).hexdigest()


def in_scope(queues: tuple[str, ...], queue: str | None) -> bool:
    """Whether ``queue`` is one of ``queues``: exact names, or prefixes written ``"billing-*"`` (compared as
    plain text, never a pattern). An empty scope is every queue; ``None`` (every queue at once, as in
    suspend all) is in an empty scope only."""
    if not queues:
        return True
    if queue is None:
        return False
    return any(queue.startswith(q[:-1]) if q.endswith("*") else queue == q for q in queues)


@dataclass(frozen=True)
class User:
    name: str
    password_hash: str
    role: str = "viewer"
    queues: tuple[str, ...] = ()
    """The queues the role applies to (exact names or ``prefix*``); elsewhere the user is a viewer.
    Empty: every queue."""


@dataclass(frozen=True)
class Token:
    name: str
    token_sha256: str
    role: str = "viewer"
    queues: tuple[str, ...] = ()


@dataclass(frozen=True)
class Principal:
    """The one making a request. ``via``: ``local`` (no auth, loopback), ``session``, ``basic``, ``bearer``.
    ``queues``: where the role applies (empty: everywhere); elsewhere the principal is a viewer."""

    name: str
    role: str
    via: str
    queues: tuple[str, ...] = ()

    def can(self, role: str, queue: str | None = None, *, scoped: bool = False) -> bool:
        """Whether the principal has ``role``; with ``scoped``, on ``queue`` (None: every queue at once)."""
        if role_rank(self.role) < role_rank(role):
            return False
        return not scoped or role == "viewer" or in_scope(self.queues, queue)


@dataclass
class AuthConfig:
    """Users (HTTP basic and the login form), bearer tokens, and the key that signs cookies.

    With neither users nor tokens there is no login: every request from loopback acts as ``admin``
    (requests from other addresses are refused unless the app was made ``insecure``)."""

    users: list[User] = field(default_factory=list)
    tokens: list[Token] = field(default_factory=list)
    secret_key: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    oidc: Any = None
    """An :class:`clusterq.dashboard.oidc.OIDCConfig` for single sign-on, or None."""

    def __post_init__(self) -> None:
        people: list[User | Token] = [*self.users, *self.tokens]
        for who in people:
            if who.role not in ROLES:
                raise ValueError(f"role of {who.name!r} must be one of {', '.join(ROLES)}, got {who.role!r}")
            if isinstance(who.queues, str) or not all(isinstance(q, str) and q.strip("*") for q in who.queues):
                raise ValueError(f"queues of {who.name!r} must be a list of queue names or 'prefix*', "
                                 f"got {who.queues!r}")
        if isinstance(self.secret_key, str):
            self.secret_key = self.secret_key.encode()
        if len(self.secret_key) < 16:
            raise ValueError("the dashboard's secret_key must be at least 16 bytes")

    @property
    def enabled(self) -> bool:
        return bool(self.users or self.tokens or self.oidc)

    @classmethod
    def from_file(cls, path: str) -> AuthConfig:
        """Read a JSON file: ``{"users": [{"name", "password_hash", "role"}], "tokens": [{"name",
        "token_sha256", "role"}], "secret_key": "...", "oidc": {"issuer", "client_id", "client_secret",
        "emails", "domains", "groups"}}``."""
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a JSON object with users, tokens and secret_key")
        kwargs: dict[str, Any] = {
            "users": [User(**{**u, "queues": tuple(u.get("queues", ()))}) for u in data.get("users", [])],
            "tokens": [Token(**{**t, "queues": tuple(t.get("queues", ()))}) for t in data.get("tokens", [])],
        }
        if data.get("secret_key"):
            kwargs["secret_key"] = str(data["secret_key"]).encode()
        if data.get("oidc"):
            from clusterq.dashboard.oidc import OIDCConfig  # Authlib: needed only with single sign-on

            kwargs["oidc"] = OIDCConfig(**data["oidc"])
        return cls(**kwargs)

    def check_password(self, name: str, password: str) -> Principal | None:
        found = None
        for user in self.users:
            # every user is checked, so the time taken does not say whether the name exists
            if verify_password(password, user.password_hash) and hmac.compare_digest(user.name, name):
                found = user
        return Principal(found.name, found.role, "basic", found.queues) if found else None

    def check_token(self, token: str) -> Principal | None:
        digest = hash_token(token)
        found = None
        for t in self.tokens:
            if hmac.compare_digest(t.token_sha256, digest):
                found = t
        return Principal(found.name, found.role, "bearer", found.queues) if found else None

    # --- signed values (session cookie, flash messages) ---------------------------------------

    def sign(self, payload: dict[str, Any]) -> str:
        body = base64.urlsafe_b64encode(json.dumps(payload, separators=(",", ":")).encode()).decode().rstrip("=")
        mac = hmac.new(self.secret_key, body.encode(), hashlib.sha256).hexdigest()
        return f"{body}.{mac}"

    def unsign(self, value: str | None) -> dict[str, Any] | None:
        """The payload, or None if the value is missing, tampered with, malformed or expired."""
        if not value or "." not in value or len(value) > 4096:
            return None
        body, _, mac = value.rpartition(".")
        want = hmac.new(self.secret_key, body.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(mac, want):
            return None
        try:
            payload = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        except ValueError:
            return None
        if not isinstance(payload, dict) or float(payload.get("exp", 0)) < time.time():
            return None
        return payload

    def new_session(self, user: str | None = None, role: str | None = None) -> dict[str, Any]:
        return {"sid": secrets.token_urlsafe(16), "u": user, "r": role, "exp": int(time.time()) + SESSION_TTL_S}

    def csrf_token(self, sid: str) -> str:
        return hmac.new(self.secret_key, f"csrf|{sid}".encode(), hashlib.sha256).hexdigest()

    def check_csrf(self, sid: str, token: str | None) -> bool:
        return bool(token) and hmac.compare_digest(self.csrf_token(sid), str(token))


__all__ = ["ROLES", "AuthConfig", "Principal", "Token", "User", "hash_password", "hash_token", "verify_password"]
