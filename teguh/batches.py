"""Batches: many tasks of one name spawned together, counted together, with a callback.

The engine does the work (teguh.sql, section "Batches"): `spawn_batch` puts
every item in one statement, the items' terminal transitions count them at
commit, and the last one spawns the `on_complete` task exactly once. This
module holds what Python adds: the argument checks (so bad input fails before
anything is written) and the values `Client.spawn_batch`, `Client.get_batch`
and `Client.batch_results` return.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from . import _json, _validate
from ._options import SPAWN_OPTIONS, spawn_options
from .errors import InvalidArgument
from .results import TASK_STATES

__all__ = ["BATCH_STATES", "ON_FAILURE", "TASK_STATES", "Batch", "BatchInfo", "BatchItem", "batch_request"]

ON_FAILURE = ("continue", "fail_fast")
"""A batch's policies: run every item whatever happens, or cancel the rest at the first failed item."""

"""The states an item (a task) can be in: `batch_results(state=...)` takes one."""

BATCH_STATES = ("running", "completed", "failed", "cancelled")
"""running until every item ended; then failed (an item failed), cancelled (one was), else completed."""


@dataclass(frozen=True)
class Batch:
    """What `spawn_batch` returns: the batch's id and its tasks' ids, in the order of the items."""

    id: str
    queue: str
    task_name: str
    task_ids: tuple[str, ...]

    @property
    def total(self) -> int:
        """The number of items (tasks) in the batch."""
        return len(self.task_ids)


@dataclass(frozen=True)
class BatchInfo:
    """A batch's progress (`Client.get_batch`).

    `pending` counts items not started yet or waiting to run again (sleeping
    ones too), `running` those held by a worker now; `completed`, `failed`
    (for good) and `cancelled` those that ended. `state` is `running` until
    every item ended, then `failed` if any failed, `cancelled` if any was
    cancelled, else `completed`; a `fail_fast` batch is `failed` from its
    first failure on. `on_complete_task_id` is the id of the `on_complete`
    task once spawned.
    """

    id: str
    queue: str
    task_name: str
    on_failure: str
    on_complete: str | None
    total: int
    pending: int
    running: int
    completed: int
    failed: int
    cancelled: int
    state: str
    created_at: datetime
    finished_at: datetime | None
    on_complete_task_id: str | None

    @property
    def finished(self) -> bool:
        """True once every item ended (completed, failed or cancelled)."""
        return self.finished_at is not None


@dataclass(frozen=True)
class BatchItem:
    """One item of a batch (`Client.batch_results`): its task, state and outcome."""

    task_id: str
    state: str
    attempts: int
    result: Any
    failure_reason: Any
    finished_at: datetime | None


def batch_info(row: Sequence[Any]) -> BatchInfo:
    """A `BatchInfo` from a row of `teguh.get_batch` (columns in its order)."""
    values = list(row)
    values[0] = str(values[0])
    values[14] = None if values[14] is None else str(values[14])
    return BatchInfo(*values)


def batch_item(row: Sequence[Any]) -> BatchItem:
    """A `BatchItem` from a row of `teguh.batch_results`."""
    return BatchItem(str(row[0]), *row[1:])


def batch_request(
    items: Sequence[Any],
    *,
    on_failure: str,
    on_complete: str | None,
    max_bytes: int | None,
    options: Mapping[str, Any],
) -> tuple[str, str]:
    """Check a batch's arguments and encode its items and options; returns (items_json, options_json).

    Raises:
        TypeError: items is not a list, or an item or option is not JSON.
        InvalidArgument: an unknown on_failure, an empty batch, an unknown
            option or `idempotency_key` (each item would share it), a value
            over the size limit (`PayloadTooLarge`).
    """
    if on_failure not in ON_FAILURE:
        raise InvalidArgument(f"on_failure must be 'continue' or 'fail_fast', not {on_failure!r}")
    if on_complete is not None:
        _validate.name(on_complete, "on_complete")
    if isinstance(items, (str, bytes, Mapping)) or not isinstance(items, Sequence):
        raise TypeError(f"items must be a list (one params value per task), not {type(items).__name__}")
    if len(items) == 0:
        raise InvalidArgument("a batch needs at least one item")
    unknown = sorted(set(options) - SPAWN_OPTIONS)
    if unknown:
        raise InvalidArgument(f"unknown spawn option(s) {unknown}")
    if options.get("idempotency_key") is not None:
        raise InvalidArgument("idempotency_key cannot be given to a batch: its items would share one key")
    options_json = _json.dumps(spawn_options("", max_bytes, **options), "options", max_bytes=None)
    try:
        # one encoding checks every item when the whole fits the per-value limit
        items_json = _json.dumps(list(items), "items", max_bytes=max_bytes)
    except (TypeError, ValueError):
        # name the item at fault, and allow batches larger than one value's limit
        parts = [_json.dumps(item, f"items[{i}]", max_bytes=max_bytes) for i, item in enumerate(items)]
        items_json = "[" + ",".join(parts) + "]"
    return items_json, options_json
