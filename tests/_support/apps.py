"""The test app of a folder on the test's database, its queue created, its client closed after.

Most folders' `app` fixture is this: `with queue_app(dsn, Q) as app: yield app`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from teguh import App

__all__ = ["queue_app"]


@contextlib.contextmanager
def queue_app(dsn: str, queue: str, *, create: bool = True, **options: Any) -> Iterator[App]:
    """An `App(dsn, queue=queue, **options)`, with `queue` created unless `create` is False."""
    app = App(dsn, queue=queue, **options)
    try:
        if create:
            app.client.create_queue(queue)
        yield app
    finally:
        app.client.close()
