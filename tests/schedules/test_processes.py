"""Exactly one task per tick with worker processes racing, and across a worker killed while firing."""

from __future__ import annotations

import itertools
import signal
import subprocess
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from _support.processes import worker_processes

from teguh import App

from . import sched_app
from .conftest import eventually, tasks_of

HERE = Path(__file__).resolve().parent


@pytest.fixture
def shared_app(dsn: str) -> Iterator[App]:
    application = sched_app.build_app(dsn)
    application.client.create_queue(sched_app.Q)
    try:
        yield application
    finally:
        application.client.close()


@pytest.fixture
def spawn_process(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen]]:
    """Start `sched_app.py DSN WORKER_ID` (SIGKILLed at teardown if still running)."""
    with worker_processes(HERE / "sched_app.py", tmp_path) as processes:

        def start(dsn: str, worker_id: str, fault: str | None = None) -> subprocess.Popen:
            return processes.start(dsn, worker_id, env={"TEGUH_FAULT": fault or None}, log_name=worker_id)

        yield start


def assert_one_task_per_tick(app: App) -> list[datetime]:
    """Every tick of the every-second schedule has exactly one task, and no tick in between is missing."""
    tasks = tasks_of(app, sched_app.SCHEDULE)
    ticks = [datetime.fromisoformat(t["headers"]["scheduled_for"]) for t in tasks]
    assert len(ticks) == len(set(ticks)), f"a tick has two tasks: {sorted(ticks)}"
    ticks.sort()
    gaps = [(a, b) for a, b in itertools.pairwise(ticks) if b - a != timedelta(seconds=1)]
    assert not gaps, f"ticks missing between {gaps}"
    return ticks


def stop_all(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        proc.wait(30)


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_eight_racing_processes_spawn_one_task_per_tick(
    dsn: str, shared_app: App, spawn_process: Any
) -> None:
    procs = [spawn_process(dsn, f"racer-{i}") for i in range(8)]
    eventually(lambda: len(tasks_of(shared_app, sched_app.SCHEDULE)) >= 6, timeout=60, what="6 ticks fired")
    stop_all(procs)
    ticks = assert_one_task_per_tick(shared_app)
    assert len(ticks) >= 6


@pytest.mark.slow
@pytest.mark.chaos
@pytest.mark.timeout(120)
@pytest.mark.parametrize("point", ["before_fire_schedule", "after_fire_schedule"])
def test_a_worker_killed_while_firing_costs_no_tick_and_doubles_none(
    dsn: str, shared_app: App, spawn_process: Any, point: str
) -> None:
    doomed = spawn_process(dsn, "doomed", fault=f"{point}:3")
    assert doomed.wait(60) == 137, "the crash point was reached"
    fired = len(tasks_of(shared_app, sched_app.SCHEDULE))
    assert fired == (2 if point == "before_fire_schedule" else 3)
    rescuer = spawn_process(dsn, "rescuer")
    eventually(
        lambda: len(tasks_of(shared_app, sched_app.SCHEDULE)) >= fired + 3, timeout=60, what="3 more ticks"
    )
    stop_all([rescuer])
    assert_one_task_per_tick(shared_app)
