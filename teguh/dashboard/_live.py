"""Live updates: one LISTEN connection per dashboard, fanned out to every open page.

Browsers keep a Server-Sent Events stream open per page. Each stream is a
`Subscription` on the `LiveHub`, which owns the dashboard's only LISTEN
connection (a `teguh._notify.ListenWaiter` in one thread), so ten open tabs
cost one connection, not ten. It listens on:

- `teguh_<q>` for every queue: spawns, retries, wake-ups and events;
- `teguh_watch`: completions, failures and cancels, which the engine sends
  only for queues marked watched (`Client._watch_queues`); the hub keeps the
  mark fresh for the queues its subscribers show, and lets it lapse when
  nobody watches, so the engine goes back to sending nothing;
- `teguh_done` (tasks spawned with `notify_done`) and `teguh_progress`
  (`ctx.report_progress`), both '<q>:<task_id>'.

Notifications are gathered for `DEBOUNCE` seconds and then handed to the
subscribers as one set of changed queues (and task ids), so a drain of
thousands of tasks a second costs each page a few refreshes a second, not a
message per task. The hub holds no connection while nobody subscribes.
"""

from __future__ import annotations

import contextlib
import logging
import queue as _queue
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .._notify import NOTIFIED, RECONNECTED, ListenWaiter

logger = logging.getLogger("teguh.dashboard")

WATCH_CHANNEL = "teguh_watch"
DONE_CHANNEL = "teguh_done"
PROGRESS_CHANNEL = "teguh_progress"

DEBOUNCE = 0.25
"""Seconds notifications are gathered before subscribers hear of them."""

WATCH_SECONDS = 60
"""How long one refresh of the watch mark lasts (the engine's side)."""

WATCH_REFRESH = 20.0
"""Seconds between refreshes of the watch mark and of the list of queues."""


@dataclass(frozen=True)
class Change:
    """What changed since the last message: queues, and the ids of tasks named by a notification.

    `resync` is true after the LISTEN connection was replaced: anything may
    have changed meanwhile.
    """

    queues: frozenset[str]
    tasks: frozenset[tuple[str, str]] = frozenset()
    resync: bool = False


@dataclass(eq=False)
class Subscription:
    """One SSE stream's mailbox: the queues it shows (None: every queue) and its pending changes."""

    queues: frozenset[str] | None
    closed: bool = False
    _box: _queue.SimpleQueue[Change | None] = field(default_factory=_queue.SimpleQueue)

    def get(self, timeout: float) -> Change | None:
        """The next change, or None on timeout or when the hub closed (`closed` tells which)."""
        try:
            return self._box.get(timeout=timeout)
        except _queue.Empty:
            return None

    def wants(self, change: Change) -> bool:
        return change.resync or self.queues is None or bool(self.queues & change.queues)

    def put(self, change: Change | None) -> None:
        if change is None:
            self.closed = True
        self._box.put(change)


