"""Live updates: the engine's teguh_watch notifications, and the event streams over real HTTP."""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import psycopg2
import pytest
from _support.polling import eventually

from teguh._notify import NOTIFIED, ListenWaiter
from teguh.app import App
from teguh.errors import InvalidArgument, InvalidQueueName
from teguh.testing import WorkerThread

from .conftest import Q

MARK = "end-of-test-marker"


def listener(app: App) -> ListenWaiter:
    waiter = ListenWaiter(app.client.dsn, ["teguh_watch"])
    assert waiter.connect()
    return waiter


def heard(waiter: ListenWaiter, app: App) -> list[str]:
    """Every teguh_watch payload sent before now: a marker sent last ends the collection.

    Notifications arrive in commit order, so once the marker is heard,
    nothing sent before it can still be on its way.
    """
    app.client._run("mark", lambda cur: cur.execute("select pg_notify('teguh_watch', %s)", (MARK,)))
    got: list[str] = []
    while MARK not in got:
        assert waiter.wait(10.0) == NOTIFIED, "the marker did not arrive"
        got.extend(waiter.payloads)
    return got[: got.index(MARK)]


def spawn_claimed(app: App, **options: Any) -> Any:
    app.client.spawn_task(Q, "t", {}, **options)
    (run,) = app.client.claim_task(Q, "w")
    return run


def test_terminal_transitions_notify_teguh_watch_only_while_watched(app: App) -> None:
    waiter = listener(app)
    try:
        run = spawn_claimed(app)
        app.client.complete_run(Q, run.run_id, 1)
        assert heard(waiter, app) == []  # nobody watches: the engine sends nothing

        app.client._watch_queues([Q, "no_such_queue"], 60)
        run = spawn_claimed(app)
        app.client._complete_runs(Q, [run.run_id], ["1"])  # the worker's batched path (_done_<q>)
        assert heard(waiter, app) == [Q]
        run = spawn_claimed(app)
        app.client.complete_run(Q, run.run_id, 1)
        assert heard(waiter, app) == [Q]
        run = spawn_claimed(app, max_attempts=2)
        app.client.fail_run(Q, run.run_id, {"message": "retry later"})  # a retry, later
        assert heard(waiter, app) == [Q]
        app.client.cancel_task(Q, run.task_id)
        assert heard(waiter, app) == [Q]
        run = spawn_claimed(app, max_attempts=1)
        app.client.fail_run(Q, run.run_id, {"message": "for good"})
        assert heard(waiter, app) == [Q]

        # an expired mark is as good as none
        app.client._run(
            "expire",
            lambda cur: cur.execute("update teguh.watched_queues set watched_until = now() - interval '1 s'"),
        )
        run = spawn_claimed(app)
        app.client.complete_run(Q, run.run_id, 1)
        assert heard(waiter, app) == []
    finally:
        waiter.close()


def test_watch_queues_checks_its_arguments(app: App) -> None:
    for bad in (-1, 3601, 1.5, True):
        with pytest.raises(InvalidArgument):
            app.client._watch_queues([Q], bad)
    with pytest.raises(InvalidQueueName):
        app.client._watch_queues(["Bad Name"], 10)
    # a second dashboard's shorter mark does not cut the first one's
    app.client._watch_queues([Q], 600)
    app.client._watch_queues([Q], 1)
    left = app.client._run(
        "left",
        lambda cur: (
            cur.execute("select extract(epoch from watched_until - now()) from teguh.watched_queues"),
            cur.fetchone()[0],
        )[1],
    )
    assert left > 500


class Stream:
    """An open event stream read line by line over a real socket."""

    def __init__(self, base: str, path: str) -> None:
        parts = urlsplit(base)
        self.conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=20)
        self.conn.request("GET", path, headers={"Accept": "text/event-stream"})
        self.response = self.conn.getresponse()

    def events(self) -> Iterator[tuple[str, str]]:
        """(event, data) pairs until the server ends the stream."""
        event, data = "message", []
        while True:
            line = self.response.fp.readline()
            if not line:
                return
            text = line.decode().rstrip("\n")
            if not text:
                if data:
                    yield event, "\n".join(data)
                event, data = "message", []
            elif text.startswith("event: "):
                event = text[7:]
            elif text.startswith("data: "):
                data.append(text[6:])

    def close(self) -> None:
        self.conn.close()


