"""Rows of the operations read calls turned into their result types.

`Client.get_task`, `list_tasks`, `queue_stats` and `list_workers` read
dicts from the engine (`_sql.rows_as_dicts`); building `TaskInfo`,
`QueueStats` and `WorkerInfo` from them lives here so that client.py keeps
one short method per engine call. Values only: no SQL, no I/O.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from .results import AttemptInfo, QueueStats, StepInfo, TaskInfo, WorkerInfo

__all__ = ["queue_stats", "task_info", "worker_info"]


def _time(value: Any) -> datetime | None:
    """A timestamp from a JSON array element (ISO text) or a driver value."""
    if value is None or isinstance(value, datetime):
        return value
    # PostgreSQL drops trailing zeros of the fraction; Python 3.10 wants 3 or 6 digits
    text = re.sub(r"\.(\d{1,6})", lambda m: "." + m.group(1).ljust(6, "0"), str(value), count=1)
    return datetime.fromisoformat(text)


def _steps(rows: Any) -> tuple[StepInfo, ...]:
    return tuple(
        StepInfo(s["name"], s["value"], s["status"], s["kind"], _time(s["updated_at"]))  # type: ignore[arg-type]
        for s in rows or ()
    )


def _attempts(rows: Any) -> tuple[AttemptInfo, ...]:
    return tuple(
        AttemptInfo(
            attempt=a["attempt"],
            run_id=str(a["run_id"]),
            worker_id=a["worker_id"],
            started_at=_time(a["started_at"]),
            ended_at=_time(a["ended_at"]),  # type: ignore[arg-type]
            reason=a["reason"],
            final=bool(a["final"]),
        )
        for a in rows or ()
    )


def task_info(row: dict[str, Any]) -> TaskInfo:
    """A `TaskInfo` from a row of `teguh.get_task` (full) or `teguh.list_tasks` (light)."""
    state = row["state"]
    waits = state in ("pending", "sleeping")
    return TaskInfo(
        task_id=str(row["task_id"]),
        state=state,
        attempts=row["attempts"],
        result=row["result"],
        failure=row["failure_reason"],
        cancelled_at=row["cancelled_at"],
        finished_at=row["finished_at"],
        snoozes=row["snoozes"],
        task_name=row["task_name"],
        params=row["params"],
        headers=row["headers"],
        priority=row["priority"],
        max_attempts=row["max_attempts"],
        enqueued_at=row["enqueued_at"],
        first_started_at=row["first_started_at"],
        available_at=row["available_at"],
        wake_at=row["available_at"] if waits else None,
        awaited_event=row.get("awaited_event", row.get("wake_event")) if state == "sleeping" else None,
        wait_step=row.get("wait_step"),
        claimed_by=row.get("claimed_by"),
        claimed_at=row.get("claimed_at"),
        steps=_steps(row.get("steps")),
        attempt_history=_attempts(row.get("attempt_history")),
        # the composition feature's t_<q> columns, when the row has them
        parent_task_id=None if row.get("parent_task_id") is None else str(row["parent_task_id"]),
        progress=row.get("progress"),
        queue=row.get("queue_name"),
    )


def queue_stats(queue: str, row: dict[str, Any]) -> QueueStats:
    """A `QueueStats` from the row of `teguh.queue_stats`."""
    return QueueStats(
        queue=queue,
        pending=row["pending"],
        running=row["running"],
        sleeping=row["sleeping"],
        completed=row["completed"],
        failed=row["failed"],
        cancelled=row["cancelled"],
        oldest_pending_age=row["oldest_pending_seconds"],
        completed_last_minute=row["completed_last_minute"],
        completed_last_hour=row["completed_last_hour"],
        failed_last_minute=row["failed_last_minute"],
        failed_last_hour=row["failed_last_hour"],
        estimated=row["estimated"],
    )


def worker_info(row: dict[str, Any]) -> WorkerInfo:
    """A `WorkerInfo` from a row of `teguh.list_workers`."""
    return WorkerInfo(
        instance_id=str(row["instance_id"]),
        worker_id=row["worker_id"],
        host=row["host"],
        pid=row["pid"],
        queues=tuple(row["queues"] or ()),
        concurrency=row["concurrency"],
        running=row["running"],
        version=row["teguh_version"],
        app_version=row["app_version"],
        started_at=row["started_at"],
        last_seen_at=row["last_seen_at"],
        expires_at=row["expires_at"],
    )
