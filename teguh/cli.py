"""The `teguh` command line.

Every option can also be set through an environment variable: the ones named
in `--help` (`TEGUH_DSN`, `TEGUH_APP`, `TEGUH_QUEUE`, ...), and otherwise
`TEGUH_<COMMAND>_<OPTION>` (click's automatic names). Errors print one line on
stderr and exit with status 1; `--debug` shows the traceback instead. Usage
errors exit with status 2 (click's convention), invalid or unreadable JSON
arguments too, in one line.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import click

from . import _embedded, _import_error, _logging, _malloc, _sql, _validate
from .client import MAX_LIST_LIMIT, TASK_STATES, Client, install
from .errors import Cancelled, LeaseLost, Suspended
from .results import QueueStats, TaskInfo


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


class _BadJson(click.ClickException):
    """An unreadable or invalid JSON argument: one line on stderr, usage-error status 2."""

    exit_code = 2

    def show(self, file: Any = None) -> None:
        click.echo(f"teguh: error: {self.format_message()}", err=True)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed (JSON has no NaN or Infinity)")


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"{text} is out of range for a JSON number")
    return value


def _json_arg(text: str | None, what: str) -> Any:
    """Parse a JSON argument given inline, as `@FILE`, or as `-` (standard input).

    Inline JSON over about 128 KB hits the shell's argument limit; a file or
    stdin does not. Every unreadable or invalid value (NaN and Infinity
    included, which PostgreSQL's jsonb refuses) exits with status 2.
    """
    if text is None:
        return None
    if text == "-":
        text = sys.stdin.read()
    elif text.startswith("@"):
        # a JSON text never starts with "@", so this cannot shadow one
        try:
            with open(text[1:], encoding="utf-8") as f:
                text = f.read()
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            raise _BadJson(f"{what}: cannot read {text[1:]!r}: {reason}") from None
    try:
        return json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
    except (ValueError, RecursionError) as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise _BadJson(f"{what} is not valid JSON: {message}") from None


def _echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, default=str))


class _AppImportError(Exception):
    """The user's app module raised while being imported (exit status 1, one line)."""

    def __init__(self, module_name: str, exc: BaseException) -> None:
        super().__init__(
            f"cannot import {module_name!r}: {_import_error.describe(exc)} "
            "(run `teguh --debug ...` for the traceback)"
        )


def load_app(spec: str) -> Any:
    """Import `module:attribute` (or `module`, taking its `app`); call it if it is a factory.

    The current directory is importable, as with `python -m`.
    """
    from .app import App

    module_name, _, attr = spec.partition(":")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            # the spec names no module: a usage error
            raise click.BadParameter(f"cannot import {module_name!r}: {exc}", param_hint="--app") from None
        raise _AppImportError(module_name, exc) from exc
    except Exception as exc:
        # the user's module raised while importing: say where, in one line
        raise _AppImportError(module_name, exc) from exc
    try:
        obj = getattr(module, attr or "app")
    except AttributeError:
        raise click.BadParameter(
            f"{module_name!r} has no attribute {attr or 'app'!r}", param_hint="--app"
        ) from None
    if not isinstance(obj, App) and callable(obj):
        obj = obj()
    if not isinstance(obj, App):
        raise click.BadParameter(
            f"{spec!r} is not a teguh.App (got {type(obj).__name__})", param_hint="--app"
        )
    return obj


@click.group(cls=_Group, context_settings={"auto_envvar_prefix": "TEGUH"})
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
@click.option("--stop", is_flag=True, help="Stop the embedded PostgreSQL instead (its data is kept).")
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="The server's data directory [default: this project's, see docs/configuration.md].",
)
def dev_cmd(stop: bool, data_dir: Path | None) -> None:
    """Start the embedded PostgreSQL (if needed) and print its DSN.

    Each project (the nearest directory up holding pyproject.toml, setup.cfg,
    setup.py, manage.py or .git, else the current one) has its own server. It
    keeps running after this command exits and is reused by later commands and
    clients of the project that find no DSN configured; `--stop` stops it.
    """
    datadir = data_dir or _embedded.default_datadir()
    if stop:
        if _embedded.stop_server(datadir):
            click.echo(f"embedded PostgreSQL in {datadir} stopped")
        else:
            click.echo(f"no embedded PostgreSQL running in {datadir}")
        return
    server = _embedded.ensure_server(datadir)
    click.echo(server.dsn)


@main.group("queue")
def queue_group() -> None:
    """Create, drop, list, configure, pause and resume queues."""


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
    """Drop QUEUE with all its tasks, checkpoints and events (an unknown queue: exit status 1)."""
    client = _client(ctx)
    queue = _validate.queue_name(queue)
    queues = client.list_queues()
    if queue not in queues:
        # a typo must not look like success
        known = ", ".join(queues) if queues else "none"
        click.echo(f"teguh: error: no queue {queue!r} to drop (queues: {known})", err=True)
        ctx.exit(1)
    client.drop_queue(queue)
    click.echo(f"queue {queue} dropped")


