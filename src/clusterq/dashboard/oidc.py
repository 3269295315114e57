"""OpenID Connect single sign-on (authorization code flow with PKCE) through Authlib.

The login sets a short-lived signed cookie holding a random ``state``, ``nonce`` and PKCE verifier, and
sends the browser to the provider. The callback accepts only a ``state`` equal (constant-time) to the
cookie's, consumes the cookie, exchanges the code with the verifier, and accepts an ID token only if its
signature checks against the provider's published keys and its issuer, audience, expiry and nonce are
the expected ones. A user is admitted by an exact verified email, an exact email domain, or an exact
group in a claim: never a pattern.
"""

from __future__ import annotations

import hmac
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
from authlib.common.security import generate_token
from authlib.oauth2.rfc6749.parameters import prepare_grant_uri
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from authlib.oidc.core import CodeIDToken
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from clusterq.dashboard.roles import ROLES, role_rank

PENDING_TTL_S = 600
DISCOVERY_TTL_S = 3600


class SSOError(Exception):
    """The sign-on was refused; the message is safe to show."""


@dataclass
class OIDCConfig:
    """A provider and who it admits. ``emails``, ``domains`` and ``groups`` map exact values to roles;
    a user matching several gets the highest role. Emails count only when ``email_verified`` is true."""

    issuer: str
    client_id: str
    client_secret: str = ""
    emails: dict[str, str] = field(default_factory=dict)
    domains: dict[str, str] = field(default_factory=dict)
    groups: dict[str, str] = field(default_factory=dict)
    groups_claim: str = "groups"
    scope: str = "openid email profile"
    redirect_uri: str = ""
    """The callback's public URL; by default built from the request (``<origin><prefix>/auth/callback``)."""

    def __post_init__(self) -> None:
        self.issuer = self.issuer.rstrip("/")
        for kind in (self.emails, self.domains, self.groups):
            for value, role in kind.items():
                if role not in ROLES:
                    raise ValueError(f"role for {value!r} must be one of {', '.join(ROLES)}, got {role!r}")
        self.emails = {k.strip().lower(): v for k, v in self.emails.items()}
        self.domains = {k.strip().lower(): v for k, v in self.domains.items()}

    def admit(self, claims: dict[str, Any]) -> tuple[str, str] | None:
        """``(name, role)`` for an admitted user, else None."""
        roles: list[str] = []
        email = claims.get("email")
        if isinstance(email, str) and claims.get("email_verified") is True:
            email = email.strip().lower()
            if email in self.emails:
                roles.append(self.emails[email])
            local, at, domain = email.rpartition("@")
            if local and at and domain in self.domains:
                roles.append(self.domains[domain])
        groups = claims.get(self.groups_claim)
        if isinstance(groups, list):
            roles += [self.groups[g] for g in groups if isinstance(g, str) and g in self.groups]
        if not roles:
            return None
        name = email if isinstance(email, str) else str(claims.get("sub", "?"))
        return name, max(roles, key=role_rank)


class OIDCClient:
    def __init__(self, config: OIDCConfig) -> None:
        self.config = config
        self._metadata: tuple[float, dict[str, Any]] | None = None

    async def metadata(self) -> dict[str, Any]:
        if self._metadata is None or time.monotonic() - self._metadata[0] > DISCOVERY_TTL_S:
            async with httpx.AsyncClient(timeout=10) as http:
                reply = await http.get(f"{self.config.issuer}/.well-known/openid-configuration")
                reply.raise_for_status()
                data = reply.json()
            if str(data.get("issuer", "")).rstrip("/") != self.config.issuer:
                raise SSOError("the provider's discovery document names another issuer")
            self._metadata = (time.monotonic(), data)
        return self._metadata[1]

    async def start(self, redirect_uri: str) -> tuple[str, dict[str, Any]]:
        """The provider's authorization URL, and what the pending-login cookie must keep."""
        meta = await self.metadata()
        state, nonce, verifier = generate_token(32), generate_token(32), generate_token(64)
        url = prepare_grant_uri(meta["authorization_endpoint"], self.config.client_id, "code", redirect_uri,
                                self.config.scope, state, nonce=nonce,
                                code_challenge=create_s256_code_challenge(verifier), code_challenge_method="S256")
        pending = {"state": state, "nonce": nonce, "verifier": verifier, "redirect_uri": redirect_uri,
                   "exp": int(time.time()) + PENDING_TTL_S}
        return url, pending

    async def finish(self, params: dict[str, str], pending: dict[str, Any] | None) -> dict[str, Any]:
        """The verified ID token's claims, or :class:`SSOError`."""
        if "error" in params:
            raise SSOError(f"the provider refused the sign-on: {params.get('error')}")
        if not pending:
            raise SSOError("no sign-on in progress in this browser (expired, or already used): log in again")
        if not hmac.compare_digest(str(params.get("state", "")), str(pending["state"])):
            raise SSOError("the sign-on's state does not match this browser's: refused")
        meta = await self.metadata()
        async with httpx.AsyncClient(timeout=10) as http:
            reply = await http.post(meta["token_endpoint"], data={
                "grant_type": "authorization_code", "code": params.get("code", ""),
                "redirect_uri": pending["redirect_uri"], "code_verifier": pending["verifier"],
                "client_id": self.config.client_id,
            }, auth=(self.config.client_id, self.config.client_secret))
            if reply.status_code != 200:
                raise SSOError("the provider refused the code (used already, expired or forged)")
            id_token = reply.json().get("id_token")
            keys = (await http.get(meta["jwks_uri"])).json()
        if not id_token:
            raise SSOError("the provider sent no ID token")
        try:
            token = jwt.decode(id_token, KeySet.import_key_set(keys))
            claims = CodeIDToken(token.claims, token.header, options={
                "iss": {"essential": True, "value": self.config.issuer},
                "aud": {"essential": True, "value": self.config.client_id},
            }, params={"nonce": pending["nonce"], "client_id": self.config.client_id})
            claims.validate(leeway=60)
        except (JoseError, ValueError) as exc:
            raise SSOError(f"the ID token is not valid for this dashboard ({type(exc).__name__})") from None
        if not hmac.compare_digest(str(claims.get("nonce", "")), str(pending["nonce"])):
            raise SSOError("the ID token's nonce does not match this sign-on: refused")
        return dict(claims)
