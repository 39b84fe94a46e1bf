"""The `teguh` command line (minimal for now: install, dev and queue management).

Errors print one line on stderr and exit with status 1; `--debug` shows the
traceback instead. Usage errors exit with status 2 (click's convention).
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import click

from . import _embedded
from .client import Client, install
from .errors import Cancelled, LeaseLost, Suspended


class _Group(click.Group):
    """A click group that turns any error into a one-line message and exit status 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except (Exception, Cancelled, LeaseLost, Suspended) as exc:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            click.echo(f"teguh: error: {message}", err=True)
            ctx.exit(1)


def _client(ctx: click.Context) -> Client:
    client = Client(ctx.obj["dsn"], min_connections=0, max_connections=1, application_name="teguh-cli")
    ctx.call_on_close(client.close)
    return client


@click.group(cls=_Group)
@click.option(
    "--dsn",
    envvar="TEGUH_DSN",
    default=None,
    help="PostgreSQL DSN or URI (else TEGUH_DSN, DATABASE_URL, PG* variables, or the embedded server).",
)
@click.option("--debug", is_flag=True, help="Log at DEBUG and show tracebacks.")
@click.version_option(package_name="teguh")
@click.pass_context
def main(ctx: click.Context, dsn: str | None, debug: bool) -> None:
    """teguh: durable tasks and a job queue on PostgreSQL alone."""
    ctx.ensure_object(dict)
    ctx.obj["dsn"] = dsn
    ctx.obj["debug"] = debug
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


@main.command("install")
@click.pass_context
def install_cmd(ctx: click.Context) -> None:
    """Install or upgrade the teguh schema (safe to repeat; keeps data)."""
    client = _client(ctx)
    install(client)
    click.echo(f"teguh schema {client.schema_version()} installed")


@main.command("dev")
def dev_cmd() -> None:
    """Start the embedded PostgreSQL (if needed) and print its DSN.

    The server keeps running after this command exits and is reused by later
    commands and clients that find no DSN configured.
    """
    server = _embedded.ensure_server()
    click.echo(server.dsn)


@main.group("queue")
def queue_group() -> None:
    """Create, drop and list queues."""


@queue_group.command("create")
@click.argument("queue")
@click.pass_context
def queue_create(ctx: click.Context, queue: str) -> None:
    """Create QUEUE (idempotent)."""
    _client(ctx).create_queue(queue)
    click.echo(f"queue {queue} created")


@queue_group.command("drop")
@click.argument("queue")
@click.pass_context
def queue_drop(ctx: click.Context, queue: str) -> None:
    """Drop QUEUE with all its tasks, checkpoints and events (unknown queues: no-op)."""
    _client(ctx).drop_queue(queue)
    click.echo(f"queue {queue} dropped")


@queue_group.command("list")
@click.pass_context
def queue_list(ctx: click.Context) -> None:
    """List queue names, one per line."""
    for name in _client(ctx).list_queues():
        click.echo(name)


if __name__ == "__main__":  # pragma: no cover
    main()
