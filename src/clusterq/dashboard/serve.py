"""``clusterq dashboard``: serve :func:`create_app` with uvicorn, on loopback unless told otherwise.

Without users or tokens the dashboard has no login, so it refuses to listen on any address but
loopback unless ``insecure`` is given on purpose (a trusted network, a proxy doing the auth).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from clusterq.dashboard.app import create_app
from clusterq.dashboard.auth import AuthConfig


def is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(host: str, auth: AuthConfig, insecure: bool) -> None:
    if not auth.enabled and not insecure and not is_loopback_host(host):
        raise ValueError(f"refusing to serve the dashboard on {host} without a login: give --auth-file with users "
                         "or tokens, or --insecure if something else (a proxy, a private network) guards it")


def serve(url: str, *, host: str = "127.0.0.1", port: int = 8080, auth: AuthConfig | None = None,
          read_only: bool = False, redact_args: bool = False, insecure: bool = False, root_path: str = "",
          allowed_origins: Sequence[str] = ()) -> None:
    import uvicorn  # the dashboard extra; imported here so `clusterq --help` works without it

    auth = auth or AuthConfig()
    check_bind(host, auth, insecure)
    app = create_app(url, auth=auth, read_only=read_only, redact_args=redact_args, insecure=insecure,
                     allowed_origins=allowed_origins)
    uvicorn.run(app, host=host, port=port, root_path=root_path.rstrip("/"), log_level="info", proxy_headers=False,
                timeout_graceful_shutdown=2)
