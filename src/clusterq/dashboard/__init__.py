"""The web dashboard (``pip install 'clusterq[dashboard]'``): ``clusterq dashboard`` serves it, and
:func:`create_app` returns an ASGI app to mount inside FastAPI or Starlette. A surface on top of the
public query API: nothing in clusterq imports it."""

from clusterq.dashboard.app import create_app
from clusterq.dashboard.auth import AuthConfig, Token, User, hash_password, hash_token

__all__ = ["AuthConfig", "Token", "User", "create_app", "hash_password", "hash_token"]
