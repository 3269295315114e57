"""``clusterq completion bash|zsh|fish``: a shell completion script, generated from the argument parser.

The scripts are built from the same ``argparse`` parser that ``clusterq`` runs, so a new subcommand or option
completes without anything to keep in step: subcommands, their options, the choices of an option (``--pool``,
``completion``'s shell) and file names for options that take a path (``--auth-file``, ``--signing-key-file``).
Queue names and job handles are not completed (that would need a server).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field

SHELLS = ("bash", "zsh", "fish")


@dataclass
class Option:
    flags: list[str]
    help: str
    takes_value: bool
    choices: list[str] = field(default_factory=list)
    path: bool = False


@dataclass
class Command:
    name: str
    help: str
    options: list[Option]
    positional_choices: list[str] = field(default_factory=list)


def _help(action: argparse.Action) -> str:
    text = action.help if isinstance(action.help, str) and action.help != argparse.SUPPRESS else ""
    return " ".join(text.replace("%%", "%").split())


def _options(parser: argparse.ArgumentParser) -> tuple[list[Option], list[str]]:
    options, positional_choices = [], []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            continue
        if not action.option_strings:
            positional_choices += [str(c) for c in action.choices or ()]
            continue
        takes_value = action.nargs != 0
        metavar = str(action.metavar or "")
        options.append(Option(
            flags=list(action.option_strings), help=_help(action), takes_value=takes_value,
            choices=[str(c) for c in action.choices or ()],
            path=takes_value and (metavar in ("PATH", "FILE") or action.dest.endswith("_file")),
        ))
    return options, positional_choices


def describe(parser: argparse.ArgumentParser) -> tuple[list[Option], list[Command]]:
    """The top-level options and every subcommand, from the parser."""
    top, _ = _options(parser)
    commands = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: str(choice.help or "") for choice in action._choices_actions}
            for name, sub in action.choices.items():
                options, positional = _options(sub)
                commands.append(Command(name, helps.get(name, ""), options, positional))
    return top, commands


def script(parser: argparse.ArgumentParser, shell: str) -> str:
    if shell not in SHELLS:
        raise ValueError(f"no completion for shell {shell!r}: choose one of {', '.join(SHELLS)}")
    top, commands = describe(parser)
    prog = parser.prog
    return {"bash": _bash, "zsh": _zsh, "fish": _fish}[shell](prog, top, commands)


# --- bash --------------------------------------------------------------------------------------------------


def _bash(prog: str, top: list[Option], commands: list[Command]) -> str:
    func = "_" + prog.replace("-", "_")
    words = [c.name for c in commands] + [f for o in top for f in o.flags]
    lines = [
        f"# bash completion for {prog}: source <({prog} completion bash)",
        f"{func}() {{",
        '    local cur="${COMP_WORDS[COMP_CWORD]}" prev="${COMP_WORDS[COMP_CWORD-1]}" cmd="" i',
        "    for ((i = 1; i < COMP_CWORD; i++)); do",
        '        case "${COMP_WORDS[i]}" in',
        "            -*) ;;",
        '            *) cmd="${COMP_WORDS[i]}"; break ;;',
        "        esac",
        "    done",
        '    case "$cmd" in',
        f'        "") COMPREPLY=($(compgen -W "{" ".join(words)}" -- "$cur")); return ;;',
    ]
    for command in commands:
        lines.append(f"        {command.name})")
        valued = [o for o in command.options if o.takes_value]
        if valued:
            lines.append('            case "$prev" in')
            for option in valued:
                pattern = "|".join(option.flags)
                if option.choices:
                    lines.append(f'                {pattern}) COMPREPLY=($(compgen -W "{" ".join(option.choices)}" '
                                 '-- "$cur")); return ;;')
            paths = [f for o in valued if o.path and not o.choices for f in o.flags]
            if paths:
                lines.append(f'                {"|".join(paths)}) COMPREPLY=($(compgen -f -- "$cur")); return ;;')
            plain = [f for o in valued if not o.path and not o.choices for f in o.flags]
            if plain:  # a value to type (a URL, a number, a name): nothing to offer
                lines.append(f"                {'|'.join(plain)}) COMPREPLY=(); return ;;")
            lines.append("            esac")
        flags = " ".join(f for o in command.options for f in o.flags)
        lines.append('            if [[ "$cur" == -* ]]; then')
        lines.append(f'                COMPREPLY=($(compgen -W "{flags}" -- "$cur"))')
        if command.positional_choices:
            lines.append("            else")
            choices = " ".join(command.positional_choices)
            lines.append(f'                COMPREPLY=($(compgen -W "{choices}" -- "$cur"))')
        lines.append("            fi")
        lines.append("            ;;")
    lines += ["    esac", "}", f"complete -F {func} {prog}", ""]
    return "\n".join(lines)


# --- zsh ---------------------------------------------------------------------------------------------------


def _zsh_text(text: str) -> str:
    """Text inside a single-quoted _arguments spec: no quote, and no bracket or colon that ends a field."""
    return text.replace("'", "").replace("[", "(").replace("]", ")").replace(":", " -").replace("\\", "")


def _zsh_spec(option: Option) -> list[str]:
    specs = []
    for flag in option.flags:
        spec = f"{flag}[{_zsh_text(option.help)}]"
        if option.takes_value:
            if option.choices:
                spec += f":value:({' '.join(option.choices)})"
            elif option.path:
                spec += ":file:_files"
            else:
                spec += ":value: "
        specs.append(f"'{spec}'")
    return specs


def _zsh(prog: str, top: list[Option], commands: list[Command]) -> str:
    func = "_" + prog.replace("-", "_")
    lines = [
        f"#compdef {prog}",
        f"# zsh completion for {prog}: {prog} completion zsh > \"${{fpath[1]}}/_{prog}\"",
        f"{func}() {{",
        "    local curcontext=\"$curcontext\" state line",
        "    typeset -A opt_args",
        "    _arguments -C \\",
        *[f"        {spec} \\" for option in top for spec in _zsh_spec(option)],
        "        '1:command:->command' \\",
        "        '*::argument:->argument'",
        "    case $state in",
        "        command)",
        "            local -a commands",
        "            commands=(",
        *[f"                '{c.name}:{_zsh_text(c.help)}'" for c in commands],
        "            )",
        f"            _describe -t commands '{prog} command' commands",
        "            ;;",
        "        argument)",
        "            case $line[1] in",
    ]
    for command in commands:
        positional = (f"'*:argument:({' '.join(command.positional_choices)})'" if command.positional_choices
                      else "'*:argument:_default'")
        specs = [spec for option in command.options for spec in _zsh_spec(option)] + [positional]
        lines.append(f"                {command.name})")
        lines.append("                    _arguments \\")
        lines += [f"                        {spec} \\" for spec in specs[:-1]]
        lines.append(f"                        {specs[-1]}")
        lines.append("                    ;;")
    lines += ["            esac", "            ;;", "    esac", "}", "", f'if [[ "$funcstack[1]" == "{func}" ]]; then',
              f'    {func} "$@"', "else", f"    compdef {func} {prog}", "fi", ""]
    return "\n".join(lines)


# --- fish --------------------------------------------------------------------------------------------------


def _fish_text(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _fish_option(prog: str, condition: str, option: Option) -> str:
    parts = [f"complete -c {prog} -n {_fish_text(condition)}"]
    for flag in option.flags:
        if flag.startswith("--"):
            parts.append(f"-l {flag[2:]}")
        else:
            parts.append(f"-s {flag[1:]}")
    if option.takes_value:
        if option.choices:
            parts.append(f"-x -a {_fish_text(' '.join(option.choices))}")
        elif option.path:
            parts.append("-r -F")
        else:
            parts.append("-x")
    if option.help:
        parts.append(f"-d {_fish_text(option.help)}")
    return " ".join(parts)


def _fish(prog: str, top: list[Option], commands: list[Command]) -> str:
    names = " ".join(c.name for c in commands)
    lines = [f"# fish completion for {prog}: {prog} completion fish > ~/.config/fish/completions/{prog}.fish",
             f"complete -c {prog} -f"]
    for option in top:
        lines.append(_fish_option(prog, "__fish_use_subcommand", option))
    for command in commands:
        lines.append(f"complete -c {prog} -n '__fish_use_subcommand' -a {command.name} -d {_fish_text(command.help)}")
    for command in commands:
        condition = f"__fish_seen_subcommand_from {command.name}"
        for option in command.options:
            lines.append(_fish_option(prog, condition, option))
        if command.positional_choices:
            lines.append(f"complete -c {prog} -n {_fish_text(condition)} -a "
                         f"{_fish_text(' '.join(command.positional_choices))}")
    lines.append(f"# subcommands: {names}")
    return "\n".join(lines) + "\n"
