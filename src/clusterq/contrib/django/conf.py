"""The ``CLUSTERQ`` setting, read and checked once (again after a test changes it).

    CLUSTERQ = {
        "URL": "redis+cluster://10.0.0.1:6379",   # or "CACHE": "default" (a Redis cache: its LOCATION,
                                                    # and a django-redis cache's own client for producers)
        "QUEUES": ["default", "emails"],            # what `manage.py clusterq_worker` serves by default
        "SIGNING_KEY": "...",                        # HMAC key for job signatures (str or bytes)
        "WORKER": {"pool": "process", "concurrency": 4},   # default options of the worker command
        "SYNC": False,                               # True (tests): every enqueue runs the job at once
        "DASHBOARD": {"ROLE": "myapp.roles.role_of", "READ_ONLY": False},
    }

Every mistake is an :class:`~django.core.exceptions.ImproperlyConfigured` naming the setting.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed

from clusterq.connection.sync import URL_ENV

KNOWN = ("URL", "CACHE", "QUEUES", "SIGNING_KEY", "WORKER", "SYNC", "DASHBOARD")
POOLS = ("process", "fork", "thread", "asyncio", "solo")


@dataclass(frozen=True)
class Config:
    url: str
    queues: tuple[str, ...] = ("default",)
    signing_key: bytes | None = None
    worker: dict[str, Any] = field(default_factory=dict)
    sync: bool = False
    dashboard: dict[str, Any] = field(default_factory=dict)
    cache: str | None = None
    """The ``CACHE`` alias the URL came from (a django-redis cache lends its client to producers)."""


_cached: Config | None = None


def _fail(name: str, problem: str) -> ImproperlyConfigured:
    return ImproperlyConfigured(f"settings.CLUSTERQ[{name!r}] {problem}")


def _url_of_cache(alias: Any) -> str:
    if not isinstance(alias, str) or not alias:
        raise _fail("CACHE", f"must be the alias of a Redis cache in settings.CACHES, got {alias!r}")
    caches = getattr(django_settings, "CACHES", {})
    if alias not in caches:
        raise _fail("CACHE", f"names cache {alias!r}, which settings.CACHES does not define "
                             f"(it has {sorted(caches)})")
    location = caches[alias].get("LOCATION")
    if isinstance(location, (list, tuple)):  # django-redis and Django's RedisCache: the first is the primary
        location = location[0] if location else None
    if isinstance(location, str) and ";" in location:
        location = location.split(";")[0]
    if not isinstance(location, str) or "://" not in location:
        raise _fail("CACHE", f"names cache {alias!r}, whose LOCATION is not a Redis URL: {location!r}")
    return location


def load() -> Config:
    """The checked ``CLUSTERQ`` setting."""
    global _cached
    if _cached is not None:
        return _cached
    raw = getattr(django_settings, "CLUSTERQ", None)
    if raw is None:
        raw = {}
        if not os.environ.get(URL_ENV):
            raise ImproperlyConfigured(
                f"settings.CLUSTERQ is missing: set CLUSTERQ = {{'URL': 'redis://...'}} (or ${URL_ENV})")
    if not isinstance(raw, dict):
        raise ImproperlyConfigured(f"settings.CLUSTERQ must be a dict, got {type(raw).__name__}")
    unknown = sorted(set(raw) - set(KNOWN))
    if unknown:
        raise ImproperlyConfigured(f"settings.CLUSTERQ has unknown key(s) {unknown}; known: {', '.join(KNOWN)}")
    if "URL" in raw and "CACHE" in raw:
        raise ImproperlyConfigured("settings.CLUSTERQ sets both 'URL' and 'CACHE': give one")
    url: Any
    if "CACHE" in raw:
        url = _url_of_cache(raw["CACHE"])
    else:
        url = raw.get("URL") or os.environ.get(URL_ENV)
        if not url:
            raise _fail("URL", f"is missing: give a Redis URL (redis://, redis+sentinel://, redis+cluster://), "
                               f"a 'CACHE' alias, or set ${URL_ENV}")
        if not isinstance(url, str):
            raise _fail("URL", f"must be a str (a Redis URL), got {type(url).__name__}")
    queues = raw.get("QUEUES", ["default"])
    if isinstance(queues, str) or not isinstance(queues, (list, tuple)) or not queues \
            or not all(isinstance(q, str) and q for q in queues):
        raise _fail("QUEUES", f"must be a non-empty list of queue names, got {queues!r}")
    key = raw.get("SIGNING_KEY")
    if key is not None and not isinstance(key, (str, bytes)):
        raise _fail("SIGNING_KEY", f"must be a str or bytes, got {type(key).__name__}")
    if isinstance(key, str):
        key = key.encode()
    worker = raw.get("WORKER", {})
    if not isinstance(worker, dict):
        raise _fail("WORKER", f"must be a dict of worker options, got {type(worker).__name__}")
    if "pool" in worker and worker["pool"] not in POOLS:
        raise _fail("WORKER", f"pool must be one of {', '.join(POOLS)}, got {worker['pool']!r}")
    sync = raw.get("SYNC", False)
    if not isinstance(sync, bool):
        raise _fail("SYNC", f"must be True or False, got {sync!r}")
    dashboard = raw.get("DASHBOARD", {})
    if not isinstance(dashboard, dict):
        raise _fail("DASHBOARD", f"must be a dict, got {type(dashboard).__name__}")
    _cached = Config(url, tuple(queues), key or None, dict(worker), sync, dict(dashboard), raw.get("CACHE"))
    return _cached


ON_RESET: list[Callable[[], None]] = []
"""Called when the setting is read anew (the queues module drops its clients here)."""


def reset(**_: Any) -> None:
    """Forget the read setting (and the clients opened from it)."""
    global _cached
    _cached = None
    for forget in ON_RESET:
        forget()


def _changed(setting: str, **kwargs: Any) -> None:
    if setting in ("CLUSTERQ", "CACHES"):
        reset()


setting_changed.connect(_changed)
