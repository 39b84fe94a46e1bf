"""`teguh demo`: a worker processing a few example tasks, narrated as it goes.

The tasks show what teguh adds to a plain job queue: a step that is not
repeated when its task is retried, a durable sleep that holds no worker, an
event that wakes a waiting task, and retries with backoff. Then the headline
promise: a worker process is killed (SIGKILL) in the middle of a task, and
another worker process finishes the task without re-running the steps the
first one committed. Read this file as an example app: `teguh worker --app
teguh.demo:app --queue demo` runs the same handlers.

The demo fails (returns False) when a task does not complete in time; a worker
process it started is killed on the way out whatever happens.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import click

from . import _dsn, _embedded
from .app import App
from .client import Client
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


IMPORT_BATCHES = 3
CRASH_CLAIM_TIMEOUT = 2
"""Lease seconds of the demo's worker processes: how long a killed worker's task waits to be reclaimed."""


@app.task("import-rows", retry_strategy=Fixed(0), max_attempts=3)
def import_rows(params: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    """Import rows in batches, one step each: a crash loses at most the batch in progress."""
    imported = 0
    for batch in range(1, IMPORT_BATCHES + 1):
        ran = []

        def work(batch: int = batch, ran: list[bool] = ran) -> int:
            ran.append(True)
            if batch == IMPORT_BATCHES and ctx.attempt == 1:
                _say(ctx, f"importing batch {batch} (slow)...")
                time.sleep(params.get("stall_seconds", 0))  # the demo kills this worker meanwhile
            return params["rows_per_batch"]

        imported += ctx.step(f"batch-{batch}", work)
        if ran:
            _say(ctx, f"batch {batch}: imported {params['rows_per_batch']} rows (pid {os.getpid()})")
        else:
            _say(ctx, f"batch {batch}: already committed, not run again (pid {os.getpid()})")
    return {"rows": imported}


class _WorkerProcess:
    """A `teguh worker` process of this app whose output is relayed through `echo`."""

    def __init__(self, label: str, dsn: str, echo: Callable[[str], None], marker: str = "") -> None:
        self.label = label
        self.marker_seen = threading.Event()
        env = dict(os.environ, TEGUH_DSN=dsn)  # in the environment: a password stays out of `ps`
        self.proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "teguh", "worker", "--app", "teguh.demo:app", "--queue", "demo"),
                *("--concurrency", "1", "--claim-timeout", str(CRASH_CLAIM_TIMEOUT)),
                *("--poll-interval", "1", "--log-level", "ERROR"),
            ],
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        self._relay = threading.Thread(
            target=self._read, args=(echo, marker), name=f"teguh-demo-relay-{label}", daemon=True
        )
        self._relay.start()

    def _read(self, echo: Callable[[str], None], marker: str) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            echo(line.rstrip("\n"))
            if marker and marker in line:
                self.marker_seen.set()

    def kill(self) -> None:
        """SIGKILL: no shutdown, no hand-back; the lease must expire."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def stop(self) -> None:
        """SIGTERM (a graceful stop), then SIGKILL if it lingers; idempotent."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()
        self._relay.join(5)
        if self.proc.stdout is not None and not self._relay.is_alive():
            self.proc.stdout.close()


def _crash_part(client: Client, dsn: str, echo: Callable[[str], None]) -> bool:
    """Kill a worker process mid-task; another finishes the task from its checkpoints."""
    echo("")
    echo("now a crash: worker process A runs import-rows and is killed (SIGKILL) in its last batch")
    spawn = client.spawn_task(
        "demo", "import-rows", {"rows_per_batch": 100, "stall_seconds": 60}, notify_done=True
    )
    first = _WorkerProcess("A", dsn, echo, marker=f"importing batch {IMPORT_BATCHES}")
    second = None
    try:
        if not first.marker_seen.wait(30):
            echo("worker A did not reach the last batch")
            return False
        first.kill()
        echo(
            f"killed worker A (pid {first.proc.pid}) with SIGKILL; starting worker B, which reclaims "
            f"the task when A's {CRASH_CLAIM_TIMEOUT} s lease expires"
        )
        second = _WorkerProcess("B", dsn, echo)
        result = client.wait_for_result("demo", spawn.task_id, timeout=30)
        echo(
            f"import-rows: {result.state} after {result.attempts} attempt(s), result {result.result!r}; "
            f"the committed batches ran once"
        )
        return result.state == "completed"
    finally:
        first.stop()
        if second is not None:
            second.stop()


def run_demo(dsn: str | None = None, echo: Callable[[str], None] = click.echo) -> bool:
    """Run the demo against `dsn` (default: the configured or embedded database).

    Returns whether every demo task completed.

    Raises:
        NoDatabaseConfigured: no DSN is configured and the `embedded` extra is missing.
    """
    dsn, _ = _dsn.configured_dsn(dsn)
    server = None
    if dsn is None:
        server = _embedded.ensure_server()  # here, so a missing extra is reported as it is
        dsn = server.dsn
    demo = App(dsn, queue="demo")
    for task in app.tasks.values():
        demo.task(task.name, **task.defaults, **task.limits)(task.fn)
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
    finally:
        worker.stop()
        thread.join(30)
    try:
        ok = _crash_part(client, dsn, echo) and ok
    finally:
        client.close()
    echo("all demo tasks completed" if ok else "some demo tasks did not complete")
    if server is not None:
        echo(
            f"the embedded PostgreSQL is still running (data in {server.datadir}); "
            "stop it with: teguh dev --stop"
        )
    return ok
