"""Flask integration: the `Teguh` extension and the `flask teguh` commands.

```python
from flask import Flask
from teguh.contrib.flask import Teguh

teguh_ext = Teguh()

@teguh_ext.task("send-email")
def send_email(params, ctx):
    ...

def create_app():
    app = Flask(__name__)
    app.config["TEGUH_DSN"] = "postgresql://localhost/mydb"
    teguh_ext.init_app(app)
    return app
```

Handlers run inside the Flask app's application context, so `current_app`,
`flask.g` and Flask-SQLAlchemy's `db.session` work in them. `flask teguh
worker` runs a worker (same options as `teguh worker`) and `flask teguh
install` installs the schema. `teguh_ext.spawn_task(..., session=db.session)`
spawns inside the session's transaction.

Flask is imported here only, so `import teguh` never needs it.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import click
from flask import Flask, current_app
from flask.cli import AppGroup, with_appcontext

from .. import _drivers
from ..app import DEFAULT_QUEUE, App, Task
from ..errors import InvalidArgument, TeguhError

if TYPE_CHECKING:
    from ..client import Client
    from ..context import TaskContext
    from ..results import EmitResult, SpawnResult, TaskResult
    from ..worker import Worker

__all__ = ["EXTENSION_KEY", "Teguh", "dbapi_connection"]

logger = logging.getLogger("teguh.contrib.flask")

EXTENSION_KEY = "teguh"
"""The key of the extension in `flask_app.extensions`."""

CONFIG_DEFAULTS: dict[str, Any] = {
    "TEGUH_DSN": None,
    "TEGUH_QUEUE": None,
    "TEGUH_USE_SQLALCHEMY_URI": True,
}
"""Config keys the extension reads (set with `app.config.setdefault` at `init_app`).

- `TEGUH_DSN`: the database (a libpq DSN or URI). None falls back to
  `SQLALCHEMY_DATABASE_URI` when it is a PostgreSQL URL (see below), then to
  teguh's own resolution (`TEGUH_DSN` / `DATABASE_URL` environment variables,
  `PG*` variables, the embedded PostgreSQL).
- `TEGUH_QUEUE`: the queue of handlers registered without one (default
  `"default"`, or the `queue=` given to `Teguh()`).
- `TEGUH_USE_SQLALCHEMY_URI`: when `TEGUH_DSN` is None, use a PostgreSQL
  `SQLALCHEMY_DATABASE_URI` (its `+driver` part removed). Default True.
