"""The management commands: thin wrappers over the ``clusterq`` command line, given the URL, the signing
key and the queues of the ``CLUSTERQ`` setting. Every other argument is passed through unchanged:

    python manage.py clusterq_worker --burst emails     # = clusterq worker -u URL --burst emails
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from clusterq.cli import main as cli
from clusterq.contrib.django import conf
from clusterq.signing import KEY_ENV

# the CLI options each command may take from CLUSTERQ["WORKER"]
_WORKER_FLAGS = {"pool": "--pool", "concurrency": "--concurrency", "max_jobs_per_child": "--max-jobs-per-child",
                 "lease_s": "--lease-s", "max_attempts": "--max-attempts", "serializer": "--serializer"}


_DJANGO_FLAGS = ("--traceback", "--no-color", "--force-color", "--skip-checks")
_DJANGO_VALUED = ("--settings", "--pythonpath", "--verbosity")


class ClusterQCommand(BaseCommand):
    cli_command = ""
    help = ""

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("cli_args", nargs="*",
                            help=f"arguments of `clusterq {self.cli_command}` (see clusterq {self.cli_command} -h)")

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> Any:
        """Django's own options (long forms only) stay Django's; every other argument, in order, is the
        CLI's (``-v`` and ``-q`` mean what they mean to ``clusterq``)."""
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        parse = parser.parse_args

        def parse_args(args: Any = None, namespace: Any = None) -> argparse.Namespace:
            given = [str(a) for a in (sys.argv[2:] if args is None else args)]
            own: list[str] = []
            rest: list[str] = []
            index = 0
            while index < len(given):
                arg = given[index]
                name = arg.split("=", 1)[0]
                if name in _DJANGO_FLAGS:
                    own.append(arg)
                elif name in _DJANGO_VALUED:
                    own.append(arg)
                    if "=" not in arg and index + 1 < len(given):
                        index += 1
                        own.append(given[index])
                else:
                    rest.append(arg)
                index += 1
            found = parse(own, namespace)
            found.cli_args = rest
            return found

        parser.parse_args = parse_args
        return parser

    def build_argv(self, config: conf.Config, args: list[str]) -> list[str]:
        return [self.cli_command, "-u", config.url, *args]

    def handle(self, *args: Any, **options: Any) -> None:
        config = conf.load()
        if config.signing_key and not os.environ.get(KEY_ENV):
            os.environ[KEY_ENV] = config.signing_key.decode()
        code = cli.main(self.build_argv(config, list(options["cli_args"])))
        if code:
            raise CommandError(f"clusterq {self.cli_command} exited with {code}", returncode=code)


class WorkerCommand(ClusterQCommand):
    cli_command = "worker"
    help = "Run a clusterq worker (the queues of CLUSTERQ['QUEUES'] unless named)."

    def build_argv(self, config: conf.Config, args: list[str]) -> list[str]:
        flags = []
        for name, value in config.worker.items():
            flag = _WORKER_FLAGS.get(name)
            if flag is None:
                raise CommandError(f"settings.CLUSTERQ['WORKER'] has unknown option {name!r}; "
                                   f"known: {', '.join(_WORKER_FLAGS)}")
            if flag not in args:
                flags += [flag, str(value)]
        hook = ["--hook", "clusterq.contrib.django.worker:DjangoHook"]
        named = cli.build_parser().parse_known_args(["worker", *args])[0].queues
        queues = [] if named else list(config.queues)
        return ["worker", "-u", config.url, *hook, *flags, *args, *queues]
