"""A small Flask shop whose order workflow is a durable teguh task.

POST /orders writes an order and spawns its workflow in the same transaction;
the workflow reserves stock (a step), waits for an approval (an event, emitted
by POST /orders/<id>/approve) and ships. See README.md for the commands.
"""

from __future__ import annotations

import logging
import os
from datetime import timedelta
from typing import Any

from flask import Flask, abort, jsonify, request
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy.orm import Mapped, mapped_column

import teguh
from teguh.contrib.flask import Teguh

logger = logging.getLogger(__name__)

db = SQLAlchemy()
tasks = Teguh(queue="shop")


class Order(db.Model):  # type: ignore[name-defined]
    id: Mapped[int] = mapped_column(primary_key=True)
    item: Mapped[str]
    status: Mapped[str] = mapped_column(default="new")
    task_id: Mapped[str | None]


@tasks.task("fulfil-order", max_attempts=5, retry_strategy=teguh.Exponential(base_seconds=5))
def fulfil_order(params: dict[str, Any], ctx: teguh.TaskContext) -> dict[str, Any]:
    order_id = params["order_id"]

    def reserve() -> str:
        # Runs once per order, even if the task is retried or resumed later.
        order = db.session.get(Order, order_id)  # db.session works: we are in the app context
        order.status = "reserved"
        db.session.commit()
        return f"shelf-{order_id % 7}"

    shelf = ctx.step("reserve", reserve)
    try:
        # Events stay in the queue until cleanup: the task's id makes this approval
        # this workflow's, even if an order id comes back (a recreated SQLite file).
        approval = ctx.await_event(f"order-{order_id}-approved:{ctx.task_id}", timeout=timedelta(days=2))
    except teguh.EventTimeout:
        db.session.get(Order, order_id).status = "expired"
        db.session.commit()
        return {"order_id": order_id, "status": "expired"}

    def ship() -> str:
        order = db.session.get(Order, order_id)
        order.status = "shipped"
        db.session.commit()
        return order.status

    status = ctx.step("ship", ship)
    return {"order_id": order_id, "shelf": shelf, "approved_by": approval["by"], "status": status}


def create_app(config: dict[str, Any] | None = None) -> Flask:
    app = Flask(__name__)
    if "TEGUH_DSN" in os.environ:
        # One database for the app and for teguh: TEGUH_DSN (`teguh dev` prints one).
        # SQLAlchemy 2.1 defaults postgresql:// to psycopg 3, which this example
        # does not install: name psycopg2, which teguh does (session= spawns
        # work on either driver).
        app.config["SQLALCHEMY_DATABASE_URI"] = os.environ["TEGUH_DSN"].replace(
            "postgresql://", "postgresql+psycopg2://", 1
        )
    app.config.from_mapping(config or {})  # tests override the database here
    db.init_app(app)
    tasks.init_app(app)  # TEGUH_DSN unset in the config: it uses SQLALCHEMY_DATABASE_URI

    @app.cli.command("init-db")
    def init_db() -> None:
        """Create the shop's tables."""
        db.create_all()

    @app.post("/orders")
    def create_order() -> Any:
        order = Order(item=request.json["item"])
        db.session.add(order)
        db.session.flush()  # assigns order.id
        # Same transaction as the INSERT: both commit, or neither does.
        spawned = tasks.spawn_task("fulfil-order", {"order_id": order.id}, session=db.session)
        order.task_id = spawned.task_id
        db.session.commit()
        return jsonify(id=order.id, task_id=spawned.task_id), 201

    @app.post("/orders/<int:order_id>/approve")
    def approve(order_id: int) -> Any:
        order = db.session.get(Order, order_id) or abort(404)
        approval = {"by": request.json.get("by", "someone")}
        tasks.emit_event(f"order-{order_id}-approved:{order.task_id}", approval)
        return jsonify(approved=order_id)

    @app.get("/orders/<int:order_id>")
    def show(order_id: int) -> Any:
        order = db.session.get(Order, order_id) or abort(404)
        task = tasks.get_task_result(order.task_id)
        return jsonify(id=order.id, item=order.item, status=order.status, task=task.state, result=task.result)

    return app