"""


def _sqlalchemy_dsn(uri: Any) -> str | None:
    """The libpq form of a PostgreSQL SQLAlchemy URL (`postgresql+psycopg2://` -> `postgresql://`)."""
    if not isinstance(uri, str):
        return None
    scheme, sep, rest = uri.partition("://")
    if not sep:
        return None
    dialect = scheme.split("+", 1)[0]
    if dialect not in ("postgresql", "postgres"):
        return None
    return f"postgresql://{rest}"


def dbapi_connection(session: Any) -> Any:
    """The driver connection under a SQLAlchemy `Session` (or `Connection`), in its transaction.

    Calls `session.connection()`, which begins the session's transaction if
    needed, so whatever runs on the returned connection commits or rolls back
    with the session. Works with Flask-SQLAlchemy's `db.session`, on the
    psycopg2 driver (`postgresql+psycopg2://`) and on psycopg 3
    (`postgresql+psycopg://`, which SQLAlchemy 2.1 makes plain `postgresql://` mean).

    Raises:
        InvalidArgument: the session's engine uses neither driver.
    """
    # A Session (or scoped_session) has connection(); a Connection is used as is.
    connection = session.connection() if callable(getattr(session, "connection", None)) else session
    fairy = getattr(connection, "connection", None)  # SQLAlchemy's pooled-connection proxy
    raw = getattr(fairy, "dbapi_connection", None) or getattr(fairy, "driver_connection", None)
    if raw is None:
        raw = getattr(fairy, "connection", None)  # SQLAlchemy < 2.0
    import psycopg2.extensions

    if not isinstance(raw, psycopg2.extensions.connection) and not _drivers.is_psycopg3_connection(raw):
        raise InvalidArgument(
            "spawning in a SQLAlchemy session's transaction needs the psycopg2 or psycopg 3 driver "
            "(a postgresql+psycopg2:// or postgresql+psycopg:// URL); "
            f"this session's connection is a {type(raw).__module__}.{type(raw).__name__}"
        )
    return raw


def _on_session_end(session: Any, *, commit: Callable[[], None], rollback: Callable[[], None]) -> None:
    """Call `commit()` when the session's transaction commits, or `rollback()` when it rolls back."""
    from sqlalchemy import event
    from sqlalchemy.orm import scoped_session

    target = session() if isinstance(session, scoped_session) else session
    done = False

    def ended(outcome: Callable[[], None]) -> Callable[[Any], None]:
        def listener(_session: Any) -> None:
            nonlocal done
            if not done:
                done = True
                outcome()

        return listener

    on_rollback = ended(rollback)

    def transaction_end(_session: Any, transaction: Any) -> None:
        # A root transaction that ends without after_commit was rolled back
        # or discarded (Flask-SQLAlchemy closes the session at teardown, and
        # the rollback then happens in the pool, with no after_rollback).
        if transaction.parent is None:
            on_rollback(_session)

    event.listen(target, "after_commit", ended(commit), once=True)
    event.listen(target, "after_transaction_end", transaction_end)


