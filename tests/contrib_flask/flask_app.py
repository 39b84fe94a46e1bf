"""A real Flask app for the Flask integration tests (also run by `flask teguh worker`).

Factory pattern, as users write it: the extensions and the handlers live at
module level, and `create_app(dsn)` builds a Flask app per test.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import psycopg2
from flask import Flask, current_app, g, jsonify, request
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import text

from teguh.contrib.flask import Teguh

Q = "flaskq"

db = SQLAlchemy()
ext = Teguh(queue=Q)


class Boom(Exception):
    """Raised by the failing views after their writes and their spawn."""


@ext.task("record")
def record(params: Any, ctx: Any) -> dict[str, Any]:
    # current_app and db.session only work inside an app context: the
    # extension's around_run hook gives the handler one.
    notes = db.session.execute(text("select count(*) from note")).scalar_one()
    return {"marker": current_app.config["MARKER"], "notes": notes, "params": params}


@ext.task("record-async")
async def record_async(params: Any, ctx: Any) -> dict[str, Any]:
    # an async handler runs in the same app context (its event loop sees the hook's context)
    await asyncio.sleep(0)
    notes = db.session.execute(text("select count(*) from note")).scalar_one()
    return {"marker": current_app.config["MARKER"], "notes": notes, "params": params}


DRIVERS = ("psycopg2", "psycopg")
"""The drivers the views run on: SQLAlchemy's `+driver` and the plain connection's module."""


def sqlalchemy_uri(dsn: str, driver: str = "psycopg2") -> str:
    """The SQLAlchemy URL of a libpq key=value DSN (host and port as query parameters)."""
    info = psycopg2.extensions.parse_dsn(dsn)
    return f"postgresql+{driver}://{info['user']}@/{info['dbname']}?host={info['host']}&port={info['port']}"


def create_app(
    dsn: str | None = None, *, marker: str = "flask-test", teguh_dsn: bool = True, driver: str = "psycopg2"
) -> Flask:
    """The test app; `driver` is that of its SQLAlchemy engine and its plain connections."""
    dsn = dsn or os.environ["FLASK_TEST_DSN"]
    app = Flask("teguh_flask_test")
    app.config["TESTING"] = True
    app.config["MARKER"] = marker
    app.config["SQLALCHEMY_DATABASE_URI"] = sqlalchemy_uri(dsn, driver)
    if teguh_dsn:
        app.config["TEGUH_DSN"] = dsn
    app.config["PLAIN_DSN"] = dsn
    db.init_app(app)
    ext.init_app(app)

    def plain_conn() -> Any:
        if "pg" not in g:
            if driver == "psycopg":
                import psycopg

                g.pg = psycopg.connect(app.config["PLAIN_DSN"])
            else:
                g.pg = psycopg2.connect(app.config["PLAIN_DSN"])
        return g.pg

    @app.teardown_appcontext
    def close_plain(exc: BaseException | None) -> None:
        conn = g.pop("pg", None)
        if conn is not None:
            conn.rollback()  # what was not committed is abandoned, spawn included
            conn.close()

    @app.post("/sa/<outcome>")
    def sa_view(outcome: str) -> Any:
        db.session.execute(text("insert into note (body) values (:b)"), {"b": request.json["body"]})
        spawned = ext.spawn_task("record", {"body": request.json["body"]}, session=db.session)
        if outcome == "fail":
            raise Boom("after the write and the spawn")
        db.session.commit()
        return jsonify(task_id=spawned.task_id)

    @app.post("/plain/<outcome>")
    def plain_view(outcome: str) -> Any:
        conn = plain_conn()
        with conn.cursor() as cur:
            cur.execute("insert into note (body) values (%s)", (request.json["body"],))
        spawned = ext.spawn_task("record", {"body": request.json["body"]}, conn=conn)
        if outcome == "fail":
            raise Boom("after the write and the spawn")
        conn.commit()
        return jsonify(task_id=spawned.task_id)

    @app.post("/approve/<name>")
    def approve(name: str) -> Any:
        ext.emit_event(name, request.json, session=db.session)
        db.session.commit()
        return jsonify(ok=True)

    return app


def create_tables(dsn: str) -> None:
    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute("create table if not exists note (id serial primary key, body text not null)")
        conn.commit()
    finally:
        conn.close()
