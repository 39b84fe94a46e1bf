"""`teguh demo`: a worker processing a few example tasks, narrated as it goes.

The tasks show what teguh adds to a plain job queue: a step that is not
repeated when its task is retried, a durable sleep that holds no worker, an
event that wakes a waiting task, and retries with backoff. Read this file as
an example app: `teguh worker --app teguh.demo:app --queue demo` runs the same
handlers.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import click

from .app import App
from .context import TaskContext
from .retry import Fixed

app = App(queue="demo")


def _say(ctx: TaskContext, message: str) -> None:
    click.echo(f"  [{ctx.task_name} #{ctx.task_id[-6:]} attempt {ctx.attempt}] {message}")


@app.task("welcome-email")
def welcome_email(params: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    """Render an email once, pause durably (no worker is held), then send it."""

    def render() -> str:
        body = f"Hello {params['name']}, welcome aboard!"
        _say(ctx, f"rendered {body!r}; pausing 2 s (a durable sleep: the worker is free meanwhile)")
        return body

    ctx.step("render", render)
    ctx.sleep_for("pause", 2)
    ctx.step("send", lambda: _say(ctx, f"resumed after the pause; sent to {params['email']}"))
    return {"sent_to": params["email"]}


@app.task("ship-order")
def ship_order(params: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    """Reserve stock, wait for an approval event, then ship."""
    order = params["order"]
    ctx.step(
        "reserve",
        lambda: _say(
            ctx, f"reserved {params['items']} item(s) of order {order}; waiting for approved:{order}"
        ),
    )
    approval = ctx.await_event(f"approved:{order}", timeout=30)
    _say(ctx, f"approved by {approval['by']}: shipping")
    return {"order": order, "approved_by": approval["by"]}


@app.task("flaky-api", retry_strategy=Fixed(1), max_attempts=3)
def flaky_api(params: dict[str, Any], ctx: TaskContext) -> str:
    """Fail on the first attempt; the step before the failure is not repeated."""
    token = ctx.step("get-token", lambda: f"token-{ctx.task_id[-4:]}")
    if ctx.attempt == 1:
        _say(ctx, f"got {token}, then the API timed out: failing (retry in 1 s)")
        raise TimeoutError("the API did not answer")
    _say(ctx, f"reused {token} from the first attempt; the API answered")
    return "ok"


def run_demo(dsn: str | None = None, echo: Callable[[str], None] = click.echo) -> bool:
    """Run the demo against `dsn` (default: the configured or embedded database).

    Returns whether every demo task completed.
    """
    demo = App(dsn, queue="demo")
    for task in app.tasks.values():
        demo.task(task.name, **task.defaults)(task.fn)
    client = demo.client
    echo(f"database: {client.dsn}")
    client.install_schema()
    client.create_queue("demo")
    worker = demo.worker(concurrency=4, poll_interval=30, install_signal_handlers=False)
    thread = threading.Thread(target=worker.run, name="teguh-demo-worker")
    thread.start()
    try:
        if not worker.started.wait(30):
            echo("the worker did not start")
            return False
        echo("worker started on queue 'demo'; spawning 3 tasks")
        order = f"A-{int(time.time()) % 100000}"
        spawned = {
            "welcome-email": demo.spawn_task(
                "welcome-email", {"name": "Ada", "email": "ada@example.com"}, notify_done=True
            ),
            "ship-order": demo.spawn_task("ship-order", {"order": order, "items": 2}, notify_done=True),
            "flaky-api": demo.spawn_task("flaky-api", {}, notify_done=True),
        }
        time.sleep(1.0)
        echo(f"emitting event approved:{order}")
        client.emit_event("demo", f"approved:{order}", {"by": "Grace"})
        ok = True
        for name, spawn in spawned.items():
            result = client.wait_for_result("demo", spawn.task_id, timeout=60)
            echo(f"{name}: {result.state} after {result.attempts} attempt(s), result {result.result!r}")
            ok = ok and result.state == "completed"
        echo("all demo tasks completed" if ok else "some demo tasks did not complete")
        return ok
    finally:
        worker.stop()
        thread.join(30)
        client.close()
