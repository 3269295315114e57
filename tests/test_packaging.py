"""The package as users get it: the sdist and the wheel are built (``python -m build``), each is installed
into a fresh virtual environment, and the installed command runs from there, away from this checkout.

The wheel must carry the files that are not Python (the Lua scripts, the dashboard's templates and static
files, ``py.typed``); the sdist must carry what it takes to test and document the package; the metadata
must carry the project URLs, classifiers and extras.
"""

from __future__ import annotations

import email.parser
import os
import subprocess
import sys
import tarfile
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytest.importorskip("build")


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    # the sdist first, then the wheel built from the sdist (what `python -m build` does): a file the sdist
    # forgets makes the wheel incomplete, and the tests below see it
    result = subprocess.run([sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)], capture_output=True,
                            text=True, timeout=240)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return out


def only(folder: Path, pattern: str) -> Path:
    found = list(folder.glob(pattern))
    assert len(found) == 1, found
    return found[0]


def fresh_venv(where: Path) -> Path:
    """A virtual environment without pip (ours installs into it: faster, and nothing of this checkout)."""
    venv.EnvBuilder(with_pip=False, clear=True).create(where)
    return where / "bin" / "python"


def clean_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV", "CLUSTERQ"))}
    env["HOME"] = str(home)
    return env


def install(python: Path, target: Path, tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q",
                             "--disable-pip-version-check", str(target)],
                            capture_output=True, text=True, timeout=240, cwd=tmp_path, env=clean_env(tmp_path))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def run(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=120, cwd=tmp_path, env=clean_env(tmp_path))


def check_installed(python: Path, tmp_path: Path) -> None:
    bindir = python.parent
    for args in ([str(bindir / "clusterq"), "--help"], [str(python), "-m", "clusterq", "--help"]):
        result = run(args, tmp_path)
        assert result.returncode == 0, result.stderr
        assert "worker" in result.stdout and "dashboard" in result.stdout and "completion" in result.stdout
    version = run([str(bindir / "clusterq"), "--version"], tmp_path)
    assert version.stdout.strip() == "clusterq 0.1.0"
    completion = run([str(bindir / "clusterq"), "completion", "bash"], tmp_path)
    assert completion.returncode == 0 and "complete -F _clusterq clusterq" in completion.stdout
    # imported from the venv, not this checkout, with its data files (every Lua script loads)
    probe = ("import clusterq, importlib.resources as r; "
             "print(clusterq.__file__); "
             "print(sum(f.name.endswith('.lua') for f in r.files('clusterq.state').joinpath('scripts').iterdir())); "
             "print(r.files('clusterq').joinpath('dashboard', 'templates', 'base.html').is_file()); "
             "print(r.files('clusterq').joinpath('py.typed').is_file())")
    result = run([str(python), "-c", probe], tmp_path)
    assert result.returncode == 0, result.stderr
    where, scripts, template, typed = result.stdout.split()
    assert Path(where).is_relative_to(python.parent.parent) and not Path(where).is_relative_to(ROOT)
    assert int(scripts) == len(list((ROOT / "src/clusterq/state/scripts").glob("*.lua"))) > 10
    assert template == typed == "True"


def test_the_wheel_installs_into_a_fresh_venv_and_runs(dist: Path, tmp_path: Path) -> None:
    wheel = only(dist, "clusterq-*.whl")
    python = fresh_venv(tmp_path / "venv")
    install(python, wheel, tmp_path)
    check_installed(python, tmp_path)


def test_the_sdist_installs_into_a_fresh_venv_and_runs(dist: Path, tmp_path: Path) -> None:
    sdist = only(dist, "clusterq-*.tar.gz")
    python = fresh_venv(tmp_path / "venv")
    install(python, sdist, tmp_path)
    check_installed(python, tmp_path)


def test_the_sdist_carries_the_docs_tests_and_deploy_files(dist: Path) -> None:
    with tarfile.open(only(dist, "clusterq-*.tar.gz")) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    for path in ("README.md", "CHANGELOG.md", "LICENSE", "mkdocs.yml", "pyproject.toml", "docs/index.md",
                 "docs/getting-started.md", "tests/conftest.py", "tests/jobs.py", "deploy/render.py",
                 "deploy/values.yaml", "scripts/test.sh", "src/clusterq/state/scripts/enqueue.lua"):
        assert path in names, path
    assert not any(name.startswith("site/") or "__pycache__" in name for name in names)


def test_the_wheel_metadata_has_urls_classifiers_and_extras(dist: Path) -> None:
    with zipfile.ZipFile(only(dist, "clusterq-*.whl")) as wheel:
        text = wheel.read(next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))).decode()
        entry_points = wheel.read(next(n for n in wheel.namelist() if n.endswith(".dist-info/entry_points.txt")))
    metadata = email.parser.Parser().parsestr(text)
    urls = dict(u.split(", ", 1) for u in metadata.get_all("Project-URL"))
    assert {"Homepage", "Documentation", "Source", "Issues", "Changelog"} <= set(urls)
    classifiers = metadata.get_all("Classifier")
    assert "Typing :: Typed" in classifiers and "Programming Language :: Python :: 3.10" in classifiers
    assert metadata["Requires-Python"] == ">=3.10" and metadata["License-Expression"] == "MIT"
    assert {"dashboard", "metrics", "docs", "test", "embedded"} <= set(metadata.get_all("Provides-Extra"))
    assert b"clusterq = clusterq.cli.main:main" in entry_points