class Teguh:
    """The Flask extension: a `teguh.App` configured from `app.config`.

    Use `Teguh(app)`, or `Teguh()` then `init_app(app)` in an app factory.
    Register handlers with `@ext.task(name, ...)` (before or after
    `init_app`), spawn with `ext.spawn_task(...)` or `handler.spawn(...)`.

    Args:
        app: the Flask app to initialise now (optional).
        teguh_app: an existing `teguh.App` to wrap (default: a new one).
        queue: the default queue when `TEGUH_QUEUE` is not set.

    Handlers run inside the app context of the Flask app last passed to
    `init_app` (the one `flask teguh worker` runs for, when started that way).

    Caveats: the database is read from the config at `init_app`. Calling
    `init_app` again for an app with another database (a new app per test,
    say), or with none in its config (then it is resolved as for `teguh.App()`),
    closes the previous client; workers already running keep their own connections.
    """

    def __init__(
        self, app: Flask | None = None, *, teguh_app: App | None = None, queue: str | None = None
    ) -> None:
        self._default_queue = queue
        self.teguh_app: App = teguh_app if teguh_app is not None else App(queue=queue or DEFAULT_QUEUE)
        # The app's own DSN, and the one the last init_app gave it from a Flask
        # config: a later app without one goes back to the former.
        self._own_dsn = self.teguh_app.dsn
        self._config_dsn: str | None = None
        self._flask_app: Flask | None = None
        self._lock = threading.Lock()
        self.teguh_app.around_run(self._app_context)
        if app is not None:
            self.init_app(app)

    # -- setup ------------------------------------------------------------

    def init_app(self, app: Flask) -> None:
        """Read the `TEGUH_*` config, store the extension and add the `flask teguh` commands.

        Raises:
            TeguhError: `app` already has another teguh extension.
        """
        for key, value in CONFIG_DEFAULTS.items():
            app.config.setdefault(key, value)
        existing = app.extensions.get(EXTENSION_KEY)
        if existing is not None and existing is not self:
            raise TeguhError("this Flask app already has a teguh extension (app.extensions['teguh'])")
        app.extensions[EXTENSION_KEY] = self
        self._configure(self._dsn_from(app.config), app.config["TEGUH_QUEUE"] or self._default_queue)
        self._flask_app = app
        if "teguh" not in app.cli.commands:
            app.cli.add_command(teguh_cli)

    @staticmethod
    def _dsn_from(config: Any) -> str | None:
        if config.get("TEGUH_DSN"):
            return config["TEGUH_DSN"]
        if config.get("TEGUH_USE_SQLALCHEMY_URI"):
            return _sqlalchemy_dsn(config.get("SQLALCHEMY_DATABASE_URI"))
        return None

    def _configure(self, dsn: str | None, queue: str | None) -> None:
        app = self.teguh_app
        with self._lock:
            if queue:
                app.queue = queue
            # A new app (usually a new test) pointing elsewhere closes the old
            # client: its pool must not keep serving spawns on the previous database.
            if dsn:
                if app.configure(dsn):
                    logger.debug("teguh: DSN set at init_app (a previous client, if any, was closed)")
                self._config_dsn = dsn
            elif self._config_dsn is not None:
                # A config without a database must not inherit the previous app's:
                # back to the app's own DSN, or teguh's resolution (environment,
                # then the embedded server). A DSN set since by someone else stays.
                if app.dsn == self._config_dsn and app.set_dsn(self._own_dsn):
                    logger.debug("teguh: init_app without a DSN; the previous app's client was closed")
                self._config_dsn = None

    @contextlib.contextmanager
    def _app_context(self, ctx: TaskContext) -> Iterator[None]:
        """The `around_run` hook: every handler call runs in a fresh Flask app context."""
        flask_app = self._flask_app
        if flask_app is None:
            yield
            return
        with flask_app.app_context():
            yield

    # -- the teguh.App, Flask-style -----------------------------------------

    @property
    def client(self) -> Client:
        """The `teguh.Client` of the extension's app (created on first use)."""
        return self.teguh_app.client

    def task(
        self, name: str, *, queue: str | None = None, **spawn_defaults: Any
    ) -> Callable[[Callable], Task]:
        """Register a handler; see `teguh.App.task`. Usable before `init_app`."""
        return self.teguh_app.task(name, queue=queue, **spawn_defaults)

    def spawn_task(
        self,
        task_name: str,
        params: Any = None,
        *,
        session: Any = None,
        conn: Any = None,
        queue: str | None = None,
        **options: Any,
    ) -> SpawnResult:
        """Spawn `task_name`, optionally inside your own transaction.

        Args:
            session: a SQLAlchemy session (`db.session`): the spawn joins its
                transaction and commits or rolls back with it.
            conn: a psycopg2 or psycopg 3 connection: the spawn joins its open
                transaction (you commit it). Give `session` or `conn`, not both.
            queue: default: the handler's queue, else `TEGUH_QUEUE`.
            options: any option of `Client.spawn_task` (`idempotency_key`,
                `max_attempts`, `available_at`, ...).

        Without `session` or `conn`, the task is committed at once on a pooled
        connection.

        Raises:
            InvalidArgument: both `session` and `conn` are given, or the session
                uses neither psycopg2 nor psycopg 3.
        """
        runner = self._eager()
        if runner is not None:
            # Eager mode (teguh.testing): nothing is written, so any database
            # works (SQLite in tests too); a session spawn runs when the
            # session commits and is forgotten if it rolls back, as for real.
            if session is None:
                return self.teguh_app.spawn_task(task_name, params, queue=queue, **options)
            spawned = runner.spawn_later(task_name, params, queue=queue, **options)
            _on_session_end(
                session,
                commit=lambda: runner.run(spawned.task_id),
                rollback=lambda: runner.discard(spawned.task_id),
            )
            return spawned
        conn = self._connection(session, conn)
        return self.teguh_app.spawn_task(task_name, params, queue=queue, conn=conn, **options)

    def emit_event(
        self,
        event_name: str,
        payload: Any = None,
        *,
        session: Any = None,
        conn: Any = None,
        queue: str | None = None,
    ) -> EmitResult:
        """Emit `event_name` on `queue` (default `TEGUH_QUEUE`), optionally in your transaction.

        `session` and `conn` work as in `spawn_task`. The first emit of a name
        wins; the result says whether this one was it (`EmitResult.first`).
        """
        runner = self._eager()
        if runner is not None:
            return runner.emit_event(event_name, payload, queue=queue)
        conn = self._connection(session, conn)
        return self.client.emit_event(queue or self.teguh_app.queue, event_name, payload, conn=conn)

    def get_task_result(self, task_id: str, *, queue: str | None = None) -> TaskResult:
        """The state and result of a task on `queue` (default `TEGUH_QUEUE`).

        Raises:
            TaskNotFound: no such task.
        """
        runner = self._eager()
        if runner is not None:
            return runner.result(task_id)
        return self.client.get_task_result(queue or self.teguh_app.queue, task_id)

    def worker(self, queue: str | None = None, **options: Any) -> Worker:
        """A `Worker` for this app's handlers (see `teguh.App.worker`)."""
        return self.teguh_app.worker(queue, **options)

    def install(self) -> list[str]:
        """Install or upgrade the schema and create the app's queues; idempotent.

        The queues are `TEGUH_QUEUE` and those of registered handlers. Returns
        their names.
        """
        self.client.install_schema()
        queues = sorted({self.teguh_app.queue} | {t.queue for t in self.teguh_app.tasks.values() if t.queue})
        for queue in queues:
            self.client.create_queue(queue)
        return queues

    def _eager(self) -> Any:
        """The active `teguh.testing.EagerRunner` of the app, if a test put it in eager mode."""
        return self.teguh_app.eager_runner

    @staticmethod
    def _connection(session: Any, conn: Any) -> Any:
        if session is not None and conn is not None:
            raise InvalidArgument("give session= or conn=, not both")
        if session is not None:
            return dbapi_connection(session)
        return conn


