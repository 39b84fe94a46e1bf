"""`FakeClock`: pins the engine's clock (`teguh.fake_now`) for an app's client and workers.

Works against a real database: a session hook sets the setting on every
connection the client (and workers sharing its hooks) use, and `advance()`
runs the engine's ticker at the new time. Spawns and emits through other
connections still see the real clock; a connection that missed the hook
(opened elsewhere) is not faked.
"""

from __future__ import annotations

import contextlib
import threading
import time
import weakref
from datetime import datetime, timedelta
from typing import Any

from .. import _sql, _time
from ..app import App
from ..client import Client
from . import _advance

STALL_LIMIT = 200
"""Rounds (of 10 ms) `set()` waits for a schedule tick that does not move on before giving up on it."""


class FakeClock:
    """Pins `teguh.current_time()` for an app's client and workers, on a real database.

    Every call the clients make first sets the session setting `teguh.fake_now`
    (through `Client.session_hooks`) when the connection does not have the
    current fake time yet: pooled connections keep it as a session setting,
    a caller's `conn=` transaction gets it for that transaction only. Workers
    built by the app (`app.worker()`, `worker_thread`, `teguh_worker`) share
    the app client's hooks, so they see the same time.

    The clock is frozen: it moves only with `advance()` or `set()`, which then
    run the engine's `ticker()` under the new time, so sleepers and event waits
    now due become ready and running workers are notified at once. Schedules
    fire at each of their ticks on the way (or, with `jump=True`, see the
    jump as a missed window: docs/schedules.md).

    Args:
        target: a `teguh.App` (its client) or a `Client`.
        start: the starting time (aware); default: the database's current time.

    Caveats: frozen time stops everything time-driven, including retry
    backoff and lease expiry, until you advance it. Advancing past a running
    task's lease lets the ticker recover it (as a real clock would). Spawns
    and emits through other connections (your own SQL, another process) use
    the real clock. `close()` (or the end of a `with` block) retires the
    pooled connections that hold the fake time.
    """

    def __init__(self, target: App | Client, *, start: datetime | None = None) -> None:
        self.client: Client = target.client if isinstance(target, App) else target
        if start is None:
            start = self.client._clock_timestamp()
        self._now: datetime = _time.require_aware(start, "start")
        self._version = 0
        self._applied: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()
        self._closed = False
        self.client.session_hooks.append(self._hook)

    def __enter__(self) -> FakeClock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def now(self) -> datetime:
        """The fake time every hooked connection sees."""
        return self._now

    def _hook(self, cur: Any) -> None:
        conn = cur.connection
        with self._lock:
            now, version = self._now, self._version
            if conn.autocommit and self._applied.get(conn) == version:
                return
        # In a caller's transaction the setting is local to it, so it does not
        # outlive the test's transaction on the caller's connection.
        cur.execute(_sql.SET_FAKE_NOW, (now.isoformat(), not conn.autocommit))
        if conn.autocommit:
            with self._lock:
                self._applied[conn] = version

    def set(self, when: datetime, *, jump: bool = False) -> int:
        """Jump to the aware datetime `when` (forward only) and run the ticker.

        Schedules fire on the way: the clock stops at each schedule tick
        before `when`, so each fires on time (advance a day, see each tick's
        task). With `jump=True` it moves straight to `when`: the ticks in
        between are a missed window, like a downtime, and each schedule's
        `catch_up` decides what fires. Returns how many tasks the ticker made ready.
        """
        when = _time.require_aware(when, "when")
        if when < self._now:
            raise ValueError("the fake clock only moves forward")
        if not jump:
            self._walk_schedules(when)
        self._move(when)
        return self.tick()

    def advance(self, delta: float | timedelta | None = None, *, jump: bool = False, **parts: float) -> int:
        """Move the clock forward and run the ticker; returns how many tasks became ready.

        Takes seconds, a timedelta, or timedelta keywords (`advance(hours=24)`).
        Schedules fire at each of their ticks on the way, unless `jump=True` (see `set`).
        """
        return self.set(self._now + _advance.delta(delta, parts), jump=jump)

    def tick(self) -> int:
        """Run `teguh.ticker()` at the fake time and fire the due schedules; returns the tasks made ready.

        The ticker wakes due sleepers and timed-out waits.
        """
        ready = self.client.ticker()
        self.client._fire_due_schedules(None)
        return ready

    def _move(self, when: datetime) -> None:
        with self._lock:
            self._now = when
            self._version += 1

    def _walk_schedules(self, until: datetime) -> None:
        """Stop at each schedule tick up to `until` and fire it (a worker on this clock may fire it too)."""
        stalled = 0
        previous = None
        while True:
            due = self.client._next_schedule_at()
            if due is None or due > until:
                return
            if due > self._now:
                self._move(due)
            if due == previous:
                # not moved on: a worker is firing it right now, or it fails (logged); bounded
                stalled += 1
                if stalled > STALL_LIMIT:
                    return
                time.sleep(0.01)
            else:
                stalled = 0
            previous = due
            self.client._fire_due_schedules(None)

    def close(self) -> None:
        """Stop faking time: remove the hook and retire the connections that hold the fake time."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(ValueError):
            self.client.session_hooks.remove(self._hook)
        # Idle pooled connections still carry the setting; the next checkout
        # replaces them.
        self.client.drain_connections()

