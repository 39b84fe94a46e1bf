"""`manage.py teguh ...`: the `teguh` command line on the project's database and app.

Every subcommand of `teguh --help` works (`worker`, `install`, `queue`, `spawn`,
`emit`, `task show|cancel|retry`, `ticker`, `cron`, `cleanup`); the DSN comes
from the Django settings and `worker` runs the project's app
(`teguh.contrib.django.get_app`) with `TEGUH["WORKER"]` as defaults.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from django.core.management.base import BaseCommand, CommandError

APP_SPEC = "teguh.contrib.django:get_app"


def run_cli(args: list[str], prog_name: str = "manage.py teguh") -> int:
    """Run the click CLI with Django's DSN and app; returns the exit status."""
    import click

    from teguh import cli

    from ... import conf

    if "--dsn" not in args and not any(a.startswith("--dsn=") for a in args):
        args = ["--dsn", conf.dsn(), *args]
    worker_defaults: dict[str, Any] = {"app_spec": APP_SPEC}
    worker_defaults.update(conf.worker_defaults())
    # --queue takes several values: TEGUH["WORKER"]["QUEUE"] (or "QUEUES") may be one name or a
    # list; without either the worker serves the app's queues, like `teguh worker`
    named = worker_defaults.pop("queues", None) or worker_defaults.pop("queue", None)
    worker_defaults.pop("queue", None)
    if named:
        worker_defaults["queue"] = (named,) if isinstance(named, str) else tuple(named)
    try:
        status = cli.main.main(
            args=args,
            prog_name=prog_name,
            standalone_mode=False,
            default_map={"worker": worker_defaults},
        )
    except click.exceptions.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Abort:
        return 1
    return status if isinstance(status, int) else 0


class Command(BaseCommand):
    help = "The teguh command line (worker, install, queue, spawn, emit, task, ...) on this project."
    # click parses the arguments: Django must not touch them
    requires_system_checks: list = []  # noqa: RUF012 (Django's convention)

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("cli_args", nargs=argparse.REMAINDER, help="teguh subcommand and options")

    def run_from_argv(self, argv: list[str]) -> None:
        """`manage.py teguh ARGS`: hand ARGS to click untouched (so `--help` is teguh's)."""
        status = run_cli(argv[2:], f"{os.path.basename(argv[0])} {argv[1]}")
        if status:
            raise SystemExit(status)

    def handle(self, *args: Any, **options: Any) -> None:
        """`call_command("teguh", "worker", "--concurrency", "2")`."""
        status = run_cli([*args, *options.get("cli_args", [])])
        if status:
            raise CommandError(f"teguh exited with status {status}", returncode=status)