@queue_group.command("list")
@click.pass_context
def queue_list(ctx: click.Context) -> None:
    """List queue names, one per line."""
    for name in _client(ctx).list_queues():
        click.echo(name)


@queue_group.command("set")
@click.argument("queue")
@click.option(
    "--default-max-attempts",
    type=click.IntRange(min=0),
    default=None,
    help="max_attempts of tasks spawned from now on without one (0: unlimited; new queues: 25).",
)
@click.pass_context
def queue_set(ctx: click.Context, queue: str, default_max_attempts: int | None) -> None:
    """Change QUEUE's settings; prints them."""
    if default_max_attempts is None:
        raise click.UsageError("give a setting to change (--default-max-attempts)")
    client = _client(ctx)
    client.set_queue_options(queue, default_max_attempts=default_max_attempts)
    _echo_json(client.get_queue_options(queue))


@queue_group.command("pause")
@click.argument("queue")
@click.pass_context
def queue_pause(ctx: click.Context, queue: str) -> None:
    """Stop workers claiming QUEUE's tasks (spawns still succeed; running tasks finish)."""
    _client(ctx).pause_queue(queue)
    click.echo(f"queue {queue} paused")


@queue_group.command("resume")
@click.argument("queue")
@click.pass_context
def queue_resume(ctx: click.Context, queue: str) -> None:
    """Let workers claim QUEUE's tasks again (idle workers start at once)."""
    _client(ctx).resume_queue(queue)
    click.echo(f"queue {queue} resumed")


@main.group("task-type")
def task_type_group() -> None:
    """List, pause and resume the task types workers registered."""


@task_type_group.command("list")
@click.argument("queue")
@click.pass_context
def task_type_list(ctx: click.Context, queue: str) -> None:
    """Print QUEUE's task types (defaults, limits, version, paused) as a JSON list."""
    _echo_json([dataclasses.asdict(t) for t in _client(ctx).list_task_types(queue)])


@task_type_group.command("pause")
@click.argument("queue")
@click.argument("task_name")
@click.pass_context
def task_type_pause(ctx: click.Context, queue: str, task_name: str) -> None:
    """Stop workers claiming QUEUE's tasks named TASK_NAME; other tasks flow."""
    _client(ctx).pause_task_type(queue, task_name)
    click.echo(f"task type {task_name} on queue {queue} paused")


@task_type_group.command("resume")
@click.argument("queue")
@click.argument("task_name")
@click.pass_context
def task_type_resume(ctx: click.Context, queue: str, task_name: str) -> None:
    """Let workers claim QUEUE's tasks named TASK_NAME again."""
    _client(ctx).resume_task_type(queue, task_name)
    click.echo(f"task type {task_name} on queue {queue} resumed")


def _queue_list(values: Any) -> tuple[str, ...]:
    """`--queue` values as queue names: each may hold several, separated by commas.

    Click already splits `TEGUH_QUEUE` on whitespace. A value without a comma is
    kept as it is, and the parts of one with commas are only stripped, so a bad
    name (blank, a tab) reaches the name check instead of vanishing into the
    default queues.
    """
    if values is None:
        return ()
    if isinstance(values, str):  # a default_map or a caller giving one name
        values = (values,)
    names = (
        part.strip() if "," in value else value for value in map(str, values) for part in value.split(",")
    )
    return tuple(dict.fromkeys(names))


def _queue_option(ctx: click.Context, param: click.Parameter, values: Any) -> tuple[str, ...]:
    return _queue_list(values)


