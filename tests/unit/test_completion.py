"""``clusterq completion bash|zsh|fish``: the scripts are loaded into the real shells and asked to complete.

bash is always there; zsh and fish are checked when installed (Debian packages ``zsh`` and ``fish``).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from clusterq.cli.completion import script
from clusterq.cli.main import build_parser, main

pytestmark = pytest.mark.unit


def completion_script(shell: str, tmp_path: Path) -> Path:
    result = subprocess.run([sys.executable, "-m", "clusterq", "completion", shell], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    path = tmp_path / f"clusterq.{shell}"
    path.write_text(result.stdout)
    return path


def bash_complete(path: Path, *words: str) -> list[str]:
    """What bash offers for the last word of ``clusterq WORDS...``."""
    line = " ".join(f"'{w}'" for w in ("clusterq", *words))
    program = (f"source {path}; COMP_WORDS=({line}); COMP_CWORD={len(words)}; _clusterq; "
               'printf "%s\\n" "${COMPREPLY[@]}"')
    result = subprocess.run(["bash", "-c", program], capture_output=True, text=True, timeout=60, cwd=path.parent)
    assert result.returncode == 0, result.stderr
    return [w for w in result.stdout.splitlines() if w]


def test_bash_completes_subcommands_options_choices_and_files(tmp_path: Path) -> None:
    path = completion_script("bash", tmp_path)
    assert set(bash_complete(path, "")) >= {"worker", "dashboard", "completion", "--version"}
    assert bash_complete(path, "da") == ["dashboard"]
    assert bash_complete(path, "worker", "--po") == ["--pool"]
    assert bash_complete(path, "worker", "--pool", "") == ["process", "fork", "thread", "asyncio", "solo"]
    assert bash_complete(path, "worker", "-P", "th") == ["thread"]
    assert bash_complete(path, "completion", "") == ["bash", "zsh", "fish"]
    (tmp_path / "auth.json").write_text("{}")
    assert bash_complete(path, "dashboard", "--auth-file", "au") == ["auth.json"]
    assert bash_complete(path, "worker", "--url", "") == []  # a URL to type: no file names offered
    # options of the subcommand being completed, not of another
    assert "--auth-file" in bash_complete(path, "dashboard", "--") and "--auth-file" not in bash_complete(
        path, "worker", "--")


def test_every_subcommand_and_option_of_the_parser_is_in_each_script() -> None:
    parser = build_parser()
    for shell in ("bash", "zsh", "fish"):
        text = script(parser, shell)
        for name in ("worker", "cron", "info", "enqueue", "dashboard", "dev", "completion"):
            assert name in text, (shell, name)
        for flag in ("with-cron", "signing-key-file", "health-port", "auth-file", "include-stopped"):
            assert flag in text, (shell, flag)


def test_an_unknown_shell_is_refused_naming_the_choices(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["completion", "powershell"])
    assert exc.value.code == 2
    assert "invalid choice: 'powershell'" in capsys.readouterr().err
    with pytest.raises(ValueError, match="choose one of bash, zsh, fish"):
        script(build_parser(), "tcsh")


@pytest.mark.skipif(shutil.which("fish") is None, reason="fish is not installed")
def test_fish_completes_subcommands_and_choices(tmp_path: Path) -> None:
    path = completion_script("fish", tmp_path)

    def complete(line: str) -> list[str]:
        result = subprocess.run(["fish", "--no-config", "-c", f"source {path}; complete -C '{line}'"],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        return [entry.split("\t")[0] for entry in result.stdout.splitlines()]

    assert complete("clusterq wor") == ["worker"]
    assert sorted(complete("clusterq worker --pool ")) == ["asyncio", "fork", "process", "solo", "thread"]
    assert sorted(complete("clusterq completion ")) == ["bash", "fish", "zsh"]
    assert "--with-cron" in complete("clusterq worker --with")


@pytest.mark.skipif(shutil.which("zsh") is None, reason="zsh is not installed")
def test_zsh_loads_the_script_and_registers_it(tmp_path: Path) -> None:
    path = completion_script("zsh", tmp_path)
    check = subprocess.run(["zsh", "-n", str(path)], capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stderr
    program = f"autoload -U compinit; compinit -u -D; source {path}; print -r -- ${{_comps[clusterq]}}"
    result = subprocess.run(["zsh", "-f", "-c", program], capture_output=True, text=True, timeout=60,
                            env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "_clusterq"
    # An interactive zsh (on a pseudo-terminal) completes a typed line with TAB.
    driver = tmp_path / "drive.zsh"
    driver.write_text(
        "zmodload zsh/zpty\nzpty z zsh -f -i\n"
        f"zpty -w z \"PS1='> '; autoload -U compinit; compinit -u -D; source {path}\"\n"
        "zpty -w -n z $'clusterq worker --po\\t'\nsleep 2\nzpty -w -n z $'\\x05\\x03'\nsleep 1\n"
        'out=""\nwhile zpty -r -t z line; do out+=$line; done\nprint -r -- "$out"\nzpty -d z\n')
    typed = subprocess.run(["zsh", "-f", str(driver)], capture_output=True, text=True, timeout=60,
                           env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert "clusterq worker --pool" in typed.stdout, typed.stdout[-2000:]