def _extension() -> Teguh:
    ext = current_app.extensions.get(EXTENSION_KEY)
    if not isinstance(ext, Teguh):
        raise click.ClickException("this Flask app has no teguh extension: call Teguh(app) or init_app(app)")
    return ext


teguh_cli = AppGroup("teguh", help="Run teguh workers and manage the teguh schema.")
"""The `flask teguh` command group (added to `app.cli` by `init_app`)."""


def _worker_params() -> list[click.Parameter]:
    # The options of `teguh worker` itself, minus --app (the Flask app is the
    # app here), so both commands always take the same options.
    from ..cli import worker_cmd

    return [p for p in worker_cmd.params if p.name != "app_spec"]


def _worker_callback(queue: str | None, log_level: str, log_format: str, **options: Any) -> None:
    from ..cli import run_worker

    ext = _extension()
    # Handlers get the context of the app this command runs for.
    ext._flask_app = current_app._get_current_object()  # type: ignore[attr-defined]
    try:
        run_worker(ext.teguh_app, queue, log_level, log_format, **options)
    except TeguhError as exc:
        raise click.ClickException(str(exc)) from exc


teguh_cli.add_command(
    click.Command(
        "worker",
        callback=with_appcontext(_worker_callback),
        params=_worker_params(),
        help=(
            "Run a worker for this Flask app's teguh handlers.\n\n"
            "Takes the options of `teguh worker`. SIGTERM or SIGINT stops claiming and "
            "lets running tasks finish (up to --shutdown-timeout); a second signal stops at once."
        ),
    )
)


@teguh_cli.command("install")
def _install_cmd() -> None:
    """Install or upgrade the teguh schema and create the app's queues (safe to repeat)."""
    ext = _extension()
    try:
        queues = ext.install()
        click.echo(f"teguh schema {ext.client.schema_version()} installed; queues: {', '.join(queues)}")
    except TeguhError as exc:
        raise click.ClickException(str(exc)) from exc