@main.command("worker")
@click.option("--app", "app_spec", envvar="TEGUH_APP", required=True, help="The app, as module:attribute.")
@click.option(
    "--queue",
    "-q",
    envvar="TEGUH_QUEUE",
    multiple=True,
    callback=_queue_option,
    help="A queue to serve; repeat it (-q a -q b) to serve several with one pool of threads "
    "(TEGUH_QUEUE: names separated by commas or spaces) "
    "[default: the app's queues: its own, then those its tasks name].",
)
@click.option(
    "--concurrency",
    "-c",
    envvar="TEGUH_CONCURRENCY",
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    help="Handlers run at once.",
)
@click.option(
    "--claim-timeout",
    envvar="TEGUH_CLAIM_TIMEOUT",
    type=click.IntRange(min=0),
    default=30,
    show_default=True,
    help="Lease length in seconds (0: never expires).",
)
@click.option(
    "--heartbeat-interval",
    envvar="TEGUH_HEARTBEAT_INTERVAL",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Seconds between lease extensions [default: min(10, claim timeout / 3)].",
)
@click.option(
    "--poll-interval",
    envvar="TEGUH_POLL_INTERVAL",
    type=click.FloatRange(min=0, min_open=True),
    default=30.0,
    show_default=True,
    help="Longest idle wait in seconds.",
)
@click.option(
    "--batch-size",
    envvar="TEGUH_BATCH_SIZE",
    type=click.IntRange(min=1),
    default=None,
    help="Most runs claimed at once [default: concurrency + prefetch].",
)
@click.option(
    "--prefetch",
    envvar="TEGUH_PREFETCH",
    type=click.IntRange(min=0),
    default=None,
    help="Runs claimed ahead of free slots [default: concurrency; 0 for long tasks on many workers].",
)
@click.option(
    "--worker-id", envvar="TEGUH_WORKER_ID", default=None, help="Names this worker [default: host:pid]."
)
@click.option(
    "--max-stuck-runs",
    envvar="TEGUH_MAX_STUCK_RUNS",
    type=click.IntRange(min=0),
    default=None,
    help="Handlers left running after their run was lost or cancelled before the worker exits "
    "with status 3 for its supervisor to restart it [default: half the concurrency, rounded up; 0: never].",
)
@click.option(
    "--shutdown-timeout",
    envvar="TEGUH_SHUTDOWN_TIMEOUT",
    type=click.FloatRange(min=0),
    default=30.0,
    show_default=True,
    help="Seconds a stop waits for running handlers.",
)
@click.option(
    "--listen-dsn",
    envvar="TEGUH_LISTEN_DSN",
    default=None,
    help="A direct DSN for the LISTEN connection, when --dsn goes through PgBouncer "
    "in transaction mode [default: the DSN].",
)
@click.option(
    "--create-queue",
    envvar="TEGUH_CREATE_QUEUE",
    is_flag=True,
    default=False,
    help="Create the queue if it is missing even when the app does not declare it "
    "[default: only the app's own queue and its tasks' queues are created; any other must exist].",
)
@click.option(
    "--metrics-port",
    envvar="TEGUH_METRICS_PORT",
    type=click.IntRange(0, 65535),
    default=None,
    help="Serve Prometheus metrics on this port (/metrics); needs the teguh[metrics] extra.",
)
@click.option(
    "--log-level",
    envvar="TEGUH_LOG_LEVEL",
    default="INFO",
    show_default=True,
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
)
@click.option(
    "--log-format",
    envvar="TEGUH_LOG_FORMAT",
    default="text",
    show_default=True,
    type=click.Choice(["text", "json"]),
)
@click.pass_context
def worker_cmd(
    ctx: click.Context, app_spec: str, queue: tuple[str, ...], log_level: str, log_format: str, **options: Any
) -> None:
    """Run a worker: claim tasks of the queues and run the app's handlers.

    SIGTERM or SIGINT stops claiming and lets running tasks finish (up to
    --shutdown-timeout); a second signal stops at once. Tasks still running
    are handed back so another worker starts them immediately.
    """
    app = load_app(app_spec)
    app.configure(ctx.obj["dsn"], replace=False)  # a DSN written in the app wins, like any explicit argument
    run_worker(app, queue, "DEBUG" if ctx.obj["debug"] else log_level, log_format, **options)


def run_worker(
    app: Any, queue: str | Sequence[str] | None, log_level: str, log_format: str, **options: Any
) -> None:
    """Configure logging, then run a worker of `app` until SIGTERM/SIGINT.

    The body of `teguh worker`, shared with framework commands (`flask teguh
    worker`) that take the same options (`worker_cmd.params`). `queue` is a
    queue, several, or None for the app's queues.
    """
    _logging.configure(log_level, log_format)
    _malloc.tune_worker_process()  # this process is the worker's own (see teguh/_malloc.py)
    names = _queue_list(queue)
    if len(names) > 1:
        worker = app.worker(queues=list(names), **options)
    else:
        worker = app.worker(names[0] if names else None, **options)
    worker.run()
    if worker.exit_code:
        logging.getLogger("teguh.worker").error(
            "worker exiting with status %d: too many stuck handlers", worker.exit_code
        )
    if worker.stuck_handlers:
        # Python cannot stop a thread; their tasks were handed back already.
        logging.getLogger("teguh.worker").warning(
            "%d handler(s) still running at exit; their tasks were released", worker.stuck_handlers
        )
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(worker.exit_code)
    if worker.exit_code:
        sys.exit(worker.exit_code)


