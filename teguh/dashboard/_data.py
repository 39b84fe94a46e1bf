"""What the pages show, read through the `Client` and turned into plain values for the templates.

The dashboard reads only public `Client` calls, some of which arrive with
other features (`get_task`, `list_tasks`, `queue_stats`, `list_workers`,
`list_schedules`, `list_batches`, `get_batch`, `batch_results`, `list_children`). Each reader
here checks whether the client has the call and says so when it does not, so
a page shows what this version of teguh can tell instead of failing. Values (dataclasses, named tuples, dicts)
become dicts of plain values, so templates read them one way.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

from ..results import TASK_STATES as STATES  # in the order the pages list them

MAX_SHOWN_CHARS = 20_000
"""A JSON value longer than this is cut on the page (with a note saying so)."""


def plain(value: Any) -> Any:
    """A dataclass, named tuple or mapping as dicts and lists, recursively; other values unchanged."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple) and hasattr(value, "_asdict"):
        return {k: plain(v) for k, v in value._asdict().items()}
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def to_json(value: Any, *, limit: int = MAX_SHOWN_CHARS) -> tuple[str, bool]:
    """A value as indented JSON (control characters escaped by JSON itself), and whether it was cut."""
    try:
        text = json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=str)
    except (TypeError, ValueError):
        text = repr(value)
    if len(text) > limit:
        return text[:limit], True
    return text, False


def jsonable(value: Any) -> Any:
    """A plain value made JSON-safe for the API and SSE (datetimes as ISO 8601)."""
    value = plain(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [jsonable(v) for v in value]
    return value


def age(when: Any, now: datetime | None = None) -> str:
    """'3 s', '5 min', '2 h', '4 d' since `when` (or for a number of seconds)."""
    if when is None:
        return ""
    if isinstance(when, timedelta):
        seconds = when.total_seconds()
    elif isinstance(when, (int, float)):
        seconds = float(when)
    elif isinstance(when, datetime):
        now = now or datetime.now(timezone.utc)
        seconds = (now - when).total_seconds()
    else:
        return str(when)
    seconds = abs(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit}"
    return f"{seconds:.0f} s"


class Reader:
    """The dashboard's reads, over whichever calls the client has."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def has(self, call: str) -> bool:
        return callable(getattr(self.client, call, None))

    def queues(self) -> list[dict[str, Any]]:
        """One dict per queue: name, paused, counts by state, and the stats the client gives."""
        rows = []
        for name in sorted(self.client.list_queues()):
            row: dict[str, Any] = {"name": name, "paused": False, "counts": {}, "stats": {}}
            try:
                row["paused"] = bool(self.client.get_queue_options(name).get("paused"))
            except Exception:  # dropped meanwhile
                continue
            if self.has("queue_stats"):
                stats = plain(self.client.queue_stats(name))
                stats = stats if isinstance(stats, dict) else {}
                row["stats"] = stats
                counts = stats.get("counts")
                if not isinstance(counts, dict):
                    counts = {s: stats[s] for s in STATES if s in stats}
                row["counts"] = counts
            rows.append(row)
        return rows

    def tasks(
        self, queue: str, *, state: str | None, task_name: str | None, limit: int, after: str | None
    ) -> list[dict[str, Any]]:
        """A page of the queue's tasks, newest first (`Client.list_tasks`)."""
        found = self.client.list_tasks(queue, state=state, task_name=task_name, limit=limit, after=after)
        return [plain(t) for t in found]

    def task(self, queue: str, task_id: str) -> dict[str, Any] | None:
        """Everything known about one task, None when it is not there."""
        if self.has("get_task"):
            try:
                return plain(self.client.get_task(queue, task_id))
            except Exception as exc:
                if type(exc).__name__ in (
                    "TaskNotFound",
                    "QueueNotFound",
                    "InvalidArgument",
                    "InvalidQueueName",
                ):
                    return None
                raise
        info = self.client._get_task_info(queue, task_id)
        if info is None:
            return None
        info = dict(info)
        info["task_id"] = str(info["task_id"])
        info["failure"] = info.pop("failure_reason", None)
        return info

    def workers(self) -> list[dict[str, Any]]:
        return [plain(w) for w in self.client.list_workers()]

    def schedules(self) -> list[dict[str, Any]]:
        return [plain(s) for s in self.client.list_schedules()]

    def batch(self, batch_id: str) -> dict[str, Any] | None:
        """One batch's counts, state and times (`Client.get_batch`), None when it is not there."""
        try:
            found = self.client.get_batch(batch_id)
        except Exception as exc:
            if type(exc).__name__ in ("BatchNotFound", "InvalidArgument"):
                return None
            raise
        return None if found is None else with_progress(plain(found))

    def batches(
        self, queue: str | None, *, state: str | None, limit: int, after: str | None
    ) -> list[dict[str, Any]]:
        """A page of batches, newest first (`Client.list_batches`)."""
        found = self.client.list_batches(queue, state=state, limit=limit, after=after)
        return [with_progress(plain(b)) for b in found]

    def batch_items(
        self, batch_id: str, *, state: str | None, limit: int, after: str | None
    ) -> list[dict[str, Any]]:
        """A page of a batch's items in task id order (`Client.batch_results`)."""
        found = self.client.batch_results(batch_id, limit=limit, after=after, state=state)
        return [plain(i) for i in found]

    def children(self, queue: str, task_id: str, limit: int) -> list[dict[str, Any]]:
        """A task's first `limit` child tasks, from every queue, oldest first (`Client.list_children`)."""
        return [plain(c) for c in self.client.list_children(queue, task_id, limit=limit)]

    def parent_queue(self, queue: str, task_id: str) -> str | None:
        """The queue of a child task's parent (it may be another queue), None if unknown."""
        links = getattr(self.client, "_get_task_links", None)
        if links is None:
            return None
        try:
            return links(queue, task_id)[2]
        except Exception as exc:
            if type(exc).__name__ == "TaskNotFound":  # deleted meanwhile
                return None
            raise


def with_progress(batch: dict[str, Any]) -> dict[str, Any]:
    """A batch dict plus `ended` (items completed, failed or cancelled): its progress bar's value."""
    batch["ended"] = sum(int(batch.get(k) or 0) for k in ("completed", "failed", "cancelled"))
    return batch
