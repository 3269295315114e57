"""The peers' virtual environment (``bench/.peers-venv``): created and filled by the bench itself.

All peers go into one venv from ``peers-requirements.txt`` (pinned). If that install fails, each peer is
installed on its own, so one broken peer is reported as failed while the others still run.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .config import BENCH_DIR, LOG_DIR

VENV_DIR = BENCH_DIR / ".peers-venv"
REQUIREMENTS = BENCH_DIR / "peers-requirements.txt"
STAMP = VENV_DIR / ".installed-requirements.sha256"
IMPORTS = {"rq": "rq", "celery": "celery", "dramatiq": "dramatiq", "huey": "huey", "arq": "arq",
           "taskiq": "taskiq_redis"}
INSTALL_TIMEOUT_S = 900


@dataclass
class PeersEnv:
    python: str | None
    failures: dict[str, str] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)


def requirement_groups() -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    current = "common"
    for raw in REQUIREMENTS.read_text().splitlines():
        line = raw.strip()
        if line.startswith("#"):
            name = line.lstrip("#").strip()
            if name in IMPORTS or name == "common":
                current = name
            continue
        if line:
            groups.setdefault(current, []).append(line)
    return groups


def _pip(python: Path, args: list[str], log: Path) -> tuple[bool, str]:
    with open(log, "a") as out:
        out.write(f"\n$ pip {' '.join(args)}\n")
        out.flush()
        try:
            done = subprocess.run([str(python), "-m", "pip", *args], stdout=out, stderr=subprocess.STDOUT,
                                  timeout=INSTALL_TIMEOUT_S, check=False)
        except subprocess.TimeoutExpired:
            return False, f"pip timed out after {INSTALL_TIMEOUT_S} s"
    if done.returncode == 0:
        return True, ""
    tail = [line for line in log.read_text(errors="replace").splitlines() if line.strip()][-3:]
    return False, f"pip install failed ({' / '.join(t.strip() for t in tail)[:300]})"


def _probe(python: Path, families: list[str]) -> dict[str, str]:
    """family -> version, or "!error" for a peer that cannot be imported."""
    code = (
        "import importlib, importlib.metadata as m, json, sys\n"
        "out = {}\n"
        "for fam, mod in json.loads(sys.argv[1]).items():\n"
        "    try:\n"
        "        importlib.import_module(mod); out[fam] = m.version(mod)\n"
        "    except Exception as e:\n"
        "        out[fam] = '!' + type(e).__name__ + ': ' + str(e)[:200]\n"
        "out['redis-py'] = m.version('redis')\n"
        "print(json.dumps(out))\n"
    )
    wanted = {f: IMPORTS[f] for f in families}
    done = subprocess.run([str(python), "-c", code, json.dumps(wanted)], capture_output=True, text=True,
                          timeout=120, check=False)
    if done.returncode != 0:
        return {f: "!" + (done.stderr.strip().splitlines() or ["import check failed"])[-1] for f in families}
    return dict(json.loads(done.stdout))


def ensure(families: list[str], log: Callable[[str], None] = print) -> PeersEnv:
    """Create/refresh the venv and report, per peer family, its version or why it is unusable."""
    if not families:
        return PeersEnv(None)
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    log_path = LOG_DIR / "peers-install.log"
    python = VENV_DIR / "bin" / "python"
    if not python.exists():
        log(f"creating {VENV_DIR} ...")
        done = subprocess.run([sys.executable, "-m", "venv", str(VENV_DIR)], capture_output=True, text=True,
                              check=False)
        if done.returncode != 0:
            reason = f"cannot create venv: {done.stderr.strip()[-300:]}"
            return PeersEnv(None, {f: reason for f in families})
    digest = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()
    groups = requirement_groups()
    failures: dict[str, str] = {}
    if not STAMP.exists() or STAMP.read_text().strip() != digest:
        log(f"installing peers into {VENV_DIR} (log: {log_path}) ...")
        ok, reason = _pip(python, ["install", "-q", "-r", str(REQUIREMENTS)], log_path)
        if ok:
            STAMP.write_text(digest)
        else:
            log(f"  installing all peers at once failed ({reason}); trying one by one")
            for family in families:
                ok, reason = _pip(python, ["install", "-q", *groups.get("common", []), *groups.get(family, [])],
                                  log_path)
                if not ok:
                    failures[family] = reason
    probed = _probe(python, families)
    versions = {}
    for family in families:
        value = probed.get(family, "!not checked")
        if value.startswith("!"):
            failures.setdefault(family, f"not importable: {value[1:]}")
        else:
            versions[family] = value
    if "redis-py" in probed:
        versions["redis-py"] = probed["redis-py"]
    return PeersEnv(str(python), failures, versions)


def runtime_env(pythonpath: list[str]) -> dict[str, str]:
    """The environment of a driver subprocess: ours, with PYTHONPATH set to exactly ``pythonpath``."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env["PYTHONPATH"] = os.pathsep.join(pythonpath)
    return env
