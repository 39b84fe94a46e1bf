"""Log lines of runs (start, end with duration and outcome, takeover) and `teguh.TaskLogFilter`."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from _support.polling import eventually

import teguh
from teguh import _taskvars
from teguh.app import App

from .conftest import Q


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []
        self.addFilter(teguh.TaskLogFilter())

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def user_log() -> Iterator[Collect]:
    """A handler with the filter on the application's own logger "shop"."""
    handler = Collect()
    logger = logging.getLogger("shop")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler
    logger.removeHandler(handler)


def messages(caplog: pytest.LogCaptureFixture, task_id: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "teguh.worker" and getattr(r, "task_id", None) == task_id
    ]


@pytest.mark.timeout(60)
def test_start_and_end_lines(app: App, start_worker: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="teguh.worker")

    @app.task("echo")
    def echo(params: Any) -> Any:
        if params == "fail":
            raise teguh.NonRetryable("no")
        return params

    start_worker()
    ok = echo.spawn(1).task_id
    bad = echo.spawn("fail").task_id
    app.client.wait_for_result(Q, ok, timeout=15)
    app.client.wait_for_result(Q, bad, timeout=15)
    eventually(lambda: len(messages(caplog, ok)) == 2 and len(messages(caplog, bad)) >= 2, timeout=10)
    started, ended = messages(caplog, ok)
    assert started == "started" and ended.startswith("completed in ") and ended.endswith(" s")
    assert messages(caplog, bad)[0] == "started"
    assert messages(caplog, bad)[-1].startswith("ended in ") and messages(caplog, bad)[-1].endswith(
        "failed for good"
    )
    infos = [r for r in caplog.records if getattr(r, "task_id", None) == ok]
    assert all(r.levelno == logging.INFO for r in infos)


@pytest.mark.timeout(60)
def test_user_loggers_get_the_task_fields_in_sync_and_async_handlers(
    app: App, start_worker: Any, user_log: Collect
) -> None:
    shop = logging.getLogger("shop")

    @app.task("sync")
    def sync(params: Any) -> None:
        shop.info("charging %s", params)

    @app.task("async")
    async def run_async(params: Any) -> None:
        async def child() -> None:
            shop.info("in a child task")

        await asyncio.gather(child())
        shop.info("async done")

    start_worker()
    sync_id = sync.spawn("card").task_id
    async_id = run_async.spawn().task_id
    app.client.wait_for_result(Q, sync_id, timeout=15)
    app.client.wait_for_result(Q, async_id, timeout=15)
    shop.info("outside any task")
    by_message = {r.getMessage(): r for r in user_log.records}
    record = by_message["charging card"]
    assert (record.task_id, record.task_name, record.queue, record.attempt) == (sync_id, "sync", Q, 1)
    assert isinstance(record.run_id, str) and record.run_id
    for message in ("in a child task", "async done"):
        assert by_message[message].task_id == async_id and by_message[message].task_name == "async"
    outside = by_message["outside any task"]
    assert outside.task_id is None and outside.queue is None  # set, so a format string never fails


def test_the_filter_keeps_fields_a_record_has_and_never_drops() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "m", None, None)
    record.queue = "mine"
    token = _taskvars.CURRENT.set({"queue": "q", "task_id": "t"})
    try:
        assert teguh.TaskLogFilter().filter(record) is True
    finally:
        _taskvars.CURRENT.reset(token)
    assert (record.queue, record.task_id, record.attempt) == ("mine", "t", None)


@pytest.mark.timeout(60)
def test_a_takeover_of_an_expired_lease_is_logged(
    app: App, start_worker: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="teguh.worker")

    @app.task("job")
    def job(params: Any) -> str:
        return "done"

    task_id = job.spawn().task_id
    # a worker claims it and dies: its 1 s lease is never extended
    assert [r["task_id"] for r in app.client._claim_runs(Q, "gone:7", 1, 1)] == [task_id]
    start_worker(poll_interval=0.2)
    assert app.client.wait_for_result(Q, task_id, timeout=20).result == "done"
    eventually(lambda: any("taking over" in m for m in messages(caplog, task_id)), timeout=10)
    warning = next(r for r in caplog.records if "taking over" in r.getMessage())
    assert warning.levelno == logging.WARNING and warning.attempt == 2
    assert "attempt 1, held by gone:7, expired at" in warning.getMessage()
    # a first attempt is no takeover
    fresh = job.spawn().task_id
    app.client.wait_for_result(Q, fresh, timeout=15)
    assert not any("taking over" in m for m in messages(caplog, fresh))


@pytest.mark.timeout(60)
def test_the_cli_handler_carries_the_filter(capsys: pytest.CaptureFixture) -> None:
    from teguh import _logging

    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        _logging.configure("INFO", "json")
        token = _taskvars.CURRENT.set({"queue": "q1", "task_id": "t1", "attempt": 3})
        try:
            logging.getLogger("shop").warning("from the app")
        finally:
            _taskvars.CURRENT.reset(token)
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert '"task_id": "t1"' in line and '"queue": "q1"' in line and '"attempt": 3' in line