@main.command("spawn")
@click.argument("queue")
@click.argument("task_name")
@click.argument("params", required=False)
@click.option(
    "--max-attempts",
    type=click.IntRange(min=0),
    default=None,
    help="Attempts before failing for good (0: unlimited) [default: the task type's, else the queue's].",
)
@click.option("--retry-strategy", default=None, help='JSON, e.g. \'{"kind": "fixed", "base_seconds": 10}\'.')
@click.option("--idempotency-key", default=None, help="A repeat with the same key returns the same task.")
@click.option(
    "--concurrency-key",
    default=None,
    help="Tasks of the type with this key run at most key_concurrency at once.",
)
@click.option("--rate-limit-key", default=None, help="The type's rate limit applies per key.")
@click.option(
    "--delay", type=click.FloatRange(min=0), default=None, help="Start no sooner than this many seconds."
)
@click.option("--priority", type=int, default=None, help="Higher is claimed first (default 0).")
@click.option("--headers", default=None, help="JSON object stored with the task.")
@click.option(
    "--wait",
    "wait_seconds",
    type=click.FloatRange(min=0),
    default=None,
    help="Wait up to this many seconds for the result and print it.",
)
@click.pass_context
def spawn_cmd(
    ctx: click.Context,
    queue: str,
    task_name: str,
    params: str | None,
    max_attempts: int | None,
    retry_strategy: str | None,
    idempotency_key: str | None,
    concurrency_key: str | None,
    rate_limit_key: str | None,
    delay: float | None,
    priority: int | None,
    headers: str | None,
    wait_seconds: float | None,
) -> None:
    """Spawn TASK_NAME on QUEUE with PARAMS (JSON); prints the task id.

    PARAMS, --headers and --retry-strategy take JSON inline, `@FILE` to read a
    file, or `-` to read standard input.
    """
    options: dict[str, Any] = {}
    if max_attempts is not None:
        options["max_attempts"] = max_attempts
    if retry_strategy is not None:
        options["retry_strategy"] = _json_arg(retry_strategy, "--retry-strategy")
    if idempotency_key is not None:
        options["idempotency_key"] = idempotency_key
    if concurrency_key is not None:
        options["concurrency_key"] = concurrency_key
    if rate_limit_key is not None:
        options["rate_limit_key"] = rate_limit_key
    client = _client(ctx)
    if delay:
        # the database's clock, like every other time in teguh
        options["available_at"] = client.database_time(delay)
    if priority is not None:
        options["priority"] = priority
    if headers is not None:
        options["headers"] = _json_arg(headers, "--headers")
    result = client.spawn_task(
        queue, task_name, _json_arg(params, "PARAMS"), notify_done=wait_seconds is not None, **options
    )
    click.echo(result.task_id if result.created else f"{result.task_id} (existing task)")
    if wait_seconds is not None:
        done = client.wait_for_result(queue, result.task_id, timeout=wait_seconds)
        _echo_json(_task_dict(done))
        if done.state != "completed":
            ctx.exit(1)


@main.command("emit")
@click.argument("queue")
@click.argument("event_name")
@click.argument("payload", required=False)
@click.pass_context
def emit_cmd(ctx: click.Context, queue: str, event_name: str, payload: str | None) -> None:
    """Emit EVENT_NAME on QUEUE with PAYLOAD (JSON); the first emit of a name wins.

    Events are kept per queue until cleanup: a name emitted before is not
    emitted again, and the command says when it was and whether its payload
    was the same (exit status 0 either way). PAYLOAD is JSON inline, `@FILE`
    to read a file, or `-` to read standard input.
    """
    emitted = _client(ctx).emit_event(queue, event_name, _json_arg(payload, "PAYLOAD"))
    if emitted.first:
        click.echo(f"event {event_name} emitted")
        return
    kept = "payload unchanged" if emitted.payload_unchanged else "payload differs, kept the first"
    click.echo(f"event {event_name} already emitted at {emitted.emitted_at}; {kept}")


def _task_dict(result: Any) -> dict[str, Any]:
    return {
        "task_id": result.task_id,
        "state": result.state,
        "attempts": result.attempts,
        "result": result.result,
        "failure": result.failure,
        "cancelled_at": result.cancelled_at,
        "finished_at": result.finished_at,
        "snoozes": result.snoozes,
    }


def _waiting_for(info: dict[str, Any]) -> str | None:
    """What a pending or sleeping task waits for, in words; None when it waits for nothing."""
    state, wake_at, event, step = info["state"], info["wake_at"], info["awaited_event"], info["wait_step"]
    if state == "sleeping" and event is not None:
        timeout = "no timeout" if wake_at is None else f"times out at {wake_at}"
        return f"event {event!r} in step {step!r} ({timeout})"
    if state == "sleeping" and step is not None:
        return f"sleep {step!r} until {wake_at}"
    if state == "sleeping":
        return f"retry (attempt {info['attempts']}) at {wake_at}"
    if state == "pending" and wake_at is not None:
        return f"start at {wake_at}"
    return None


def _task_info_dict(info: dict[str, Any]) -> dict[str, Any]:
    """`teguh task show`'s JSON: `_task_dict`'s keys, then what the task waits for."""
    return {
        "task_id": str(info["task_id"]),
        "state": info["state"],
        "attempts": info["attempts"],
        "result": info["result"],
        "failure": info["failure_reason"],
        "cancelled_at": info["cancelled_at"],
        "finished_at": info["finished_at"],
        "waiting_for": _waiting_for(info),
        "wake_at": info["wake_at"],
        "awaited_event": info["awaited_event"],
        "wait_step": info["wait_step"],
    }


