"""Compatibility names for the worker's NOTIFY probe and waiter factory; the code lives in `teguh._notify`.

`PollingListener` is `_notify.PollingWaiter`, `open_listener` is `_notify.open_queue_waiter`.
"""

from __future__ import annotations

from ._dsn import LISTEN_DSN_ENV
from ._notify import BROKEN, OK, PROBE_TIMEOUT, UNKNOWN, probe_notify
from ._notify import PollingWaiter as PollingListener
from ._notify import open_queue_waiter as open_listener

__all__ = [
    "BROKEN",
    "LISTEN_DSN_ENV",
    "OK",
    "PROBE_TIMEOUT",
    "UNKNOWN",
    "PollingListener",
    "open_listener",
    "probe_notify",
]
