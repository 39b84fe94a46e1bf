"""teguh._notify's two waiters: the LISTEN connection (several channels, wake, reconnect) and polling."""

from __future__ import annotations

import time
from typing import Any

from teguh import _notify
from teguh._notify import ListenWaiter, PollingWaiter


def test_listen_waiter_hears_several_channels_and_keeps_payloads(dsn: str, db: Any) -> None:
    with ListenWaiter(dsn, ["teguh_a", "teguh_b"], application_name="teguh-waiter-test") as waiter:
        assert waiter.connect() and waiter.backend_pid is not None
        assert waiter.wait(0.05) == _notify.TIMEOUT
        db.run("select pg_notify('teguh_b', 'two')")
        assert waiter.wait(5) == _notify.NOTIFIED and waiter.payloads == ["two"]
        db.run("select pg_notify('teguh_a', 'one')")
        assert waiter.wait(5) == _notify.NOTIFIED and waiter.payloads == ["one"]
        waiter.wake()
        assert waiter.wait(5) == _notify.WOKEN


def test_listen_waiter_reconnects_after_its_backend_is_terminated(dsn: str, db: Any) -> None:
    with ListenWaiter(dsn, "teguh_c", application_name="teguh-waiter-test") as waiter:
        assert waiter.connect()
        old = waiter.backend_pid
        assert db.value("select pg_terminate_backend(%s)", old)
        assert waiter.wait(5) == _notify.DISCONNECTED
        assert waiter.wait(5) == _notify.RECONNECTED
        assert waiter.backend_pid not in (None, old) and waiter.reconnects == 1
        db.run("select pg_notify('teguh_c', 'again')")
        assert waiter.wait(5) == _notify.NOTIFIED and waiter.payloads == ["again"]


def test_listen_waiter_retries_with_backoff_while_it_cannot_connect() -> None:
    with ListenWaiter("host=/nonexistent-teguh-socket-dir dbname=x", "teguh_d") as waiter:
        assert not waiter.connect()
        started = time.monotonic()
        assert waiter.wait(0.3) == _notify.TIMEOUT  # its retries fail, the wait still ends on time
        assert time.monotonic() - started < 3
        waiter.wake()
        assert waiter.wait(5) == _notify.WOKEN


def test_polling_waiter_ends_on_wake_or_timeout() -> None:
    with PollingWaiter() as waiter:
        assert waiter.backend_pid is None and not waiter.connected
        started = time.monotonic()
        assert waiter.wait(0.1) == _notify.TIMEOUT
        assert time.monotonic() - started >= 0.1
        waiter.wake()
        waiter.wake()
        assert waiter.wait(5) == _notify.WOKEN
        assert waiter.wait(0) == _notify.TIMEOUT  # both wake-ups were consumed together


def test_wait_results_are_the_worker_vocabulary() -> None:
    from teguh import listener

    assert listener.QueueListener is ListenWaiter
    names = ("NOTIFIED", "WOKEN", "TIMEOUT", "RECONNECTED", "DISCONNECTED")
    assert [getattr(listener, name) for name in names] == [name.lower() for name in names]