@main.group("task")
def task_group() -> None:
    """Inspect, cancel and retry tasks."""


@task_group.command("show")
@click.argument("queue")
@click.argument("task_id")
@click.pass_context
def task_show(ctx: click.Context, queue: str, task_id: str) -> None:
    """Print everything about a task as JSON: state, result, last failure, what it waits for,
    inputs, timestamps, lease, steps, the history of its failed attempts and its first
    100 child tasks (on any queue)."""
    client = _client(ctx)
    shown = _task_show_dict(client.get_task(queue, task_id))
    shown["queue"] = queue
    shown["children"] = _children_list(client, queue, task_id)
    _echo_json(shown)


@task_group.command("cancel")
@click.argument("queue")
@click.argument("task_id")
@click.option(
    "--children/--no-children",
    default=True,
    show_default=True,
    help="Also cancel the task's unfinished child tasks (and theirs).",
)
@click.pass_context
def task_cancel(ctx: click.Context, queue: str, task_id: str, children: bool) -> None:
    """Cancel a task that has not finished (a finished task is left as it is)."""
    client = _client(ctx)
    client.cancel_task(queue, task_id, children=children)
    click.echo(f"task {task_id}: {client.get_task_result(queue, task_id).state}")


@task_group.command("retry")
@click.argument("queue")
@click.argument("task_id")
@click.option("--spawn-new", is_flag=True, help="Spawn a fresh task with the same inputs instead.")
@click.option("--max-attempts", type=click.IntRange(min=1), default=None, help="The new attempt limit.")
@click.pass_context
def task_retry(
    ctx: click.Context, queue: str, task_id: str, spawn_new: bool, max_attempts: int | None
) -> None:
    """Run a failed or cancelled task again; prints the task id."""
    result = _client(ctx).retry_task(queue, task_id, spawn_new=spawn_new, max_attempts=max_attempts)
    click.echo(result.task_id)


@main.command("ticker")
@click.option("--queue", "-q", default=None, help="Only this queue [default: all].")
@click.option(
    "--every",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Repeat every this many seconds until interrupted [default: once].",
)
@click.pass_context
def ticker_cmd(ctx: click.Context, queue: str | None, every: float | None) -> None:
    """Wake due sleepers, time out waits, recover expired leases, enforce deadlines.

    Workers do this themselves while they run; the ticker is for when none is.
    """
    client = _client(ctx)
    while True:
        click.echo(f"{client.ticker(queue)} task(s) made ready")
        if every is None:
            return
        time.sleep(every)


@main.group("cron")
def cron_group() -> None:
    """Schedule the ticker and the daily cleanup with pg_cron (when installed)."""


def _cron(ctx: click.Context, function: str) -> None:
    client = _client(ctx)
    with client.transaction() as conn:
        with conn.cursor() as cur:
            cur.execute(_sql.CRON_START if function == "start" else _sql.CRON_STOP)
        notices = [n.strip().removeprefix("NOTICE:").strip() for n in conn.notices]
        del conn.notices[:]
    for notice in notices:
        click.echo(notice)
    if not notices:
        click.echo(f"pg_cron jobs {'scheduled' if function == 'start' else 'removed'}")


@cron_group.command("start")
@click.pass_context
def cron_start(ctx: click.Context) -> None:
    """Schedule `teguh.ticker()` and `teguh.cleanup_all_queues()` in pg_cron."""
    _cron(ctx, "start")


@cron_group.command("stop")
@click.pass_context
def cron_stop(ctx: click.Context) -> None:
    """Remove teguh's pg_cron jobs."""
    _cron(ctx, "stop")


@main.command("cleanup")
@click.option("--queue", "-q", default=None, help="Only this queue [default: all].")
@click.option(
    "--ttl",
    type=click.IntRange(min=0),
    default=None,
    help="Seconds after finishing a task is kept [default: the queue's, 30 days].",
)
@click.pass_context
def cleanup_cmd(ctx: click.Context, queue: str | None, ttl: int | None) -> None:
    """Delete finished tasks (and old events) past their time to live."""
    client = _client(ctx)
    for name in [queue] if queue else client.list_queues():
        click.echo(f"{name}: {client.cleanup_tasks(name, ttl=ttl)} task(s) deleted")


@main.command("demo")
@click.pass_context
def demo_cmd(ctx: click.Context) -> None:
    """Run a worker on example tasks (a step, a durable sleep, an event, a retry).

    Uses the configured database, else the embedded PostgreSQL.
    """
    from .demo import run_demo

    logging.getLogger("teguh").setLevel(logging.ERROR)
    if not run_demo(ctx.obj["dsn"]):
        ctx.exit(1)


