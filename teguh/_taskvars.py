"""The run a handler thread is executing, as a context variable, and the log filter that reads it.

`ctx.log` carries the run's fields, but a handler's own loggers (and the
libraries it calls) do not know about the run. The worker sets `CURRENT` to
the run's fields around each handler call; `TaskLogFilter`, added to any
logging handler, copies them onto every record emitted meanwhile. A context
variable (not a thread-local) so that the fields also reach the tasks an
`async def` handler starts: asyncio copies the context into each task.
"""

from __future__ import annotations

import contextvars
import logging
from typing import Any

FIELDS = ("task_id", "task_name", "queue", "attempt", "run_id")
"""The record attributes `TaskLogFilter` sets."""

CURRENT: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("teguh_run", default=None)
"""The fields of the run whose handler runs in this context, or None."""


class TaskLogFilter(logging.Filter):
    """A logging filter adding the running task's fields to records emitted inside a handler.

    Add it to a logging handler (`handler.addFilter(teguh.TaskLogFilter())`);
    records emitted while a teguh handler runs get `task_id`, `task_name`,
    `queue`, `attempt` and `run_id` attributes (usable in a format string as
    `%(task_id)s`); other records get them set to None, so a format string
    naming them never fails. Attributes a record already has are kept. It
    never drops a record. `teguh worker` installs it on its log handler.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        fields = CURRENT.get()
        for name in FIELDS:
            if not hasattr(record, name):
                setattr(record, name, None if fields is None else fields.get(name))
        return True
