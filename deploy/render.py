#!/usr/bin/env python3
"""Kubernetes manifests for clusterq, from values (no Helm needed): ``deploy/values.yaml`` holds the defaults,
your files override them.

    python deploy/render.py -f my-values.yaml > clusterq.yaml          # then: kubectl apply -f clusterq.yaml
    python deploy/render.py -f my-values.yaml --validate                # and check every manifest offline

What it writes: one worker Deployment per pool (probes on the worker's /livez and /readyz, a termination
grace period longer than the pool's longest job), a PodDisruptionBudget per pool, a KEDA ScaledObject per
autoscaled pool (on the dashboard's /api/autoscale), the dashboard's Deployment, Service and Ingress,
Secrets for the Redis URL (with the cluster address remap), the signing keys, the dashboard's auth file
(users, tokens, OIDC) and the API token, a ServiceMonitor and a PrometheusRule (the rules of
deploy/prometheus/clusterq-alerts.yml).

Every setting is checked first: an unknown or wrong one stops the run with an error naming it
(``values error: pools[1].concurrency: must be an integer >= 1, got 0``, exit 2).

``--validate`` checks the built-in kinds with the kubernetes-validate package (its schemas ship with it:
offline, strict, so an unknown field is an error) and the KEDA and prometheus-operator kinds against their
CRDs' schemas vendored in deploy/schemas/ (with unknown fields refused too). Needs PyYAML (and
kubernetes-validate for --validate), both in clusterq's ``test`` extra.
"""

from __future__ import annotations

import argparse
import copy
import difflib
import hashlib
import json
import re
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote

import yaml

HERE = Path(__file__).resolve().parent
DEFAULTS = HERE / "values.yaml"
ALERTS = HERE / "prometheus" / "clusterq-alerts.yml"
SCHEMAS = HERE / "schemas"
KUBERNETES_VERSION = "1.30"
POOL_KINDS = ("process", "fork", "thread", "asyncio", "solo")
ROLES = ("viewer", "operator", "admin")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_HOSTPORT = re.compile(r"^[^\s:;>]+:\d{1,5}$")
_DURATION = re.compile(r"^\d+(ms|s|m|h)$")


class ValuesError(ValueError):
    """A setting that cannot be rendered: the message starts with the setting's path."""


# --- values: merge, then check every setting ---------------------------------------------------------


def merge(base: Any, override: Any) -> Any:
    """``override`` on top of ``base``: mappings merge key by key, everything else (lists too) replaces."""
    if isinstance(base, dict) and isinstance(override, dict):
        out = dict(base)
        for key, value in override.items():
            out[key] = merge(base[key], value) if key in base else value
        return out
    return copy.deepcopy(override)