# --- schedules ---


@main.group("schedule")
def schedule_group() -> None:
    """List, pause, resume, trigger and delete schedules (periodic tasks, docs/schedules.md)."""


@schedule_group.command("list")
@click.pass_context
def schedule_list(ctx: click.Context) -> None:
    """Print every schedule (spec, time zone, next and last run, paused) as a JSON list."""
    _echo_json([dataclasses.asdict(s) for s in _client(ctx).list_schedules()])


@schedule_group.command("pause")
@click.argument("name")
@click.pass_context
def schedule_pause(ctx: click.Context, name: str) -> None:
    """Stop schedule NAME from firing until it is resumed."""
    _client(ctx).pause_schedule(name)
    click.echo(f"schedule {name} paused")


@schedule_group.command("resume")
@click.argument("name")
@click.pass_context
def schedule_resume(ctx: click.Context, name: str) -> None:
    """Let schedule NAME fire again (its catch_up decides what fires for the paused time)."""
    _client(ctx).resume_schedule(name)
    click.echo(f"schedule {name} resumed")


@schedule_group.command("trigger")
@click.argument("name")
@click.pass_context
def schedule_trigger(ctx: click.Context, name: str) -> None:
    """Spawn schedule NAME's task now, outside its timetable; prints the task id."""
    click.echo(_client(ctx).trigger_schedule(name).task_id)


@schedule_group.command("delete")
@click.argument("name")
@click.pass_context
def schedule_delete(ctx: click.Context, name: str) -> None:
    """Delete schedule NAME (its tasks stay; an app's worker recreates it if the code still defines it)."""
    _client(ctx).delete_schedule(name)
    click.echo(f"schedule {name} deleted")


# --- topics ---


@main.group("topic")
def topic_group() -> None:
    """List, bind and unbind topic bindings, and publish (docs/composition.md, "Topics")."""


@topic_group.command("list")
@click.pass_context
def topic_list(ctx: click.Context) -> None:
    """Print every binding (pattern, task_name, queue, created_at, updated_at) as a JSON list."""
    _echo_json([dataclasses.asdict(b) for b in _client(ctx).list_bindings()])


@topic_group.command("bind")
@click.argument("pattern")
@click.argument("task_name")
@click.option("--queue", "-q", default="default", show_default=True, help="The queue the task is spawned on.")
@click.pass_context
def topic_bind(ctx: click.Context, pattern: str, task_name: str, queue: str) -> None:
    """Bind PATTERN to TASK_NAME: every matching publish spawns it (`*` one word, `#` any)."""
    _client(ctx).bind(pattern, task_name, queue=queue)
    click.echo(f"{pattern} -> {task_name} on queue {queue}")


@topic_group.command("unbind")
@click.argument("pattern")
@click.argument("task_name")
@click.option("--queue", "-q", default="default", show_default=True, help="The binding's queue.")
@click.pass_context
def topic_unbind(ctx: click.Context, pattern: str, task_name: str, queue: str) -> None:
    """Remove a binding (workers never do: one dropped from the code stays until unbound)."""
    if not _client(ctx).unbind(pattern, task_name, queue=queue):
        # a typo must not look like success
        click.echo(f"teguh: error: no binding {pattern} -> {task_name} on queue {queue}", err=True)
        ctx.exit(1)
    click.echo(f"unbound {pattern} -> {task_name} on queue {queue}")


@topic_group.command("publish")
@click.argument("topic")
@click.argument("params", required=False)
@click.option("--idempotency-key", default=None, help="Each spawned task gets KEY:<task_name>.")
@click.pass_context
def topic_publish(ctx: click.Context, topic: str, params: str | None, idempotency_key: str | None) -> None:
    """Spawn one task per binding matching TOPIC, with PARAMS (JSON, @FILE or -); prints their ids."""
    results = _client(ctx).publish(topic, _json_arg(params, "params"), idempotency_key=idempotency_key)
    _echo_json([dataclasses.asdict(r) for r in results])


# --- batches ---


@main.group("batch")
def batch_group() -> None:
    """Inspect batches (`spawn_batch`)."""


def _batch_dict(info: Any) -> dict[str, Any]:
    """A `BatchInfo` as `teguh batch show`/`list` print it."""
    return {
        "batch_id": info.id,
        "queue": info.queue,
        "task_name": info.task_name,
        "state": info.state,
        "on_failure": info.on_failure,
        "on_complete": info.on_complete,
        "on_complete_task_id": info.on_complete_task_id,
        "total": info.total,
        "pending": info.pending,
        "running": info.running,
        "completed": info.completed,
        "failed": info.failed,
        "cancelled": info.cancelled,
        "created_at": info.created_at,
        "finished_at": info.finished_at,
    }


