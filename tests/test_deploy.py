"""The Kubernetes manifests of deploy/ (deploy/render.py): rendered for the three topologies and validated
offline (kubernetes-validate's schemas for the built-in kinds, the vendored KEDA and prometheus-operator CRD
schemas for the others); their commands parse with clusterq's own CLI; the rendered worker command, run
against a real server of each topology, serves the probes the Deployment points at; the auth file the
dashboard is given loads with the dashboard's own code; and bad values stop with an error naming the setting.
"""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("yaml")
pytest.importorskip("kubernetes_validate")

import yaml

from clusterq import parse_url
from clusterq.cli.main import build_parser
from clusterq.testing.common import allocate_port

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ["standalone", "sentinel", "cluster"]

_spec = importlib.util.spec_from_file_location("clusterq_deploy_render", ROOT / "deploy" / "render.py")
assert _spec is not None and _spec.loader is not None
render = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(render)


def manifests_for(example: str, **overrides: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    values = render.load_values([str(ROOT / "deploy" / "examples" / f"{example}.yaml")])
    values = render.merge(values, overrides)
    checked = render.check(values)
    return checked, render.render(checked)


def by_kind(manifests: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {m["metadata"]["name"]: m for m in manifests if m["kind"] == kind}


def secret_value(manifests: list[dict[str, Any]], name: str, key: str) -> str:
    return str(by_kind(manifests, "Secret")[name]["stringData"][key])


@pytest.mark.parametrize("example", EXAMPLES)
def test_every_topology_renders_valid_manifests(example: str) -> None:
    values, manifests = manifests_for(example)
    assert render.validate(manifests) == []
    kinds = {m["kind"] for m in manifests}
    assert {"Deployment", "PodDisruptionBudget", "Service", "Secret", "ServiceMonitor", "PrometheusRule"} <= kinds
    deployments = by_kind(manifests, "Deployment")
    for pool in values["pools"]:
        name = f"clusterq-worker-{pool['name']}"
        assert name in deployments and name in by_kind(manifests, "PodDisruptionBudget")
    # The URL secret holds a URL clusterq reads as the topology the example is about.
    url = secret_value(manifests, "clusterq-redis", "url") if values["redis"]["url"] else None
    assert url is not None
    assert parse_url(url).topology == {"standalone": "standalone", "sentinel": "sentinel",
                                       "cluster": "cluster"}[example]


def test_the_cluster_remap_reaches_the_url_as_clusterq_parses_it() -> None:
    _, manifests = manifests_for("cluster")
    parsed = parse_url(secret_value(manifests, "clusterq-redis", "url"))
    assert parsed.remap == {("10.8.0.11", 6379): ("redis-0.db.example.com", 6379),
                            ("10.8.0.12", 6379): ("redis-1.db.example.com", 6379),
                            ("10.8.0.13", 6379): ("redis-2.db.example.com", 6379)}


@pytest.mark.parametrize("example", EXAMPLES)
def test_worker_commands_parse_and_probes_point_at_the_health_port(example: str) -> None:
    values, manifests = manifests_for(example)
    parser = build_parser()
    for pool in values["pools"]:
        deployment = by_kind(manifests, "Deployment")[f"clusterq-worker-{pool['name']}"]
        pod = deployment["spec"]["template"]["spec"]
        container = pod["containers"][0]
        assert container["command"] == ["clusterq"]
        args = parser.parse_args(container["args"])  # the real CLI: every flag the manifest passes exists
        assert args.command == "worker" and args.queues == pool["queues"] and args.pool == pool["kind"]
        assert args.health_port == values["worker"]["healthPort"] and args.health_host == "0.0.0.0"
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports["health"] == args.health_port and ports["metrics"] == args.metrics_port
        assert container["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "health"}
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}
        # the pod outlives its longest job: SIGTERM drains, it does not kill a job mid-way
        assert pod["terminationGracePeriodSeconds"] == (pool["longestJobTimeoutSeconds"]
                                                        + values["worker"]["drainMarginSeconds"])
        assert pod["terminationGracePeriodSeconds"] > pool["longestJobTimeoutSeconds"]
        env = {e["name"]: e for e in container["env"]}
        assert "secretKeyRef" in env["CLUSTERQ_URL"]["valueFrom"]
        autoscaled = pool["autoscaling"]["enabled"]
        assert ("replicas" in deployment["spec"]) is not autoscaled  # KEDA owns the count when it scales
    dashboard = by_kind(manifests, "Deployment")["clusterq-dashboard"]["spec"]["template"]["spec"]["containers"][0]
    args = parser.parse_args(dashboard["args"])
    assert args.command == "dashboard" and args.auth_file == "/etc/clusterq/dashboard/auth.json"


def test_signing_keys_are_mounted_and_passed_to_every_worker() -> None:
    _, manifests = manifests_for("standalone")
    assert secret_value(manifests, "clusterq-signing", "key-0") == "a-long-random-signing-key-0001"
    _, manifests = manifests_for("cluster")  # an existing Secret, two keys: the first signs
    for deployment in by_kind(manifests, "Deployment").values():
        if deployment["metadata"]["labels"]["app.kubernetes.io/component"] != "worker":
            continue
        pod = deployment["spec"]["template"]["spec"]
        args = build_parser().parse_args(pod["containers"][0]["args"])
        assert args.signing_key_file == ["/etc/clusterq/signing/current", "/etc/clusterq/signing/previous"]
        assert {"name": "signing", "secret": {"secretName": "clusterq-signing-keys", "defaultMode": 0o400}} \
            in pod["volumes"]


def test_keda_scales_each_autoscaled_pool_on_the_dashboards_autoscale_endpoint() -> None:
    values, manifests = manifests_for("sentinel")
    scaled = by_kind(manifests, "ScaledObject")
    assert list(scaled) == ["clusterq-worker-thumbnails"]  # only the pool that asked for it
    spec = scaled["clusterq-worker-thumbnails"]["spec"]
    assert spec["scaleTargetRef"] == {"name": "clusterq-worker-thumbnails"}
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (0, 30)
    trigger = spec["triggers"][0]
    service = by_kind(manifests, "Service")["clusterq-dashboard"]
    assert trigger["metadata"]["url"] == (f"http://clusterq-dashboard.jobs.svc:{service['spec']['ports'][0]['port']}"
                                          "/api/autoscale?queue=thumbnails&queue=thumbnails-bulk")
    assert trigger["metadata"]["valueLocation"] == "value" and trigger["metadata"]["targetValue"] == "40"
    auth = by_kind(manifests, "TriggerAuthentication")[trigger["authenticationRef"]["name"]]
    ref = auth["spec"]["secretTargetRef"][0]
    assert ref["parameter"] == "token"
    assert secret_value(manifests, ref["name"], ref["key"]) == values["apiToken"]


def test_the_dashboard_auth_file_loads_with_the_dashboards_code(tmp_path: Path) -> None:
    """What the dashboard pod reads (--auth-file) is accepted by the dashboard itself, with the API token
    (KEDA's and Prometheus') as a viewer token and the OIDC client from the values."""
    pytest.importorskip("authlib")
    from clusterq.dashboard.auth import AuthConfig

    values, manifests = manifests_for("sentinel")
    path = tmp_path / "auth.json"
    path.write_text(secret_value(manifests, "clusterq-dashboard-auth", "auth.json"))
    config = AuthConfig.from_file(str(path))
    token = next(t for t in config.tokens if t.name == "keda-and-prometheus")
    assert token.token_sha256 == hashlib.sha256(values["apiToken"].encode()).hexdigest() and token.role == "viewer"
    assert config.oidc is not None and config.oidc.client_id == "clusterq"
    assert config.secret_key == b"a-long-random-cookie-secret-0002"


def test_monitoring_reuses_the_alert_rules_and_scrapes_workers_and_dashboard() -> None:
    _, manifests = manifests_for("sentinel")
    rules = yaml.safe_load((ROOT / "deploy" / "prometheus" / "clusterq-alerts.yml").read_text())
    assert by_kind(manifests, "PrometheusRule")["clusterq"]["spec"]["groups"] == rules["groups"]
    assert by_kind(manifests, "PrometheusRule")["clusterq"]["metadata"]["labels"]["release"] == "prometheus"
    monitors = by_kind(manifests, "ServiceMonitor")
    workers = monitors["clusterq-workers"]["spec"]
    metrics_service = by_kind(manifests, "Service")["clusterq-worker-metrics"]
    assert workers["selector"]["matchLabels"].items() <= metrics_service["metadata"]["labels"].items()
    dashboard = monitors["clusterq-dashboard"]["spec"]["endpoints"][0]
    assert dashboard["authorization"]["credentials"] == {"name": "clusterq-api-token", "key": "token"}


def test_an_ingress_routes_to_the_dashboard_service() -> None:
    _, manifests = manifests_for("standalone")
    ingress = by_kind(manifests, "Ingress")["clusterq-dashboard"]["spec"]
    assert ingress["tls"] == [{"hosts": ["jobs.example.com"], "secretName": "jobs-example-com-tls"}]
    backend = ingress["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": "clusterq-dashboard", "port": {"name": "http"}}


# --- the rendered worker command serves the probes the Deployment points at ---------------------------


def _get(url: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_the_rendered_worker_serves_its_probes_against_each_topology(url: str, subprocess_env: dict[str, str],
                                                                     tmp_path: Path) -> None:
    health, metrics = allocate_port(), allocate_port()
    values = render.merge(render.load_values([str(ROOT / "deploy" / "examples" / "standalone.yaml")]),
                          {"redis": {"url": url}, "signing": {"keys": []},
                           "worker": {"healthPort": health, "metricsPort": metrics}})
    manifests = render.render(render.check(values))
    container = by_kind(manifests, "Deployment")["clusterq-worker-emails"]["spec"]["template"]["spec"]["containers"][0]
    args = [a.replace("$(POD_NAME)", f"deploy-test-{health}") for a in container["args"]]
    args = [a if a != "0.0.0.0" else "127.0.0.1" for a in args]  # the probe address, kept on loopback here
    env = dict(subprocess_env, CLUSTERQ_URL=secret_value(manifests, "clusterq-redis", "url"))
    worker = subprocess.Popen([sys.executable, "-m", "clusterq", *args], env=env, cwd=tmp_path,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        probe = container["readinessProbe"]["httpGet"]["path"]
        deadline = time.monotonic() + 60
        status: tuple[int, dict[str, Any]] = (0, {})
        while time.monotonic() < deadline and worker.poll() is None:
            try:
                status = _get(f"http://127.0.0.1:{health}{probe}")
            except OSError:
                status = (0, {})
            if status[0] == 200:
                break
            time.sleep(0.2)
        assert status[0] == 200 and status[1]["ok"] is True, (status, worker.poll())
        live = _get(f"http://127.0.0.1:{health}{container['livenessProbe']['httpGet']['path']}")
        assert live[0] == 200 and live[1]["ok"] is True
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics}/metrics", timeout=5) as response:
            assert b"clusterq_" in response.read()
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            _, err = worker.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            worker.kill()
            _, err = worker.communicate()
    assert worker.returncode == 0, err.decode(errors="replace")[-2000:]


# --- bad values: an error naming the setting ----------------------------------------------------------

BAD_VALUES = [
    ({"image": {"repository": ""}}, "image.repository: required"),
    ({"pools": [{"name": "a", "queues": ["x"], "concurrency": 0}]}, "pools[0].concurrency: must be an integer >= 1"),
    ({"pools": [{"name": "a", "queues": ["x"], "concurency": 2}]}, "pools[0].concurency: unknown setting (did you mean "
                                                                   "'concurrency'?)"),
    ({"pools": [{"name": "a", "queues": ["x"]}, {"name": "b", "queues": ["x"]}]},
     "pools[1].queues[0]: queue 'x' is already served by pool 'a'"),
    ({"pools": [{"name": "a", "queues": ["x"]}, {"name": "a", "queues": ["y"]}]}, "pools[1].name: 'a' is also"),
    ({"pools": [{"name": "Hot_Pool", "queues": ["x"]}]}, "pools[0].name: 'Hot_Pool' must be lowercase"),
    ({"pools": [{"name": "a", "queues": ["x"], "kind": "green"}]}, "pools[0].kind: must be one of process"),
    ({"pools": [{"name": "a", "queues": ["x"], "longestJobTimeoutSeconds": 0}]},
     "pools[0].longestJobTimeoutSeconds: must be a positive number"),
    ({"pools": [{"name": "a", "queues": []}]}, "pools[0].queues: name at least one queue"),
    ({"pools": [{"name": "a", "queues": ["x"], "dedicated": ["hot"]}]}, "pools[0].dedicated[0]: 'hot' must look like"),
    ({"pools": [{"name": "a", "queues": ["x"], "autoscaling": {"enabled": True, "minReplicas": 5, "maxReplicas": 2}}]},
     "pools[0].autoscaling.maxReplicas: 2 is below minReplicas (5)"),
    ({"namespace": "", "apiToken": "t" * 20,
      "pools": [{"name": "a", "queues": ["x"], "autoscaling": {"enabled": True}}]},
     "pools[0].autoscaling.enabled: set namespace"),
    ({"redis": {"url": "http://user:hunter2@redis:6379"}}, "redis.url: 'http://***@redis:6379' is not a clusterq URL"),
    ({"redis": {"url": "redis+sentinel://s:26379/mymaster", "remap": [{"announced": "a:1", "reachable": "b:2"}]}},
     "redis.remap: the address remap is for a cluster"),
    ({"redis": {"remap": [{"announced": "10.0.0.1", "reachable": "b:2"}]}},
     "redis.remap[0].announced: '10.0.0.1' must be host:port"),
    ({"redis": {"url": "", "existingSecret": ""}}, "redis.url: give the connection URL"),
    ({"signing": {"keys": ["short"]}}, "signing.keys[0]: a signing key must be at least 16 bytes"),
    ({"dashboard": {"auth": {"secret_key": "x" * 20, "users": [], "tokens": [], "oidc": {}}}, "apiToken": ""},
     "dashboard.auth: give users, tokens or oidc"),
    ({"dashboard": {"auth": {"users": [{"name": "ada", "password": "hunter2", "password_hash": "h",
                                        "role": "admin"}]}}}, "store the hash (password_hash), never the secret"),
    ({"dashboard": {"auth": {"users": [{"name": "ada", "password_hash": "h", "role": "root"}]}}},
     "dashboard.auth.users[0].role: must be one of viewer, operator, admin"),
    ({"dashboard": {"auth": {"oidc": {"issuer": "http://idp", "client_id": "c", "client_secret": "s"}}}},
     "dashboard.auth.oidc.issuer: must be an https:// URL"),
    ({"worker": {"healthPort": 70000}}, "worker.healthPort: must be an integer >= 1 and <= 65535"),
    ({"monitoring": {"serviceMonitor": {"interval": "often"}}}, "monitoring.serviceMonitor.interval"),
    ({"dashbord": {}}, "dashbord: unknown setting (did you mean 'dashboard'?)"),
]


@pytest.mark.parametrize(("overrides", "message"), BAD_VALUES, ids=[m.split(":")[0] for _, m in BAD_VALUES])
def test_bad_values_stop_with_an_error_naming_the_setting(overrides: dict[str, Any], message: str,
                                                          tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    base = yaml.safe_load((ROOT / "deploy" / "examples" / "standalone.yaml").read_text())
    path.write_text(yaml.safe_dump(render.merge(base, copy.deepcopy(overrides))))
    result = subprocess.run([sys.executable, str(ROOT / "deploy" / "render.py"), "-f", str(path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith("render.py: values error: ") and message in result.stderr, result.stderr


def test_an_invalid_manifest_is_reported_with_its_kind_name_and_field() -> None:
    _, manifests = manifests_for("cluster")
    broken = copy.deepcopy(manifests)
    for m in broken:
        if m["kind"] == "Deployment":
            m["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGett"] = {}
        if m["kind"] == "ScaledObject":
            m["spec"]["triggers"][0]["metadataa"] = {}
            m["spec"]["maxReplicaCount"] = "ten"
    problems = render.validate(broken)
    assert any(p.startswith("Deployment clusterq-worker-payments: spec.template.spec.containers.0.livenessProbe")
               and "httpGett" in p for p in problems)
    assert "ScaledObject clusterq-worker-default: spec.triggers[0].metadataa: unknown field" in problems
    assert any(p.startswith("ScaledObject clusterq-worker-default: spec.maxReplicaCount:") for p in problems)