def load_values(files: list[str]) -> dict[str, Any]:
    values = yaml.safe_load(DEFAULTS.read_text())
    for path in files:
        try:
            data = yaml.safe_load(Path(path).read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise ValuesError(f"{path}: cannot read it as YAML: {exc}") from None
        if data is None:
            continue
        if not isinstance(data, dict):
            raise ValuesError(f"{path}: expected a mapping of settings at the top, got {type(data).__name__}")
        _check_known(data, yaml.safe_load(DEFAULTS.read_text()), "")
        values = merge(values, data)
    return values


# Settings whose value is a free-form mapping or list (their keys are not settings).
_FREE = {"resources", "annotations", "labels", "auth", "env"}


def _check_known(data: dict[str, Any], schema: dict[str, Any], where: str) -> None:
    """Every key of ``data`` exists in the defaults: a misspelled setting is an error, not ignored."""
    for key, value in data.items():
        path = f"{where}.{key}" if where else str(key)
        if key not in schema:
            close = difflib.get_close_matches(str(key), [str(k) for k in schema], n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValuesError(f"{path}: unknown setting{hint}")
        if key in _FREE:
            continue
        if isinstance(value, dict) and isinstance(schema[key], dict):
            _check_known(value, schema[key], path)
        if key == "pools" and isinstance(value, list):
            pool_schema = schema["pools"][0]
            for index, pool in enumerate(value):
                if not isinstance(pool, dict):
                    raise ValuesError(f"pools[{index}]: expected a mapping (name, queues, ...), got {pool!r}")
                _check_known(pool, pool_schema, f"pools[{index}]")


def _int(value: Any, path: str, minimum: int = 0, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum or (
            maximum is not None and value > maximum):
        upper = f" and <= {maximum}" if maximum is not None else ""
        raise ValuesError(f"{path}: must be an integer >= {minimum}{upper}, got {value!r}")
    return value


def _str(value: Any, path: str, *, required: bool = False) -> str:
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise ValuesError(f"{path}: must be a string, got {value!r}")
    if required and not value.strip():
        raise ValuesError(f"{path}: required")
    return value


def _list(value: Any, path: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ValuesError(f"{path}: must be a list, got {value!r}")
    return value


def _dict(value: Any, path: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValuesError(f"{path}: must be a mapping, got {value!r}")
    return value


def _label(value: Any, path: str, limit: int = 40) -> str:
    text = _str(value, path, required=True)
    if not _DNS_LABEL.match(text) or len(text) > limit:
        raise ValuesError(f"{path}: {text!r} must be lowercase letters, digits and '-', starting and ending "
                          f"with a letter or digit, at most {limit} characters (it names Kubernetes objects)")
    return text


def _check_url(url: str, path: str) -> str:
    """The scheme is one clusterq reads; with clusterq importable, the whole URL is parsed as it will be."""
    scheme = url.split("://", 1)[0] if "://" in url else ""
    if scheme not in ("redis", "rediss", "redis+sentinel", "rediss+sentinel", "redis+cluster", "rediss+cluster",
                      "redis+proxy", "rediss+proxy", "unix"):
        raise ValuesError(f"{path}: {_redact(url)!r} is not a clusterq URL (redis://, rediss://, "
                          "redis+sentinel://, redis+cluster://, redis+proxy://)")
    try:
        from clusterq import parse_url
    except ImportError:  # rendering does not need clusterq installed; the scheme check above still ran
        return scheme
    try:
        parse_url(url)
    except ValueError as exc:
        raise ValuesError(f"{path}: {str(exc).replace(url, _redact(url))}") from None
    return scheme


def _redact(url: str) -> str:
    """The URL without its password, for an error message."""
    return re.sub(r"//[^@/]*@", "//***@", url)


def check(values: dict[str, Any]) -> dict[str, Any]:
    """The values, checked and normalised; raises :class:`ValuesError` naming the first bad setting."""
    v = copy.deepcopy(values)
    v["name"] = _label(v.get("name"), "name", limit=30)
    v["namespace"] = _str(v.get("namespace"), "namespace")
    if v["namespace"]:
        _label(v["namespace"], "namespace", limit=63)
    image = _dict(v.get("image"), "image")
    _str(image.get("repository"), "image.repository", required=True)
    image["tag"] = str(image.get("tag") or "latest")
    if image.get("pullPolicy") not in ("Always", "IfNotPresent", "Never"):
        raise ValuesError(f"image.pullPolicy: must be Always, IfNotPresent or Never, got {image.get('pullPolicy')!r}")
    for i, name in enumerate(_list(image.get("pullSecrets"), "image.pullSecrets")):
        _label(name, f"image.pullSecrets[{i}]", limit=253)

    redis = _dict(v.get("redis"), "redis")
    url = _str(redis.get("url"), "redis.url")
    existing = _str(redis.get("existingSecret"), "redis.existingSecret")
    remap = _list(redis.get("remap"), "redis.remap")
    if bool(url) == bool(existing):
        raise ValuesError("redis.url: give the connection URL, or redis.existingSecret naming a Secret that holds "
                          "it (one of the two)")
    entries = []
    for i, entry in enumerate(remap):
        entry = _dict(entry, f"redis.remap[{i}]")
        for key in ("announced", "reachable"):
            text = _str(entry.get(key), f"redis.remap[{i}].{key}", required=True)
            if not _HOSTPORT.match(text):
                raise ValuesError(f"redis.remap[{i}].{key}: {text!r} must be host:port")
        unknown = set(entry) - {"announced", "reachable"}
        if unknown:
            raise ValuesError(f"redis.remap[{i}].{sorted(unknown)[0]}: unknown setting (announced, reachable)")
        entries.append(f"{entry['announced']}>{entry['reachable']}")
    if url:
        scheme = _check_url(url, "redis.url")
        if remap:
            if scheme not in ("redis", "rediss", "redis+cluster", "rediss+cluster"):
                raise ValuesError(f"redis.remap: the address remap is for a cluster (redis+cluster:// or a "
                                  f"redis:// node of one), not a {scheme}:// URL")
            if "remap=" in url:
                raise ValuesError("redis.remap: redis.url already has a remap= option; give it in one place")
            url = url + ("&" if "?" in url else "?") + "remap=" + quote(";".join(entries), safe=":>;")
            _check_url(url, "redis.remap")
        redis["url"] = url
    elif remap:
        raise ValuesError("redis.remap: with redis.existingSecret, put the remap= option in the secret's URL")
    _str(redis.get("existingSecretKey"), "redis.existingSecretKey", required=bool(existing))

    signing = _dict(v.get("signing"), "signing")
    keys = [_str(k, f"signing.keys[{i}]", required=True)
            for i, k in enumerate(_list(signing.get("keys"), "signing.keys"))]
    for i, key in enumerate(keys):
        if len(key.encode()) < 16:
            raise ValuesError(f"signing.keys[{i}]: a signing key must be at least 16 bytes")
    if keys and signing.get("existingSecret"):
        raise ValuesError("signing.keys: give the keys or signing.existingSecret, not both")
    if signing.get("existingSecret"):
        _label(signing["existingSecret"], "signing.existingSecret", limit=253)
        if not _list(signing.get("existingSecretKeys"), "signing.existingSecretKeys"):
            raise ValuesError("signing.existingSecretKeys: name at least one key of the secret")

    token = _str(v.get("apiToken"), "apiToken")
    if token and len(token) < 16:
        raise ValuesError("apiToken: use a long random string (16 characters at least)")

    worker = _dict(v.get("worker"), "worker")
    for key in ("healthPort", "metricsPort"):
        _int(worker.get(key), f"worker.{key}", 1, 65535)
    if worker["healthPort"] == worker["metricsPort"]:
        raise ValuesError("worker.metricsPort: must differ from worker.healthPort")
    _int(worker.get("drainMarginSeconds"), "worker.drainMarginSeconds", 0)
    if worker.get("leaseSeconds") is not None and (isinstance(worker["leaseSeconds"], bool) or not isinstance(
            worker["leaseSeconds"], (int, float)) or worker["leaseSeconds"] <= 0):
        raise ValuesError(f"worker.leaseSeconds: must be a positive number of seconds, got {worker['leaseSeconds']!r}")
    if worker.get("maxAttempts") is not None:
        _int(worker["maxAttempts"], "worker.maxAttempts", 1)
    for i, arg in enumerate(_list(worker.get("extraArgs"), "worker.extraArgs")):
        _str(arg, f"worker.extraArgs[{i}]")
    _check_env(_list(worker.get("env"), "worker.env"), "worker.env")

    pools = _list(v.get("pools"), "pools")
    if not pools:
        raise ValuesError("pools: at least one worker pool is needed")
    seen_names: dict[str, int] = {}
    seen_queues: dict[str, str] = {}
    dashboard = _dict(v.get("dashboard"), "dashboard")
    for i, pool in enumerate(pools):
        where = f"pools[{i}]"
        pool = merge(yaml.safe_load(DEFAULTS.read_text())["pools"][0], pool)
        pools[i] = pool
        name = _label(pool.get("name"), f"{where}.name", limit=30)
        if name in seen_names:
            raise ValuesError(f"{where}.name: {name!r} is also the name of pools[{seen_names[name]}]")
        seen_names[name] = i
        queues = _list(pool.get("queues"), f"{where}.queues")
        if not queues:
            raise ValuesError(f"{where}.queues: name at least one queue")
        for j, queue in enumerate(queues):
            queue = _str(queue, f"{where}.queues[{j}]", required=True)
            if queue in seen_queues:
                raise ValuesError(f"{where}.queues[{j}]: queue {queue!r} is already served by pool "
                                  f"{seen_queues[queue]!r}; one pool per queue (dedicated pools)")
            seen_queues[queue] = name
        if pool.get("kind") not in POOL_KINDS:
            raise ValuesError(f"{where}.kind: must be one of {', '.join(POOL_KINDS)}, got {pool.get('kind')!r}")
        _int(pool.get("concurrency"), f"{where}.concurrency", 1)
        _int(pool.get("replicas"), f"{where}.replicas", 0)
        timeout = pool.get("longestJobTimeoutSeconds")
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
            raise ValuesError(f"{where}.longestJobTimeoutSeconds: must be a positive number of seconds (the longest "
                              f"job_timeout of these queues' jobs; it sets the termination grace period), got "
                              f"{timeout!r}")
        for j, spec in enumerate(_list(pool.get("dedicated"), f"{where}.dedicated")):
            spec = _str(spec, f"{where}.dedicated[{j}]")
            if not re.match(r"^[^=\s]+=(?:(?:" + "|".join(POOL_KINDS) + r"):)?\d+$", spec):
                raise ValuesError(f"{where}.dedicated[{j}]: {spec!r} must look like QUEUES=[POOL:]N, "
                                  "e.g. hot=process:4")
        _str(pool.get("withCron"), f"{where}.withCron")
        _dict(pool.get("resources"), f"{where}.resources")
        unavailable = pool.get("maxUnavailable")
        if not (isinstance(unavailable, str) and re.match(r"^\d{1,3}%$", unavailable)):
            _int(unavailable, f"{where}.maxUnavailable", 0)
        scaling = _dict(pool.get("autoscaling"), f"{where}.autoscaling")
        _check_known(scaling, yaml.safe_load(DEFAULTS.read_text())["pools"][0]["autoscaling"], f"{where}.autoscaling")
        if not isinstance(scaling.get("enabled"), bool):
            raise ValuesError(f"{where}.autoscaling.enabled: must be true or false, got {scaling.get('enabled')!r}")
        if scaling["enabled"]:
            low = _int(scaling.get("minReplicas"), f"{where}.autoscaling.minReplicas", 0)
            high = _int(scaling.get("maxReplicas"), f"{where}.autoscaling.maxReplicas", 1)
            if high < low:
                raise ValuesError(f"{where}.autoscaling.maxReplicas: {high} is below minReplicas ({low})")
            _int(scaling.get("jobsPerReplica"), f"{where}.autoscaling.jobsPerReplica", 1)
            if not dashboard.get("enabled"):
                raise ValuesError(f"{where}.autoscaling.enabled: KEDA reads the dashboard's /api/autoscale; "
                                  "set dashboard.enabled")
            if not token:
                raise ValuesError(f"{where}.autoscaling.enabled: set apiToken (KEDA's viewer token for the dashboard)")
            if not v["namespace"]:
                raise ValuesError(f"{where}.autoscaling.enabled: set namespace (KEDA's operator calls the dashboard "
                                  "from its own namespace, so its URL needs the dashboard's namespace)")
    v["pools"] = pools

    if not isinstance(dashboard.get("enabled"), bool):
        raise ValuesError(f"dashboard.enabled: must be true or false, got {dashboard.get('enabled')!r}")
    if dashboard["enabled"]:
        _int(dashboard.get("replicas"), "dashboard.replicas", 1)
        _int(dashboard.get("port"), "dashboard.port", 1, 65535)
        _check_auth(dashboard, token)
        ingress = _dict(dashboard.get("ingress"), "dashboard.ingress")
        if ingress.get("enabled"):
            _str(ingress.get("host"), "dashboard.ingress.host", required=True)
            if not _str(ingress.get("path"), "dashboard.ingress.path", required=True).startswith("/"):
                raise ValuesError(f"dashboard.ingress.path: must start with '/', got {ingress['path']!r}")
        root = _str(dashboard.get("rootPath"), "dashboard.rootPath")
        if root and (not root.startswith("/") or root.endswith("/")):
            raise ValuesError(f"dashboard.rootPath: a prefix like /clusterq (leading '/', no trailing one), "
                              f"got {root!r}")
    monitoring = _dict(v.get("monitoring"), "monitoring")
    monitor = _dict(monitoring.get("serviceMonitor"), "monitoring.serviceMonitor")
    if monitor.get("enabled") and not _DURATION.match(str(monitor.get("interval"))):
        raise ValuesError(f"monitoring.serviceMonitor.interval: a duration like 30s, got {monitor.get('interval')!r}")
    return v


def _check_env(env: list[Any], path: str) -> None:
    for i, item in enumerate(env):
        item = _dict(item, f"{path}[{i}]")
        _str(item.get("name"), f"{path}[{i}].name", required=True)
        if "value" in item:
            _str(item["value"], f"{path}[{i}].value")


def _check_auth(dashboard: dict[str, Any], token: str) -> None:
    auth = _dict(dashboard.get("auth"), "dashboard.auth")
    existing = _str(dashboard.get("existingAuthSecret"), "dashboard.existingAuthSecret")
    given = {k: val for k, val in auth.items() if val}
    if existing:
        if given:
            raise ValuesError(f"dashboard.auth.{sorted(given)[0]}: give dashboard.auth or "
                              "dashboard.existingAuthSecret, not both")
        return
    unknown = set(auth) - {"secret_key", "users", "tokens", "oidc"}
    if unknown:
        raise ValuesError(f"dashboard.auth.{sorted(unknown)[0]}: unknown setting (secret_key, users, tokens, oidc)")
    secret = _str(auth.get("secret_key"), "dashboard.auth.secret_key", required=True)
    if len(secret.encode()) < 16:
        raise ValuesError("dashboard.auth.secret_key: must be at least 16 bytes (it signs the session cookies)")
    for kind, hashed in (("users", "password_hash"), ("tokens", "token_sha256")):
        for i, entry in enumerate(_list(auth.get(kind), f"dashboard.auth.{kind}")):
            entry = _dict(entry, f"dashboard.auth.{kind}[{i}]")
            _str(entry.get("name"), f"dashboard.auth.{kind}[{i}].name", required=True)
            _str(entry.get(hashed), f"dashboard.auth.{kind}[{i}].{hashed}", required=True)
            if entry.get("role") not in ROLES:
                raise ValuesError(f"dashboard.auth.{kind}[{i}].role: must be one of {', '.join(ROLES)}, "
                                  f"got {entry.get('role')!r}")
            if "password" in entry or "token" in entry:
                raise ValuesError(f"dashboard.auth.{kind}[{i}]: store the hash ({hashed}), never the secret itself")
    oidc = _dict(auth.get("oidc"), "dashboard.auth.oidc")
    if oidc:
        for key in ("issuer", "client_id", "client_secret"):
            _str(oidc.get(key), f"dashboard.auth.oidc.{key}", required=True)
        if not oidc["issuer"].startswith("https://"):
            raise ValuesError(f"dashboard.auth.oidc.issuer: must be an https:// URL, got {oidc['issuer']!r}")
        for kind in ("emails", "domains", "groups"):
            for match, role in _dict(oidc.get(kind), f"dashboard.auth.oidc.{kind}").items():
                if role not in ROLES:
                    raise ValuesError(f"dashboard.auth.oidc.{kind}.{match}: role must be one of {', '.join(ROLES)}, "
                                      f"got {role!r}")
    if not (auth.get("users") or auth.get("tokens") or oidc or token):
        raise ValuesError("dashboard.auth: give users, tokens or oidc (without a login the dashboard answers only "
                          "on loopback, which in a pod is nobody), or set dashboard.enabled: false")


# --- manifests ---------------------------------------------------------------------------------------


def _labels(v: dict[str, Any], component: str, **extra: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": "clusterq", "app.kubernetes.io/instance": v["name"],
            "app.kubernetes.io/component": component, **extra}


def _meta(v: dict[str, Any], name: str, labels: dict[str, str], **more: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": labels, **more}
    if v["namespace"]:
        meta["namespace"] = v["namespace"]
    return meta


def _secret(v: dict[str, Any], name: str, component: str, data: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": _meta(v, name, _labels(v, component)),
            "type": "Opaque", "stringData": data}


def _url_env(v: dict[str, Any]) -> dict[str, Any]:
    redis = v["redis"]
    if redis["existingSecret"]:
        ref = {"name": redis["existingSecret"], "key": redis["existingSecretKey"]}
    else:
        ref = {"name": f"{v['name']}-redis", "key": "url"}
    return {"name": "CLUSTERQ_URL", "valueFrom": {"secretKeyRef": ref}}


def _container_security() -> dict[str, Any]:
    return {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]}}


def _pod_spec(v: dict[str, Any], container: dict[str, Any], volumes: list[dict[str, Any]],
              grace: int | None = None) -> dict[str, Any]:
    container["volumeMounts"] = [*container.get("volumeMounts", []), {"name": "tmp", "mountPath": "/tmp"}]
    spec: dict[str, Any] = {
        "automountServiceAccountToken": False,
        "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [container],
        "volumes": [*volumes, {"name": "tmp", "emptyDir": {}}],
    }
    if grace is not None:
        spec["terminationGracePeriodSeconds"] = grace
    if v["image"].get("pullSecrets"):
        spec["imagePullSecrets"] = [{"name": n} for n in v["image"]["pullSecrets"]]
    return spec


def _image(v: dict[str, Any]) -> str:
    return f"{v['image']['repository']}:{v['image']['tag']}"


def _signing(v: dict[str, Any]) -> tuple[list[str], list[dict[str, Any]], list[dict[str, Any]]]:
    """(arguments, volume mounts, volumes) for the signing keys, if any."""
    signing = v["signing"]
    if signing.get("keys"):
        secret, names = f"{v['name']}-signing", [f"key-{i}" for i in range(len(signing["keys"]))]
    elif signing.get("existingSecret"):
        secret, names = signing["existingSecret"], list(signing["existingSecretKeys"])
    else:
        return [], [], []
    args = [a for name in names for a in ("--signing-key-file", f"/etc/clusterq/signing/{name}")]
    mounts = [{"name": "signing", "mountPath": "/etc/clusterq/signing", "readOnly": True}]
    volumes = [{"name": "signing", "secret": {"secretName": secret, "defaultMode": 0o400}}]
    return args, mounts, volumes


def worker_manifests(v: dict[str, Any], pool: dict[str, Any]) -> list[dict[str, Any]]:
    worker, name = v["worker"], f"{v['name']}-worker-{pool['name']}"
    labels = _labels(v, "worker", **{"clusterq.dev/pool": pool["name"]})
    selector = {k: labels[k] for k in ("app.kubernetes.io/instance", "app.kubernetes.io/component",
                                       "clusterq.dev/pool")}
    sign_args, sign_mounts, sign_volumes = _signing(v)
    args = ["worker", "--health-port", str(worker["healthPort"]), "--health-host", "0.0.0.0",
            "--pool", pool["kind"], "--concurrency", str(pool["concurrency"]), "--name", "$(POD_NAME)"]
    ports = [{"name": "health", "containerPort": worker["healthPort"]}]
    if worker["metrics"]:
        args += ["--metrics-port", str(worker["metricsPort"]), "--metrics-host", "0.0.0.0"]
        ports.append({"name": "metrics", "containerPort": worker["metricsPort"]})
    if worker.get("leaseSeconds") is not None:
        args += ["--lease-s", str(worker["leaseSeconds"])]
    if worker.get("maxAttempts") is not None:
        args += ["--max-attempts", str(worker["maxAttempts"])]
    for spec in pool["dedicated"]:
        args += ["--dedicated", spec]
    if pool["withCron"]:
        args += ["--with-cron", pool["withCron"]]
    args += [*sign_args, *worker["extraArgs"], *pool["queues"]]
    container = {
        "name": "worker",
        "image": _image(v),
        "imagePullPolicy": v["image"]["pullPolicy"],
        "command": ["clusterq"],
        "args": args,
        "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}, _url_env(v),
                *worker["env"]],
        "ports": ports,
        # /livez never talks to Redis: a Redis outage makes workers unready, it does not restart them all.
        "livenessProbe": {"httpGet": {"path": "/livez", "port": "health"}, "periodSeconds": 10,
                          "failureThreshold": 3, "timeoutSeconds": 5},
        # /readyz: not stopping, and Redis answers the worker's own client (SIGTERM makes it 503 at once).
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": "health"}, "periodSeconds": 5,
                           "failureThreshold": 2, "timeoutSeconds": 5},
        "startupProbe": {"httpGet": {"path": "/livez", "port": "health"}, "periodSeconds": 2,
                         "failureThreshold": 60},
        "securityContext": _container_security(),
        "volumeMounts": sign_mounts,
    }
    resources = pool["resources"] or worker["resources"]
    if resources:
        container["resources"] = resources
    # On SIGTERM a worker stops leasing and finishes what it holds: give it the longest job, plus a margin.
    grace = int(-(-pool["longestJobTimeoutSeconds"] // 1)) + worker["drainMarginSeconds"]
    deployment: dict[str, Any] = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": _meta(v, name, labels),
        "spec": {
            "selector": {"matchLabels": selector},
            # A new worker starts before an old one drains: no capacity drop during a rollout.
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {
                "metadata": {"labels": labels},
                "spec": _pod_spec(v, container, sign_volumes, grace),
            },
        },
    }
    if not pool["autoscaling"]["enabled"]:
        deployment["spec"]["replicas"] = pool["replicas"]
    out = [deployment, {
        "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
        "metadata": _meta(v, name, labels),
        "spec": {"maxUnavailable": pool["maxUnavailable"], "selector": {"matchLabels": selector}},
    }]
    if pool["autoscaling"]["enabled"]:
        out.append(scaled_object(v, pool, name, labels))
    return out


def scaled_object(v: dict[str, Any], pool: dict[str, Any], target: str, labels: dict[str, str]) -> dict[str, Any]:
    scaling, dashboard = pool["autoscaling"], v["dashboard"]
    query = "&".join(f"queue={quote(q, safe='')}" for q in pool["queues"])
    url = f"http://{v['name']}-dashboard.{v['namespace']}.svc:{dashboard['port']}/api/autoscale?{query}"
    return {
        "apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
        "metadata": _meta(v, target, labels),
        "spec": {
            "scaleTargetRef": {"name": target},
            "minReplicaCount": scaling["minReplicas"],
            "maxReplicaCount": scaling["maxReplicas"],
            # waiting + running + due jobs: running ones count, so a busy pod is never taken for idle
            "triggers": [{
                "type": "metrics-api",
                "metadata": {"url": url, "valueLocation": "value", "targetValue": str(scaling["jobsPerReplica"]),
                             "authMode": "bearer"},
                "authenticationRef": {"name": f"{v['name']}-api-token"},
            }],
        },
    }


def dashboard_manifests(v: dict[str, Any]) -> list[dict[str, Any]]:
    dashboard, name = v["dashboard"], f"{v['name']}-dashboard"
    labels = _labels(v, "dashboard")
    selector = {k: labels[k] for k in ("app.kubernetes.io/instance", "app.kubernetes.io/component")}
    args = ["dashboard", "--host", "0.0.0.0", "--port", str(dashboard["port"]),
            "--auth-file", "/etc/clusterq/dashboard/auth.json"]
    if dashboard.get("readOnly"):
        args.append("--read-only")
    if dashboard.get("redactArgs"):
        args.append("--redact-args")
    if dashboard.get("rootPath"):
        args += ["--root-path", dashboard["rootPath"]]
    for origin in dashboard.get("allowedOrigins") or ():
        args += ["--allowed-origin", origin]
    auth_secret = dashboard.get("existingAuthSecret") or f"{name}-auth"
    container = {
        "name": "dashboard",
        "image": _image(v),
        "imagePullPolicy": v["image"]["pullPolicy"],
        "command": ["clusterq"],
        "args": args,
        "env": [_url_env(v)],
        "ports": [{"name": "http", "containerPort": dashboard["port"]}],
        # The dashboard has no unauthenticated health page: a TCP check that it listens.
        "livenessProbe": {"tcpSocket": {"port": "http"}, "periodSeconds": 10, "failureThreshold": 3},
        "readinessProbe": {"tcpSocket": {"port": "http"}, "periodSeconds": 5},
        "securityContext": _container_security(),
        "volumeMounts": [{"name": "auth", "mountPath": "/etc/clusterq/dashboard", "readOnly": True}],
    }
    if dashboard.get("resources"):
        container["resources"] = dashboard["resources"]
    volumes = [{"name": "auth", "secret": {"secretName": auth_secret, "defaultMode": 0o400,
                                            "items": [{"key": "auth.json", "path": "auth.json"}]}}]
    out: list[dict[str, Any]] = []
    if not dashboard.get("existingAuthSecret"):
        auth = {k: val for k, val in dashboard["auth"].items() if val}
        if v["apiToken"]:
            digest = hashlib.sha256(v["apiToken"].encode()).hexdigest()
            auth["tokens"] = [*auth.get("tokens", []), {"name": "keda-and-prometheus", "token_sha256": digest,
                                                        "role": "viewer"}]
        out.append(_secret(v, f"{name}-auth", "dashboard", {"auth.json": json.dumps(auth, indent=2)}))
    out.append({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": _meta(v, name, labels),
        "spec": {"replicas": dashboard["replicas"], "selector": {"matchLabels": selector},
                 "template": {"metadata": {"labels": labels}, "spec": _pod_spec(v, container, volumes)}},
    })
    out.append({
        "apiVersion": "v1", "kind": "Service",
        "metadata": _meta(v, name, labels),
        "spec": {"selector": selector, "ports": [{"name": "http", "port": dashboard["port"], "targetPort": "http"}]},
    })
    ingress = dashboard["ingress"]
    if ingress.get("enabled"):
        spec: dict[str, Any] = {"rules": [{"host": ingress["host"], "http": {"paths": [{
            "path": ingress["path"], "pathType": "Prefix",
            "backend": {"service": {"name": name, "port": {"name": "http"}}}}]}}]}
        if ingress.get("className"):
            spec["ingressClassName"] = ingress["className"]
        if ingress.get("tlsSecret"):
            spec["tls"] = [{"hosts": [ingress["host"]], "secretName": ingress["tlsSecret"]}]
        meta = _meta(v, name, labels)
        if ingress.get("annotations"):
            meta["annotations"] = {str(k): str(val) for k, val in ingress["annotations"].items()}
        out.append({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": meta, "spec": spec})
    return out


def monitoring_manifests(v: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    monitoring = v["monitoring"]
    if monitoring["serviceMonitor"].get("enabled"):
        labels = {**_labels(v, "monitoring"), **_str_map(monitoring["serviceMonitor"]["labels"])}
        interval = monitoring["serviceMonitor"]["interval"]
        if v["worker"]["metrics"]:
            worker_labels = _labels(v, "worker")
            selector = {k: worker_labels[k] for k in ("app.kubernetes.io/instance", "app.kubernetes.io/component")}
            out.append({
                "apiVersion": "v1", "kind": "Service",
                "metadata": _meta(v, f"{v['name']}-worker-metrics", worker_labels),
                "spec": {"clusterIP": "None", "selector": selector, "ports": [{
                    "name": "metrics", "port": v["worker"]["metricsPort"], "targetPort": "metrics"}]},
            })
            out.append({
                "apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor",
                "metadata": _meta(v, f"{v['name']}-workers", labels),
                "spec": {"selector": {"matchLabels": selector},
                         "endpoints": [{"port": "metrics", "path": "/metrics", "interval": interval}]},
            })
        if v["dashboard"]["enabled"] and v["apiToken"]:
            dash = _labels(v, "dashboard")
            out.append({
                "apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor",
                "metadata": _meta(v, f"{v['name']}-dashboard", labels),
                "spec": {"selector": {"matchLabels": {k: dash[k] for k in ("app.kubernetes.io/instance",
                                                                          "app.kubernetes.io/component")}},
                         # the queue, worker and server gauges, behind the dashboard's login: a viewer token
                         "endpoints": [{"port": "http", "path": "/metrics", "interval": interval,
                                        "authorization": {"type": "Bearer", "credentials": {
                                            "name": f"{v['name']}-api-token", "key": "token"}}}]},
            })
    if monitoring["prometheusRule"].get("enabled"):
        rules = yaml.safe_load(ALERTS.read_text())
        labels = {**_labels(v, "monitoring"), **_str_map(monitoring["prometheusRule"]["labels"])}
        out.append({"apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule",
                    "metadata": _meta(v, v["name"], labels), "spec": {"groups": rules["groups"]}})
    return out


def _str_map(mapping: dict[Any, Any] | None) -> dict[str, str]:
    return {str(k): str(x) for k, x in (mapping or {}).items()}


def render(values: dict[str, Any]) -> list[dict[str, Any]]:
    """Every manifest for these (already checked) values."""
    v = values
    out: list[dict[str, Any]] = []
    if v["redis"]["url"]:
        out.append(_secret(v, f"{v['name']}-redis", "config", {"url": v["redis"]["url"]}))
    if v["signing"].get("keys"):
        out.append(_secret(v, f"{v['name']}-signing", "config",
                           {f"key-{i}": key for i, key in enumerate(v["signing"]["keys"])}))
    if v["apiToken"]:
        out.append(_secret(v, f"{v['name']}-api-token", "config", {"token": v["apiToken"]}))
        if any(p["autoscaling"]["enabled"] for p in v["pools"]):
            out.append({"apiVersion": "keda.sh/v1alpha1", "kind": "TriggerAuthentication",
                        "metadata": _meta(v, f"{v['name']}-api-token", _labels(v, "autoscaling")),
                        "spec": {"secretTargetRef": [{"parameter": "token", "name": f"{v['name']}-api-token",
                                                      "key": "token"}]}})
    for pool in v["pools"]:
        out += worker_manifests(v, pool)
    if v["dashboard"]["enabled"]:
        out += dashboard_manifests(v)
    out += monitoring_manifests(v)
    return out


def dump(manifests: list[dict[str, Any]]) -> str:
    return "".join("---\n" + yaml.safe_dump(m, sort_keys=False, width=120) for m in manifests)


# --- validation ----------------------------------------------------------------------------------------


def _crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    out = {}
    for path in sorted(SCHEMAS.glob("*.json")):
        crd = json.loads(path.read_text())
        for version, schema in crd["versions"].items():
            out[(f"{crd['group']}/{version}", crd["kind"])] = schema
    return out


def _unknown_fields(data: Any, schema: dict[str, Any], where: str) -> list[str]:
    """Fields the CRD's structural schema does not declare (the API server would drop them silently)."""
    if schema.get("x-kubernetes-preserve-unknown-fields") or not isinstance(data, (dict, list)):
        return []
    if isinstance(data, list):
        items = schema.get("items", {})
        return [e for i, x in enumerate(data) for e in _unknown_fields(x, items, f"{where}[{i}]")]
    props = schema.get("properties")
    if props is None:
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            return [e for k, x in data.items() for e in _unknown_fields(x, extra, f"{where}.{k}")]
        return []
    errors = [f"{where}.{k}".lstrip(".") + ": unknown field" for k in data if k not in props]
    return errors + [e for k, x in data.items() if k in props for e in _unknown_fields(x, props[k], f"{where}.{k}")]


def validate(manifests: list[dict[str, Any]], kubernetes_version: str = KUBERNETES_VERSION) -> list[str]:
    """Every problem found (empty: all valid). Built-in kinds: kubernetes-validate, strict; CRD kinds: the
    vendored schemas, with unknown fields refused."""
    import jsonschema
    import kubernetes_validate

    crds = _crd_schemas()
    problems: list[str] = []
    for m in manifests:
        what = f"{m.get('kind')} {m.get('metadata', {}).get('name')}"
        key = (m.get("apiVersion"), m.get("kind"))
        if key in crds:
            schema = crds[key]
            for error in jsonschema.Draft7Validator(schema).iter_errors(m):
                problems.append(f"{what}: {'.'.join(str(p) for p in error.absolute_path)}: {error.message}")
            problems += [f"{what}: {e}" for e in _unknown_fields(m, schema, "")]
            if not m.get("metadata", {}).get("name"):
                problems.append(f"{what}: metadata.name is required")
            continue
        try:
            kubernetes_validate.validate(m, kubernetes_version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            problems.append(f"{what}: {'.'.join(str(p) for p in exc.path)}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError:
            problems.append(f"{what}: no schema for {key[0]} {key[1]} (neither built in nor in deploy/schemas)")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="render.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("-f", "--values", action="append", default=[], metavar="FILE",
                        help="a values file over deploy/values.yaml (repeatable; later files win)")
    parser.add_argument("-o", "--output", metavar="FILE", help="write here instead of stdout")
    parser.add_argument("--validate", action="store_true",
                        help="check every manifest offline (kubernetes-validate and the vendored CRD schemas)")
    parser.add_argument("--kubernetes-version", default=KUBERNETES_VERSION,
                        help=f"the Kubernetes version to validate against ({KUBERNETES_VERSION})")
    args = parser.parse_args(argv)
    try:
        values = check(load_values(args.values))
    except ValuesError as exc:
        print(f"render.py: values error: {exc}", file=sys.stderr)
        return 2
    manifests = render(values)
    if args.validate:
        problems = validate(manifests, args.kubernetes_version)
        if problems:
            for problem in problems:
                print(f"render.py: invalid manifest: {problem}", file=sys.stderr)
            return 1
        print(f"render.py: {len(manifests)} manifests valid (Kubernetes {args.kubernetes_version}, "
              f"CRDs from deploy/schemas)", file=sys.stderr)
    text = dump(manifests)
    if args.output:
        Path(args.output).write_text(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