@batch_group.command("list")
@click.argument("queue", required=False)
@click.option("--state", type=click.Choice(["running", "completed", "failed", "cancelled"]), default=None)
@click.option("--limit", type=click.IntRange(min=1, max=1000), default=20, show_default=True)
@click.pass_context
def batch_list(ctx: click.Context, queue: str | None, state: str | None, limit: int) -> None:
    """Print the newest batches (of QUEUE, or of every queue) as a JSON list."""
    _echo_json([_batch_dict(info) for info in _client(ctx).list_batches(queue, state=state, limit=limit)])


@batch_group.command("show")
@click.argument("batch_id")
@click.option(
    "--failures",
    type=click.IntRange(min=0, max=1000),
    default=5,
    show_default=True,
    help="How many failed items to list (the first ones, in task id order).",
)
@click.pass_context
def batch_show(ctx: click.Context, batch_id: str, failures: int) -> None:
    """Print a batch's counts, state, times and first failures as JSON."""
    client = _client(ctx)
    info = client.get_batch(batch_id)
    failed = client.batch_results(info.id, limit=failures, state="failed") if failures and info.failed else []
    _echo_json(
        {
            **_batch_dict(info),
            "first_failures": [
                {"task_id": item.task_id, "attempts": item.attempts, "failure": item.failure_reason}
                for item in failed
            ],
        }
    )


# --- dashboard ---


def _stop_serving(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # ends serve_forever; its `finally` closes the server


@main.command("dashboard")
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to bind (keep 127.0.0.1 unless a proxy with TLS and a login is in front).",
)
@click.option(
    "--port", type=click.IntRange(0, 65535), default=8080, show_default=True, help="Port (0: any free one)."
)
@click.option(
    "--dsn", "dashboard_dsn", default=None, help="PostgreSQL DSN (else the global --dsn, TEGUH_DSN, ...)."
)
@click.pass_context
def dashboard_cmd(ctx: click.Context, host: str, port: int, dashboard_dsn: str | None) -> None:
    """Serve the web dashboard (queues, tasks, workers, schedules) with live updates.

    Actions (retry, cancel, pause, resume, trigger) are enabled only when
    TEGUH_DASHBOARD_TOKEN is set: the pages then offer a login form for it.
    Needs the `dashboard` extra (Jinja2: pip install -e '.[dashboard]' from the clone).
    """
    try:
        from .dashboard import TOKEN_ENV, make_app, serve
    except ImportError as exc:  # jinja2 missing
        raise click.ClickException(
            f"the dashboard needs its extra (Jinja2): pip install -e '.[dashboard]' from the clone ({exc})"
        ) from exc
    client = Client(dashboard_dsn or ctx.obj["dsn"], application_name="teguh-dashboard")
    ctx.call_on_close(client.close)
    app = make_app(client)
    server = serve(app, host, port)
    mode = "actions enabled (token set)" if os.environ.get(TOKEN_ENV) else f"read-only ({TOKEN_ENV} not set)"
    click.echo(f"teguh dashboard on {server.url}/ ({mode}); Ctrl-C stops it", err=True)
    # Ctrl-C and SIGTERM stop it cleanly whatever the signals' inherited state: a process started
    # in the background by a non-interactive shell (nohup ... &, some supervisors) has SIGINT ignored
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _stop_serving)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


# --- operations (read side) ---


