"""Log setup for the CLI: text or JSON lines, with run fields on every record.

The library itself only logs through `logging.getLogger("teguh...")` and never
configures handlers; this module is what `teguh worker --log-format` uses.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import datetime, timezone

from ._taskvars import TaskLogFilter

RUN_FIELDS = ("queue", "task_name", "task_id", "run_id", "attempt")
"""The record attributes the worker sets on every record about a run."""


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, run fields, error."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for field in RUN_FIELDS:
            value = getattr(record, field, None)
            if value is not None:
                entry[field] = value
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    """`time level logger: message [queue task_name task_id attempt]`."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        fields = [
            f"{field}={getattr(record, field)}"
            for field in RUN_FIELDS
            if getattr(record, field, None) is not None
        ]
        if fields:
            first, _, rest = text.partition("\n")
            text = f"{first} [{' '.join(fields)}]" + (f"\n{rest}" if rest else "")
        return text


def configure(level: str = "INFO", fmt: str = "text") -> None:
    """Send teguh's (and the root logger's) records to stderr in the given format."""
    handler = logging.StreamHandler(sys.stderr)
    # the running task's fields on records of the app's own loggers too
    handler.addFilter(TaskLogFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
