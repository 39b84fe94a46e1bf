"""Compatibility names for the worker's LISTEN connection; the code lives in `teguh._notify`.

`QueueListener` is `_notify.ListenWaiter` (same constructor: `(dsn, channel, **connect_kwargs)`),
and the five wait results are the same strings.
"""

from __future__ import annotations

from ._notify import (
    DISCONNECTED,
    LIVENESS_INTERVAL,
    LIVENESS_TIMEOUT,
    NOTIFIED,
    RECONNECTED,
    TIMEOUT,
    WOKEN,
)
from ._notify import ListenWaiter as QueueListener

__all__ = [
    "DISCONNECTED",
    "LIVENESS_INTERVAL",
    "LIVENESS_TIMEOUT",
    "NOTIFIED",
    "RECONNECTED",
    "TIMEOUT",
    "WOKEN",
    "QueueListener",
]
