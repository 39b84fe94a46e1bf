"""`ScheduleFirer`: the worker's part of schedules, fired from the main loop's idle wait.

Why it exists: schedules need no extra process and no leader. Every worker
serving a queue fires the due schedules spawning on it when their tick comes,
and the engine (`teguh.fire_schedule`) lets exactly one of them spawn each
tick. The firer tells the main loop how long it may wait (the earliest next
tick bounds the idle wait, like `next_due`), so ticks fire on time without a
polling loop; a change to a schedule (create, pause, resume, delete) sends
'schedule' on the queue's channel, which wakes waiting workers to re-read.

Cost for a worker whose queues have no schedule: one upsert and one read at
start, then nothing until a 'schedule' notification arrives.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import psycopg2

from .. import _backoff
from .._notify import NOTIFIED, RECONNECTED, TIMEOUT
from ..errors import PermissionDenied, TeguhError, error_message

if TYPE_CHECKING:
    from ..client import Client

logger = logging.getLogger("teguh.worker")

CATCH_ALL = "*"
"""The catch-all handler's name (`teguh.app.CATCH_ALL`, not imported: the app imports the worker)."""

SCHEDULE_PAYLOAD = "schedule"
"""The payload on `teguh_<queue>` announcing a schedule change (see `teguh.put_schedules`)."""

HELD_RETRY = 0.02
"""Seconds before looking again at a schedule still due after a firing round."""

FIRE_BACKOFF = _backoff.Backoff(1.0, 30.0)
"""Waits after a failed firing (a dropped queue, a lost database): a broken schedule cannot spin."""


def sync_app_schedules(client: Client, app: Any) -> None:
    """Upsert the app's schedules and delete the ones its code no longer defines (at worker start).

    The app is identified by its queue (`App.queue`): its workers own the
    schedules they wrote, and delete those of its tasks the code no longer
    schedules. With `App(version=...)`, a worker whose version first appeared
    before another of the same app is old code in a rolling deploy and writes
    nothing (see docs/schedules.md).

    Raises:
        InvalidArgument: a schedule names a task no handler registers (nothing written).
    """
    check = getattr(app, "check_schedules", None)
    schedules = getattr(app, "schedules", None)
    if check is None or schedules is None:
        return  # not a teguh.App: nothing to sync
    check()
    owner = app.queue
    queues = {name: s.queue or app.queue_of(s.task_name) for name, s in schedules.items()}
    tasks = app.tasks
    # prune only the schedules of tasks this app handles: another app on the same home queue
    # (with other tasks) keeps its own; a catch-all handles them all
    handled = None if CATCH_ALL in tasks else sorted(tasks)
    # an app without schedules takes no part in the version order (it would make its
    # neighbours' workers look old)
    version = getattr(app, "version", None) if schedules else None
    try:
        status = client._put_schedules(
            owner, version, list(schedules.values()), prune=True, queues=queues, handled=handled
        )
    except PermissionDenied:
        logger.warning(
            "this role may not write schedules: the app's schedules were not updated "
            "(run teguh.grant_worker for this role again)",
            extra={"queue": owner},
        )
        return
    if status == "stale":
        logger.info(
            "a newer version of this app (queue %s) owns its schedules: this worker (version %s) "
            "fires them but changes none",
            owner,
            app.version,
            extra={"queue": owner},
        )


class ScheduleFirer:
    """Fires the due schedules of the worker's queues and says when the next tick is.

    Used by the main loop only (not thread-safe): `seconds_until_next()` before
    each wait, `noticed(result, payloads)` after it.
    """

    def __init__(self, client: Client, queues: Sequence[str]) -> None:
        self._client = client
        self._queues = list(queues)
        self.polling = False
        """Set when the worker polls (no NOTIFY arrives, e.g. behind PgBouncer): re-read after each wait."""
        self.enabled = True
        """False while no schedule spawns on the queues (set by a read finding none, cleared by a change)."""
        self._dirty = True
        self._deadline: float | None = None
        self._failures = 0

    def noticed(self, result: str, payloads: Sequence[str]) -> None:
        """After a wait: a schedule change (or a reconnect, which may have lost one) means re-read."""
        if (
            result == RECONNECTED
            or (result == NOTIFIED and SCHEDULE_PAYLOAD in payloads)
            or (self.polling and result == TIMEOUT)
        ):
            self.enabled = True
            self._dirty = True

    def seconds_until_next(self) -> float | None:
        """Fire what is due (when the cached next tick has come) and return the seconds to the next tick.

        None when no schedule of these queues will fire (the loop waits for
        a notification as before). Reads the database only when the next
        tick is due or a change was announced.
        """
        if not self.enabled:
            return None
        now = time.monotonic()
        if not self._dirty and (self._deadline is None or now < self._deadline):
            return None if self._deadline is None else self._deadline - now
        self._dirty = False
        try:
            seconds, failed = self._client._fire_due_schedules(self._queues)
        except (TeguhError, psycopg2.Error) as exc:
            failed, seconds = 1, None
            logger.warning(
                "firing schedules failed (%s)", error_message(exc), extra={"queue": self._queues[0]}
            )
        if seconds is None and not failed:
            self.enabled = False  # no schedule here: nothing more to do until a change is announced
        if failed:
            self._failures += 1
            pause = FIRE_BACKOFF.delay(self._failures)
            seconds = pause if seconds is None else max(seconds, pause)
        else:
            self._failures = 0
        if seconds is not None and seconds <= 0:
            # still due after firing: another worker holds it (skip locked) or more than a
            # read's worth were due; look again shortly rather than spin
            seconds = HELD_RETRY
        self._deadline = None if seconds is None else time.monotonic() + seconds
        return seconds