def test_page_stream_announces_a_completion_fed_by_notify(app: App, serve_dashboard) -> None:
    @app.task("add", queue=Q)
    def add(params: dict) -> int:
        return params["a"] + params["b"]

    server = serve_dashboard()
    stream = Stream(server.url, f"/events?queue={Q}")
    try:
        assert stream.response.status == 200
        assert stream.response.getheader("Content-Type").startswith("text/event-stream")
        # the hub marks the queue watched once a page listens
        eventually(
            lambda: app.client._run(
                "w",
                lambda cur: (
                    cur.execute("select count(*) from teguh.watched_queues where watched_until > now()"),
                    cur.fetchone()[0],
                )[1],
            )
        )
        with WorkerThread(app.worker(Q, install_signal_handlers=False)):
            add.spawn({"a": 1, "b": 2})
            for event, data in stream.events():
                if event == "change" and Q in json.loads(data)["queues"]:
                    break
    finally:
        stream.close()


def test_one_listen_connection_serves_every_open_page(app: App, serve_dashboard) -> None:
    server = serve_dashboard()
    streams = [Stream(server.url, f"/events?queue={Q}") for _ in range(3)]
    try:
        hub = server.app.hub
        eventually(lambda: hub.subscribers == 3)

        def listeners() -> int:
            conn = psycopg2.connect(app.client.dsn)
            try:
                with conn.cursor() as cur:
                    cur.execute(
                        "select count(*) from pg_stat_activity"
                        " where application_name = 'teguh-dashboard' and datname = current_database()"
                    )
                    return cur.fetchone()[0]
            finally:
                conn.close()

        eventually(lambda: listeners() == 1)
    finally:
        for s in streams:
            s.close()


def test_task_stream_follows_one_task_to_its_end(app: App, serve_dashboard) -> None:
    gate = threading.Event()

    @app.task("slow", queue=Q)
    def slow(params: dict) -> str:
        assert gate.wait(20)
        return "done"

    server = serve_dashboard()
    spawned = slow.spawn({})
    stream = Stream(server.url, f"/api/queues/{Q}/tasks/{spawned.task_id}/events")
    try:
        states = []
        with WorkerThread(app.worker(Q, install_signal_handlers=False)):
            for event, data in stream.events():
                assert event == "task"
                body = json.loads(data)
                assert body["task_id"] == spawned.task_id
                states.append(body["state"])
                if body["state"] == "pending":
                    gate.set()
            assert states[0] == "pending"
            assert states[-1] == "completed"
            assert body["result"] == "done"
    finally:
        gate.set()
        stream.close()


def test_hub_hears_progress_and_queue_channels_and_refreshes_the_mark_for_a_new_page(app: App) -> None:
    from teguh.dashboard._live import LiveHub

    app.client.create_queue("other")
    hub = LiveHub(app.client, debounce=0.05)
    try:
        sub = hub.subscribe([Q])
        eventually(lambda: watched_queues(app) == {Q})
        task_id = app.client.spawn_task(Q, "t", {}).task_id  # teguh_web 'spawn'
        change = sub.get(10)
        assert change is not None and Q in change.queues
        app.client._run(
            "p", lambda cur: cur.execute("select pg_notify('teguh_progress', %s)", (f"{Q}:{task_id}",))
        )
        change = sub.get(10)
        while change is not None and (Q, task_id) not in change.tasks:
            change = sub.get(10)
        assert change is not None, "the progress notification did not arrive"
        other = hub.subscribe(["other"])  # a second page, another queue: marked at once
        eventually(lambda: watched_queues(app) == {Q, "other"}, timeout=5)
        app.client.spawn_task("other", "t", {})
        change = other.get(10)
        assert change is not None and change.queues == frozenset({"other"})
    finally:
        hub.close()
    assert sub.get(0.1) is None and sub.closed


def watched_queues(app: App) -> set[str]:
    return set(
        app.client._run(
            "watched",
            lambda cur: (
                cur.execute("select queue_name from teguh.watched_queues where watched_until > now()"),
                [r[0] for r in cur.fetchall()],
            )[1],
        )
    )


def test_head_of_an_event_stream_does_not_hang(app: App, serve_dashboard) -> None:
    server = serve_dashboard()
    parts = urlsplit(server.url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        conn.request("HEAD", f"/events?queue={Q}")
        response = conn.getresponse()
        assert response.status == 200
        assert response.read() == b""
    finally:
        conn.close()
