"""The Flask extension against a real Flask app, a real PostgreSQL and a real worker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

import teguh
from teguh.contrib.flask import EXTENSION_KEY, Teguh, _sqlalchemy_dsn, dbapi_connection
from teguh.testing import worker_thread

from . import flask_app as fa

REPO = Path(__file__).resolve().parents[2]


def notes(db: Any) -> list[str]:
    return [r[0] for r in db.all("select body from note order by id")]


def tasks(db: Any) -> list[tuple]:
    return db.all(f"select task_name, params from teguh.t_{fa.Q} order by task_id")


# -- configuration --------------------------------------------------------------


def test_init_app_stores_the_extension_and_reads_the_config(flask_app: Flask, dsn: str) -> None:
    assert flask_app.extensions[EXTENSION_KEY] is fa.ext
    assert fa.ext.client.dsn == dsn
    assert fa.ext.teguh_app.queue == fa.Q
    assert "teguh" in flask_app.cli.commands
    assert set(flask_app.cli.commands["teguh"].commands) >= {"worker", "install"}


def test_direct_construction_and_queue_config(dsn: str) -> None:
    app = Flask("direct")
    app.config.update(TEGUH_DSN=dsn, TEGUH_QUEUE="jobs")
    ext = Teguh(app)
    try:
        assert app.extensions["teguh"] is ext
        assert ext.teguh_app.queue == "jobs"
        assert ext.install() == ["jobs"]
        assert "jobs" in ext.client.list_queues()
    finally:
        ext.client.close()


def test_a_second_extension_on_one_app_is_refused(dsn: str) -> None:
    app = Flask("twice")
    app.config["TEGUH_DSN"] = dsn
    Teguh(app)
    with pytest.raises(teguh.TeguhError, match="already has a teguh extension"):
        Teguh(app)


def test_the_dsn_falls_back_to_a_postgresql_sqlalchemy_uri(dsn: str, db: Any) -> None:
    fa.create_tables(dsn)
    app = fa.create_app(dsn, teguh_dsn=False)
    try:
        assert app.config["TEGUH_DSN"] is None
        assert fa.ext.client.dsn == _sqlalchemy_dsn(fa.sqlalchemy_uri(dsn))
        fa.ext.client.create_queue(fa.Q)  # proves the derived DSN reaches the database
        assert fa.Q in [r[0] for r in db.all("select queue_name from teguh.queues")]
    finally:
        fa.ext.client.close()


def test_sqlalchemy_uri_conversion() -> None:
    assert _sqlalchemy_dsn("postgresql+psycopg2://u:p@h:5/d?x=1") == "postgresql://u:p@h:5/d?x=1"
    assert _sqlalchemy_dsn("postgres://u@h/d") == "postgresql://u@h/d"
    assert _sqlalchemy_dsn("sqlite:///x.db") is None
    assert _sqlalchemy_dsn(None) is None


def test_session_and_conn_together_are_refused(flask_app: Flask) -> None:
    with pytest.raises(teguh.InvalidArgument, match="not both"):
        fa.ext.spawn_task("record", session=object(), conn=object())


# -- spawning in the view's transaction --------------------------------------------


@pytest.mark.parametrize("flask_app", fa.DRIVERS, indirect=True)
@pytest.mark.parametrize("kind", ["sa", "plain"])
def test_a_view_that_raises_leaves_neither_row_nor_task(flask_app: Flask, db: Any, kind: str) -> None:
    client = flask_app.test_client()
    with pytest.raises(fa.Boom):
        client.post(f"/{kind}/fail", json={"body": "lost"})
    assert notes(db) == []
    assert tasks(db) == []
    # The connection is healthy afterwards: the next request commits both.
    response = client.post(f"/{kind}/ok", json={"body": "kept"})
    assert response.status_code == 200
    assert notes(db) == ["kept"]
    assert tasks(db) == [("record", {"body": "kept"})]


@pytest.mark.parametrize("flask_app", fa.DRIVERS, indirect=True)
@pytest.mark.parametrize("kind", ["sa", "plain"])
def test_a_committed_view_leaves_both_and_a_worker_runs_the_task_in_app_context(
    flask_app: Flask, db: Any, kind: str
) -> None:
    response = flask_app.test_client().post(f"/{kind}/ok", json={"body": "hello"})
    assert response.status_code == 200
    task_id = response.get_json()["task_id"]
    assert notes(db) == ["hello"]
    with worker_thread(fa.ext.teguh_app, poll_interval=5, shutdown_timeout=5):
        done = fa.ext.client.wait_for_result(fa.Q, task_id, timeout=20)
    assert done.state == "completed", done.failure
    # The handler saw current_app (this app's config) and a working db.session.
    assert done.result == {"marker": "flask-test", "notes": 1, "params": {"body": "hello"}}


def test_an_async_handler_runs_in_app_context_on_a_worker_and_eagerly(flask_app: Flask, db: Any) -> None:
    with flask_app.app_context():
        spawned = fa.ext.spawn_task("record-async", {"n": 1})
    with worker_thread(fa.ext.teguh_app, poll_interval=5, shutdown_timeout=5):
        done = fa.ext.client.wait_for_result(fa.Q, spawned.task_id, timeout=20)
    assert done.state == "completed", done.failure
    assert done.result == {"marker": "flask-test", "notes": 0, "params": {"n": 1}}
    from teguh.testing import eager

    with eager(fa.ext.teguh_app) as runner:
        inline = runner.result(fa.ext.spawn_task("record-async", {"n": 2}).task_id)
    assert inline.result == {"marker": "flask-test", "notes": 0, "params": {"n": 2}}


@pytest.mark.parametrize("flask_app", fa.DRIVERS, indirect=True)
def test_dbapi_connection_is_the_sessions_own(flask_app: Flask) -> None:
    with flask_app.app_context():
        raw = dbapi_connection(fa.db.session)
        with raw.cursor() as cur:
            cur.execute("select txid_current_if_assigned() is null, pg_backend_pid()")
            _, pid = cur.fetchone()
        same_pid = fa.db.session.execute(fa.text("select pg_backend_pid()")).scalar_one()
        assert pid == same_pid
        fa.db.session.rollback()


@pytest.mark.parametrize("flask_app", fa.DRIVERS, indirect=True)
def test_an_event_emitted_from_a_view_in_its_transaction(flask_app: Flask, db: Any) -> None:
    response = flask_app.test_client().post("/approve/order-7", json={"by": "ann"})
    assert response.status_code == 200
    assert db.value(f"select payload from teguh.e_{fa.Q} where event_name = 'order-7'") == {"by": "ann"}


def test_get_task_result_through_the_extension(flask_app: Flask) -> None:
    spawned = fa.ext.spawn_task("record", {"n": 1})
    assert fa.ext.get_task_result(spawned.task_id).state == "pending"


# -- the flask teguh commands ------------------------------------------------------


def test_flask_teguh_install_on_an_empty_database(empty_dsn: str, db: Any) -> None:
    app = Flask("install")
    app.config["TEGUH_DSN"] = empty_dsn
    ext = Teguh(app, queue="mail")
    try:
        result = app.test_cli_runner().invoke(args=["teguh", "install"])
        assert result.exit_code == 0, result.output
        assert "installed" in result.output and "mail" in result.output
        assert ext.client.list_queues() == ["mail"]
    finally:
        ext.client.close()


def test_flask_teguh_worker_takes_the_options_of_teguh_worker(flask_app: Flask) -> None:
    from teguh.cli import worker_cmd

    result = flask_app.test_cli_runner().invoke(args=["teguh", "worker", "--help"])
    assert result.exit_code == 0, result.output
    teguh_options = {o for p in worker_cmd.params for o in p.opts if p.name != "app_spec"}
    assert teguh_options and all(opt in result.output for opt in teguh_options)
    assert "--app " not in result.output


def test_flask_teguh_worker_process_runs_a_task_and_stops_on_sigterm(
    flask_app: Flask, dsn: str, tmp_path: Path
) -> None:
    spawned = fa.ext.spawn_task("record", {"via": "cli"}, notify_done=True)
    log_path = tmp_path / "worker.log"
    env = {**os.environ, "FLASK_TEST_DSN": dsn, "PYTHONPATH": str(REPO)}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable, "-m", "flask", "--app", "tests.contrib_flask.flask_app:create_app",
                "teguh", "worker", "--concurrency", "2", "--poll-interval", "5", "--shutdown-timeout", "5",
            ],
            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=str(REPO),
        )  # fmt: skip
        try:
            done = fa.ext.client.wait_for_result(fa.Q, spawned.task_id, timeout=30)
            assert done.state == "completed", (done.failure, log_path.read_text())
            assert done.result == {"marker": "flask-test", "notes": 0, "params": {"via": "cli"}}
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(20) == 0, log_path.read_text()
        finally:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(10)


def test_handlers_run_outside_any_context_before_init_app(dsn: str) -> None:
    ext = Teguh(teguh_app=teguh.App(dsn, queue="bare"))
    seen: list[Any] = []

    @ext.task("probe")
    def probe(params: Any) -> bool:
        from flask import has_app_context

        seen.append(has_app_context())
        return True

    ext.client.create_queue("bare")
    try:
        spawned = ext.spawn_task("probe")
        with worker_thread(ext.teguh_app, poll_interval=5, shutdown_timeout=5):
            done = ext.client.wait_for_result("bare", spawned.task_id, timeout=20)
        assert done.state == "completed"
        assert seen == [False]
    finally:
        ext.client.close()


def test_eager_mode_runs_the_views_task_inline_in_app_context(flask_app: Flask, db: Any) -> None:
    from teguh.testing import eager

    with eager(fa.ext.teguh_app) as runner:
        web = flask_app.test_client()
        with pytest.raises(fa.Boom):
            web.post("/sa/fail", json={"body": "rolled back"})
        assert runner.tasks == []  # the session rolled back: the spawn is forgotten
        response = web.post("/sa/ok", json={"body": "inline"})
        assert response.status_code == 200
        done = runner.result(response.get_json()["task_id"])
        with pytest.raises(fa.Boom):
            web.post("/plain/fail", json={"body": "conn= runs at once"})
        assert [t.params for t in runner.tasks] == [{"body": "inline"}, {"body": "conn= runs at once"}]
    assert done.state == "completed"
    # It ran when the view's session committed, so it saw the view's row.
    assert done.result == {"marker": "flask-test", "notes": 1, "params": {"body": "inline"}}
    assert tasks(db) == []  # eager spawns never reach the database
    assert notes(db) == ["inline"]


def test_a_session_on_another_driver_is_refused_with_a_clear_message() -> None:
    from sqlalchemy import create_engine
    from sqlalchemy.orm import Session

    engine = create_engine("sqlite://")
    try:
        with Session(engine) as session, pytest.raises(teguh.InvalidArgument, match="psycopg 3 driver"):
            dbapi_connection(session)
    finally:
        engine.dispose()


def test_a_plain_postgresql_url_spawns_in_the_session_on_sqlalchemy_2_1(dsn: str, db: Any) -> None:
    """SQLAlchemy 2.1 maps `postgresql://` to psycopg 3: a session spawn works on it as documented."""
    import psycopg
    import sqlalchemy
    from sqlalchemy import create_engine, text
    from sqlalchemy.orm import Session

    if tuple(int(p) for p in sqlalchemy.__version__.split(".")[:2]) < (2, 1):
        pytest.skip("SQLAlchemy before 2.1 maps postgresql:// to psycopg2")
    fa.create_tables(dsn)
    ext = Teguh(teguh_app=teguh.App(dsn, queue=fa.Q))
    engine = create_engine(fa.sqlalchemy_uri(dsn).replace("postgresql+psycopg2://", "postgresql://"))
    try:
        ext.client.create_queue(fa.Q)
        with Session(engine) as session:
            assert isinstance(dbapi_connection(session), psycopg.Connection)
            session.execute(text("insert into note (body) values ('gone')"))
            ext.spawn_task("record", {"n": 1}, session=session)
            session.rollback()
            session.execute(text("insert into note (body) values ('kept')"))
            spawned = ext.spawn_task("record", {"n": 2}, session=session)
            assert ext.emit_event("order-1", {"ok": True}, session=session).first
            assert not ext.emit_event("order-1", {"ok": False}, session=session).first
            session.commit()
        assert notes(db) == ["kept"]
        assert tasks(db) == [("record", {"n": 2})]
        assert ext.get_task_result(spawned.task_id).state == "pending"
        with Session(engine) as session, pytest.raises(teguh.QueueNotFound):
            ext.spawn_task("record", session=session, queue="no_such_queue")
    finally:
        engine.dispose()
        ext.client.close()


# -- init_app for one app after another ----------------------------------------------


def test_init_app_without_a_dsn_drops_the_previous_apps_database(
    dsn: str, empty_dsn: str, db: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A second app with no TEGUH_DSN (SQLite for SQLAlchemy) resolves its own: here the environment's."""
    teguh.install(empty_dsn)
    monkeypatch.setenv("TEGUH_DSN", empty_dsn)
    ext = Teguh(queue="twoapps")
    try:
        first = Flask("first")
        first.config["TEGUH_DSN"] = dsn
        ext.init_app(first)
        ext.client.create_queue("twoapps")
        assert ext.client.dsn == dsn

        second = Flask("second")
        second.config["SQLALCHEMY_DATABASE_URI"] = "sqlite://"
        ext.init_app(second)
        assert ext.client.dsn == empty_dsn  # the environment's, not the first app's
        ext.client.create_queue("twoapps")
        spawned = ext.spawn_task("anything", {"from": "second"})
        assert db.all("select count(*) from teguh.t_twoapps") == [(0,)]  # nothing reached the first's
        with teguh.Client(empty_dsn) as other:
            assert other.get_task_result("twoapps", spawned.task_id).state == "pending"

        ext.init_app(first)  # and back again
        assert ext.client.dsn == dsn
    finally:
        ext.client.close()


def test_init_app_without_a_dsn_goes_back_to_the_wrapped_apps_own(dsn: str, empty_dsn: str) -> None:
    ext = Teguh(teguh_app=teguh.App(dsn, queue="own"))
    try:
        elsewhere = Flask("elsewhere")
        elsewhere.config["TEGUH_DSN"] = empty_dsn
        ext.init_app(elsewhere)
        assert ext.client.dsn == empty_dsn
        ext.init_app(Flask("bare"))
        assert ext.teguh_app.dsn == dsn and ext.client.dsn == dsn
    finally:
        ext.client.close()


def test_init_app_without_a_dsn_keeps_a_database_bound_since(dsn: str, empty_dsn: str) -> None:
    """What a test bound with `teguh.testing.use_database` after the first app stays bound."""
    from teguh.testing import use_database

    ext = Teguh(queue="bound")
    first = Flask("first")
    first.config["TEGUH_DSN"] = dsn
    ext.init_app(first)
    try:
        with use_database(ext.teguh_app, empty_dsn):
            ext.init_app(Flask("bare"))
            assert ext.client.dsn == empty_dsn
    finally:
        ext.client.close()