def _task_show_dict(info: TaskInfo) -> dict[str, Any]:
    """`teguh task show`'s JSON: the keys it always printed, then the rest of `TaskInfo`."""
    waits = {
        "state": info.state,
        "wake_at": info.wake_at,
        "awaited_event": info.awaited_event,
        "wait_step": info.wait_step,
        "attempts": info.attempts,
    }
    shown = _task_info_dict(
        {
            **waits,
            "task_id": info.task_id,
            "result": info.result,
            "failure_reason": info.failure,
            "cancelled_at": info.cancelled_at,
            "finished_at": info.finished_at,
        }
    )
    rest = dataclasses.asdict(info)
    for key in ("failure", "available_at"):
        rest.pop(key)
    return {**shown, **{key: value for key, value in rest.items() if key not in shown}}


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Rows as aligned text columns under a header line; None shows as "-".

    Characters a terminal would act on (escapes, control characters) show as "?":
    task names and failure messages come from anyone who can spawn.
    """
    cells = [[("-" if value is None else _printable(str(value))) for value in row] for row in rows]
    widths = [max([len(h)] + [len(row[i]) for row in cells]) for i, h in enumerate(headers)]
    lines = [list(headers), *cells]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip() for line in lines
    )


def _printable(text: str) -> str:
    return "".join(c if c.isprintable() else "?" for c in text)


def _when(value: datetime | None) -> str | None:
    """A timestamp to the second, in UTC, for tables."""
    return None if value is None else value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def _failure_line(failure: Any) -> str | None:
    """The one line of a stored failure a table has room for."""
    if failure is None:
        return None
    if isinstance(failure, dict):
        text = f"{failure.get('type') or failure.get('name') or ''}: {failure.get('message') or ''}".strip(
            ": "
        )
    else:
        text = json.dumps(failure)
    text = " ".join(text.split())
    return text if len(text) <= 60 else text[:57] + "..."


@task_group.command("list")
@click.argument("queue")
@click.option("--state", type=click.Choice(TASK_STATES), default=None, help="Only tasks in this state.")
@click.option("--task-name", default=None, help="Only tasks of this name.")
@click.option(
    "--limit",
    type=click.IntRange(1, MAX_LIST_LIMIT),
    default=50,
    show_default=True,
    help="The most tasks shown.",
)
@click.option("--after", default=None, help="Show the tasks older than this task id (the next page).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.pass_context
def task_list(
    ctx: click.Context,
    queue: str,
    state: str | None,
    task_name: str | None,
    limit: int,
    after: str | None,
    as_json: bool,
) -> None:
    """List QUEUE's tasks, newest first; the last id shown is the --after of the next page."""
    tasks = _client(ctx).list_tasks(queue, state=state, task_name=task_name, limit=limit, after=after)
    if as_json:
        _echo_json([dataclasses.asdict(t) for t in tasks])
        return
    if not tasks:
        click.echo("no tasks")
        return
    rows = [
        (
            t.task_id,
            t.task_name,
            t.state,
            t.attempts,
            _when(t.enqueued_at),
            _when(t.finished_at),
            _failure_line(t.failure) if t.state in ("failed", "sleeping", "pending", "cancelled") else None,
        )
        for t in tasks
    ]
    click.echo(_table(("TASK ID", "NAME", "STATE", "ATTEMPTS", "ENQUEUED", "FINISHED", "LAST FAILURE"), rows))


def _stats_dict(stats: QueueStats) -> dict[str, Any]:
    return dataclasses.asdict(stats)


@main.command("stats")
@click.argument("queue", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.pass_context
def stats_cmd(ctx: click.Context, queue: str | None, as_json: bool) -> None:
    """Print the counts per state of QUEUE (or of every queue) and recent completions and failures."""
    client = _client(ctx)
    names = [queue] if queue else client.list_queues()
    stats = [client.queue_stats(name) for name in names]
    if as_json:
        _echo_json([_stats_dict(s) for s in stats] if queue is None else _stats_dict(stats[0]))
        return
    if not stats:
        click.echo("no queues")
        return
    rows = [
        (
            s.queue,
            s.pending,
            s.running,
            s.sleeping,
            f"{'~' if s.estimated else ''}{s.completed}",
            s.failed,
            f"{'~' if s.estimated else ''}{s.cancelled}",
            None if s.oldest_pending_age is None else f"{s.oldest_pending_age:.1f}s",
            f"{s.completed_last_minute}/{s.completed_last_hour}",
            f"{s.failed_last_minute}/{s.failed_last_hour}",
        )
        for s in stats
    ]
    headers = (
        "QUEUE",
        "PENDING",
        "RUNNING",
        "SLEEPING",
        "COMPLETED",
        "FAILED",
        "CANCELLED",
        "OLDEST WAIT",
        "DONE 1M/1H",
        "FAILED 1M/1H",
    )
    click.echo(_table(headers, rows))
    if any(s.estimated for s in stats):
        click.echo("~ estimated from PostgreSQL's statistics (queues over 100,000 tasks)")


@main.command("workers")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.pass_context
def workers_cmd(ctx: click.Context, as_json: bool) -> None:
    """List the live workers: where they run, what they serve, how busy they are, when last seen."""
    workers = _client(ctx).list_workers()
    if as_json:
        _echo_json([dataclasses.asdict(w) for w in workers])
        return
    if not workers:
        click.echo("no live workers")
        return
    rows = [
        (
            w.worker_id,
            w.host,
            w.pid,
            ",".join(w.queues),
            f"{w.running}/{w.concurrency}",
            w.version,
            w.app_version,
            _when(w.started_at),
            _when(w.last_seen_at),
        )
        for w in workers
    ]
    headers = ("WORKER", "HOST", "PID", "QUEUES", "RUNNING", "TEGUH", "APP", "STARTED", "LAST SEEN")
    click.echo(_table(headers, rows))


# --- children listing ---

CHILDREN_SHOWN = 100
"""How many child tasks `teguh task show` lists (`Client.list_children` pages through more)."""


def _children_list(client: Client, queue: str, task_id: str) -> list[dict[str, Any]]:
    """`teguh task show`'s "children": queue, id, name and state of each child, oldest first."""
    return [
        {"queue": c.queue, "task_id": c.task_id, "task_name": c.task_name, "state": c.state}
        for c in client.list_children(queue, task_id, limit=CHILDREN_SHOWN)
    ]


if __name__ == "__main__":  # pragma: no cover
    main()