class LiveHub:
    """The LISTEN thread and its subscribers (see the module docstring); thread-safe."""

    def __init__(
        self, client: Any, *, debounce: float = DEBOUNCE, watch_refresh: float = WATCH_REFRESH
    ) -> None:
        self._client = client
        self._debounce = debounce
        self._watch_refresh = watch_refresh
        self._lock = threading.Condition()
        self._subs: set[Subscription] = set()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._waiter: ListenWaiter | None = None
        self._rewatch = False  # a new subscriber: refresh the watch mark now, not at the next period

    # -- subscribers (request threads) ------------------------------------------

    def subscribe(self, queues: Iterable[str] | None = None) -> Subscription:
        """A new mailbox for the changes of `queues` (None: every queue); starts the LISTEN thread."""
        sub = Subscription(None if queues is None else frozenset(queues))
        with self._lock:
            if self._closed:
                sub.put(None)
                return sub
            self._subs.add(sub)
            self._rewatch = True
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="teguh-dashboard-live", daemon=True)
                self._thread.start()
            self._lock.notify_all()
        waiter = self._waiter
        if waiter is not None:
            waiter.wake()  # a new queue to watch: refresh the mark now
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        """Drop a mailbox (the stream ended); idempotent."""
        with self._lock:
            self._subs.discard(sub)

    @property
    def subscribers(self) -> int:
        """How many streams are open (for tests and the workers page)."""
        with self._lock:
            return len(self._subs)

    def close(self) -> None:
        """Stop the thread and end every stream."""
        with self._lock:
            self._closed = True
            subs, self._subs = list(self._subs), set()
            self._lock.notify_all()
        for sub in subs:
            sub.put(None)
        waiter = self._waiter
        if waiter is not None:
            waiter.wake()
        if self._thread is not None:
            self._thread.join(5.0)

    # -- the LISTEN thread ------------------------------------------------------

    def _watched(self) -> tuple[list[Subscription], set[str] | None]:
        with self._lock:
            subs = list(self._subs)
        if any(s.queues is None for s in subs):
            return subs, None
        return subs, set().union(*(s.queues or () for s in subs))

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._subs and not self._closed:
                    self._lock.wait()
                if self._closed:
                    return
            try:
                self._listen()
            except Exception:  # the database went away for long: try again after a pause
                logger.exception("dashboard live updates failed; retrying")
                with self._lock:
                    self._lock.wait(1.0)

    def _listen(self) -> None:
        """Listen while somebody subscribes; returns when nobody does (or the hub closes)."""
        queues = sorted(self._client.list_queues())
        channels = [WATCH_CHANNEL, DONE_CHANNEL, PROGRESS_CHANNEL] + [f"teguh_{q}" for q in queues]
        waiter = ListenWaiter(
            self._client.listen_dsn, channels, log=logger, application_name="teguh-dashboard"
        )
        self._waiter = waiter
        next_refresh = 0.0
        pending: set[str] = set()
        tasks: set[tuple[str, str]] = set()
        flush_at: float | None = None
        try:
            waiter.connect()
            while True:
                subs, watched = self._watched()
                if not subs or self._closed:
                    return
                now = time.monotonic()
                if now >= next_refresh or self._rewatch:
                    self._rewatch = False
                    current = sorted(self._client.list_queues())
                    if current != queues:  # a queue was created or dropped: listen on the new set
                        pending.update(set(current) ^ set(queues))
                        self._publish(subs, Change(frozenset(pending), resync=True))
                        return
                    wanted = queues if watched is None else [q for q in queues if q in watched]
                    if wanted:
                        self._client._watch_queues(wanted, WATCH_SECONDS)
                    next_refresh = now + self._watch_refresh
                timeout = next_refresh - now if flush_at is None else max(flush_at - now, 0.0)
                why = waiter.wait(timeout)
                if why == NOTIFIED:
                    for channel, payload in waiter.notifications:
                        self._collect(channel, payload, queues, pending, tasks)
                    if flush_at is None:
                        flush_at = time.monotonic() + self._debounce
                elif why == RECONNECTED:  # notifications may have been missed meanwhile
                    self._publish(subs, Change(frozenset(queues), resync=True))
                if flush_at is not None and time.monotonic() >= flush_at:
                    self._publish(subs, Change(frozenset(pending), frozenset(tasks)))
                    pending.clear()
                    tasks.clear()
                    flush_at = None
        finally:
            self._waiter = None
            with contextlib.suppress(Exception):
                waiter.close()

    @staticmethod
    def _collect(
        channel: str, payload: str, queues: list[str], pending: set[str], tasks: set[tuple[str, str]]
    ) -> None:
        # A queue may be named "watch", "done" or "progress", so a channel is
        # read both ways; a needless refresh is harmless, a missed one is not.
        if channel in (DONE_CHANNEL, PROGRESS_CHANNEL) and ":" in payload:
            q, _, task_id = payload.partition(":")
            pending.add(q)
            tasks.add((q, task_id))
        if channel == WATCH_CHANNEL:
            pending.add(payload)
        if channel.startswith("teguh_") and channel[len("teguh_") :] in queues:
            pending.add(channel[len("teguh_") :])

    @staticmethod
    def _publish(subs: list[Subscription], change: Change) -> None:
        for sub in subs:
            if sub.wants(change):
                sub.put(change)
