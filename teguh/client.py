"""The blocking PostgreSQL client: one method per teguh SQL function.

`Client` is thread-safe and wraps a connection pool. Every method validates its
arguments in Python first (so bad input raises before anything is written), then
runs a single call of the matching SQL function. With `conn=`, the call runs on
the caller's connection inside the caller's transaction and is not committed;
otherwise it runs on a pooled autocommit connection, so it commits on return.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from . import _faults, _json, _ops, _sql, _tracing, _validate
from . import schedules as _schedules
from ._backoff import Backoff
from ._checkpoint_batch import CheckpointBatcher
from ._connection import ClientBase, schema_sql
from ._notify import DISCONNECTED, NOTIFIED, ListenWaiter
from ._options import SPAWN_OPTIONS, spawn_options
from ._sql import scalar
from ._time import require_aware, to_seconds, to_whole_seconds
from .batches import (
    BATCH_STATES,
    Batch,
    BatchInfo,
    BatchItem,
    batch_info,
    batch_item,
    batch_request,
)
from .errors import BatchNotFound, EventTimeout, InvalidArgument, ScheduleNotFound, TaskNotFound, TeguhError
from .results import (
    TASK_STATES,
    ClaimedRun,
    EmitResult,
    QueueStats,
    SpawnResult,
    TaskInfo,
    TaskResult,
    TaskType,
    WorkerInfo,
)
from .schedules import ScheduleInfo
from .topics import TopicBinding, check_pattern, check_topic

logger = logging.getLogger("teguh.client")

__all__ = [
    "ClaimedRun",
    "Client",
    "EmitResult",
    "SpawnResult",
    "TaskResult",
    "TaskType",
    "install",
    "schema_sql",
]

DEFAULT_CLAIM_TIMEOUT = 30
"""Seconds a claimed run's lease lasts unless extended (0: it never expires)."""

MAX_CLAIM_QTY = 10000
"""The most runs one `claim_task` call may lease (the engine's bound)."""

POLL_MIN_INTERVAL = 0.05
"""`wait_for_result`'s first polling interval, doubled after each poll up to POLL_MAX_INTERVAL."""

POLL_MAX_INTERVAL = 1.0

"""Every state a task can be in (`list_tasks(state=...)`)."""

MAX_LIST_LIMIT = 1000
"""The most tasks one `list_tasks` call returns."""

_PLAIN_ITEM_KEYS = frozenset({"task_name", "params"})
"""The keys of a `spawn_tasks` item that needs no option handling."""

DONE_CHANNEL = "teguh_done"
"""The channel on which tasks spawned with `notify_done=True` announce their terminal state."""


def install(dsn_or_client: str | Client | None = None) -> None:
    """Install or upgrade the teguh schema in a database; safe to repeat, keeps data.

    Args:
        dsn_or_client: a DSN, a `Client`, or None for the default resolution.

    Raises:
        ConnectionLost: the database cannot be reached.
    """
    if isinstance(dsn_or_client, Client):
        dsn_or_client.install_schema()
        return
    with Client(dsn_or_client, min_connections=0, max_connections=1) as client:
        client.install_schema()


class Client(ClientBase):
    """A thread-safe teguh client over a pool of PostgreSQL connections.

    Args:
        dsn: a libpq DSN or URI; None reads TEGUH_DSN, DATABASE_URL, then libpq's
            PG* variables (when PGHOST or PGDATABASE is set), else starts the
            embedded PostgreSQL (logged at INFO).
        min_connections: connections opened on first use.
        max_connections: the pool's size; callers beyond it wait for a free one.
        application_name: reported in pg_stat_activity.
        listen_dsn: where LISTEN connections go (`wait_for_result`, workers);
            default `TEGUH_LISTEN_DSN`, else `dsn`. Set it to a direct
            connection when `dsn` points at PgBouncer in transaction mode.

    Raises:
        InvalidArgument: bad pool sizes or an unparsable DSN.

    Caveats: the pool is created on first use, so construction never touches the
    network. Reads, claims and idempotent calls are retried with backoff when the
    connection fails; other calls raise `ConnectionLost`, and may or may not
    have taken effect.
    """

    # -- queues -----------------------------------------------------------------

    def create_queue(self, queue: str, *, conn: Any = None) -> None:
        """Create a queue and its tables; idempotent.

        Raises:
            InvalidQueueName: the name breaks ^[a-z][a-z0-9_]*$ or is over 55 bytes.
        """
        queue = _validate.queue_name(queue)
        self._run(
            "create_queue",
            lambda cur: cur.execute(_sql.CREATE_QUEUE, (queue,)),
            conn=conn,
            retry=True,
            queue=queue,
        )

    def drop_queue(self, queue: str, *, conn: Any = None) -> None:
        """Drop a queue with all its tasks, checkpoints and events; unknown queues are a no-op.

        Raises:
            InvalidQueueName: the name is invalid.
        """
        queue = _validate.queue_name(queue)
        self._run(
            "drop_queue",
            lambda cur: cur.execute(_sql.DROP_QUEUE, (queue,)),
            conn=conn,
            retry=True,
            queue=queue,
        )

    def list_queues(self, *, conn: Any = None) -> list[str]:
        """The names of all queues, sorted."""

        def fetch(cur: Any) -> list[str]:
            cur.execute(_sql.LIST_QUEUES)
            return [row[0] for row in cur.fetchall()]

        return self._run("list_queues", fetch, conn=conn, retry=True)

    def set_queue_options(
        self, queue: str, *, default_max_attempts: int | None = None, conn: Any = None
    ) -> None:
        """Change a queue's settings; options left None are kept.

        Args:
            default_max_attempts: the `max_attempts` of tasks spawned from now on
                without one (neither given nor registered for their task type);
                0 means unlimited. New queues start at 25.

        Raises:
            InvalidArgument: no option given, or a negative default_max_attempts (nothing written).
            QueueNotFound: the queue does not exist.
        """
        queue = _validate.queue_name(queue)
        options: dict[str, Any] = {}
        if default_max_attempts is not None:
            options["default_max_attempts"] = _validate.integer(
                default_max_attempts, "default_max_attempts", minimum=0
            )
        if not options:
            raise InvalidArgument("set_queue_options needs an option to set (default_max_attempts)")
        options_json = _json.dumps(options, "options", max_bytes=None)
        self._run(
            "set_queue_options",
            lambda cur: cur.execute(_sql.SET_QUEUE_OPTIONS, (queue, options_json)),
            conn=conn,
            retry=True,
            queue=queue,
        )

    def get_queue_options(self, queue: str, *, conn: Any = None) -> dict[str, Any]:
        """A queue's settings: `default_max_attempts`, `paused` and `paused_task_types` (a list).

        Raises:
            QueueNotFound: the queue does not exist.
        """
        queue = _validate.queue_name(queue)

        def fetch(cur: Any) -> dict[str, Any]:
            cur.execute(_sql.GET_QUEUE_OPTIONS, (queue,))
            row = _sql.rows_as_dicts(cur)[0]
            row["paused_task_types"] = list(row["paused_task_types"])
            return row

        return self._run("get_queue_options", fetch, conn=conn, retry=True, queue=queue)

    def pause_queue(self, queue: str, *, conn: Any = None) -> None:
        """Stop workers from claiming the queue's tasks until `resume_queue`.

        Spawns still succeed and running tasks finish; idempotent.

        Raises:
            QueueNotFound: the queue does not exist.
        """
        queue = _validate.queue_name(queue)
        self._run(
            "pause_queue",
            lambda cur: cur.execute(_sql.PAUSE_QUEUE, (queue,)),
            conn=conn,
            retry=True,
            queue=queue,
        )

    def resume_queue(self, queue: str, *, conn: Any = None) -> None:
        """Undo `pause_queue`; idle workers are woken and claim at once (idempotent).

        Raises:
            QueueNotFound: the queue does not exist.
        """
        queue = _validate.queue_name(queue)
        self._run(
            "resume_queue",
            lambda cur: cur.execute(_sql.RESUME_QUEUE, (queue,)),
            conn=conn,
            retry=True,
            queue=queue,
        )

    # -- task types ---------------------------------------------------------------

    def list_task_types(self, queue: str, *, conn: Any = None) -> list[TaskType]:
        """The task types workers registered on the queue, by name.

        Raises:
            QueueNotFound: the queue does not exist.
        """
        queue = _validate.queue_name(queue)

        def fetch(cur: Any) -> list[TaskType]:
            cur.execute(_sql.LIST_TASK_TYPES, (queue,))
            rows = _sql.rows_as_dicts(cur)
            return [TaskType(name=row.pop("task_name"), queue=queue, **row) for row in rows]

        return self._run("list_task_types", fetch, conn=conn, retry=True, queue=queue)

    def pause_task_type(self, queue: str, task_name: str, *, conn: Any = None) -> None:
        """Stop workers from claiming tasks named `task_name` until `resume_task_type`; others flow.

        Raises:
            InvalidArgument: no worker registered that task type on the queue.
            QueueNotFound: the queue does not exist.
        """
        self._set_task_type_paused(queue, task_name, _sql.PAUSE_TASK_TYPE, "pause_task_type", conn)

    def resume_task_type(self, queue: str, task_name: str, *, conn: Any = None) -> None:
        """Undo `pause_task_type`; idle workers are woken and claim at once.

        Raises:
            InvalidArgument: no worker registered that task type on the queue.
            QueueNotFound: the queue does not exist.
        """
        self._set_task_type_paused(queue, task_name, _sql.RESUME_TASK_TYPE, "resume_task_type", conn)

    def _set_task_type_paused(self, queue: str, task_name: str, statement: str, what: str, conn: Any) -> None:
        queue = _validate.queue_name(queue)
        task_name = _validate.name(task_name, "task_name")
        self._run(
            what, lambda cur: cur.execute(statement, (queue, task_name)), conn=conn, retry=True, queue=queue
        )

    def _register_task_types(self, queue: str, types: list[dict[str, Any]], version: str | None) -> None:
        """Upsert the queue's task types in one statement (a starting worker's call).

        `types` are `teguh._options.task_type` objects; the last writer wins.
        """
        types_json = _json.dumps(types, "task types", max_bytes=None)
        self._run(
            "register_task_types",
            lambda cur: cur.execute(_sql.REGISTER_TASK_TYPES, (queue, types_json, version)),
            retry=True,
            queue=queue,
        )

    # -- spawning ---------------------------------------------------------------

    def spawn_task(
        self,
        queue: str,
        task_name: str,
        params: Any = None,
        *,
        headers: Mapping[str, Any] | None = None,
        retry_strategy: Any = None,
        max_attempts: int | None = None,
        cancellation: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
        available_at: datetime | None = None,
        notify_done: bool = False,
        priority: int | None = None,
        concurrency_key: str | None = None,
        rate_limit_key: str | None = None,
        conn: Any = None,
    ) -> SpawnResult:
        """Enqueue a task; with `conn=`, inside the caller's transaction (commits with it).

        Args:
            params: the task's JSON input.
            headers: JSON metadata (tracing ids and the like).
            retry_strategy: `Fixed`, `Exponential`, `NoRetry` or their dict form.
            max_attempts: attempts before the task fails for good; 0 is
                unlimited; None takes its registered task type's, else the
                queue's default (25 unless `set_queue_options` changed it).
            cancellation: `{"max_delay": s, "max_duration": s}` (either or both).
            idempotency_key: queue-wide; a repeat returns the existing task, `created=False`.
            available_at: an aware datetime before which the task is not claimed.
            notify_done: announce the terminal state on `teguh_done` (wakes `wait_for_result`).
            priority: higher is claimed first (default 0).
            concurrency_key: tasks of this type with the same key run at most
                the type's `key_concurrency` at once (default 1), across all
                workers (docs/flow-control.md).
            rate_limit_key: the type's `rate_limit` applies per key.

        Raises:
            InvalidQueueName, InvalidArgument, PayloadTooLarge: bad input (nothing written).
            TypeError: params or headers are not JSON serialisable.
            QueueNotFound: the queue does not exist.
        """
        queue = _validate.queue_name(queue)
        task_name = _validate.name(task_name, "task_name")
        params_json = _json.dumps(params, "params", max_bytes=self.max_payload_bytes)
        if _tracing.enabled():  # a spawn inside a traced request carries its traceparent
            headers = _tracing.with_traceparent(headers)
        if (
            headers is None
            and retry_strategy is None
            and max_attempts is None
            and cancellation is None
            and idempotency_key is None
            and available_at is None
            and notify_done is False
            and priority is None
            and concurrency_key is None
            and rate_limit_key is None
        ):
            # the common spawn: nothing to validate or encode, and a scalar result
            def spawn_plain(cur: Any) -> SpawnResult:
                cur.execute(_sql.SPAWN_PLAIN, (queue, task_name, params_json))
                return SpawnResult(str(cur.fetchone()[0]), None, 1, True)

            return self._run("spawn_task", spawn_plain, conn=conn, queue=queue)
        options = spawn_options(
            "",
            self.max_payload_bytes,
            headers=headers,
            retry_strategy=retry_strategy,
            max_attempts=max_attempts,
            cancellation=cancellation,
            idempotency_key=idempotency_key,
            available_at=available_at,
            notify_done=notify_done,
            priority=priority,
            concurrency_key=concurrency_key,
            rate_limit_key=rate_limit_key,
        )
        options_json = _json.dumps(options, "options", max_bytes=None)

        def spawn(cur: Any) -> SpawnResult:
            cur.execute(_sql.SPAWN_TASK, (queue, task_name, params_json, options_json))
            return _spawn_result(cur.fetchone())

        return self._run("spawn_task", spawn, conn=conn, queue=queue)

    def spawn_tasks(
        self, queue: str, items: Sequence[Mapping[str, Any]], *, conn: Any = None
    ) -> list[SpawnResult]:
        """Enqueue many tasks in one statement; results are in input order.

        Each item is a dict with `task_name`, optional `params`, and any keyword
        option of `spawn_task`.

        Raises:
            InvalidArgument: an item is malformed (nothing is written).
            QueueNotFound: the queue does not exist.
        """
        queue = _validate.queue_name(queue)
        if isinstance(items, (str, bytes, Mapping)) or not isinstance(items, Sequence):
            raise TypeError("items must be a list of dicts")
        items_json = self._spawn_tasks_json(items)
        if items_json is None:
            items_json = self._spawn_tasks_json_per_item(items)
        if items_json is None:
            return []

        def spawn(cur: Any) -> list[SpawnResult]:
            cur.execute(_sql.SPAWN_TASKS, (queue, items_json))
            return [_spawn_result(row) for row in cur.fetchall()]

        return self._run("spawn_tasks", spawn, conn=conn, queue=queue)

    def _spawn_tasks_json(self, items: Sequence[Mapping[str, Any]]) -> str | None:
        """The batch's JSON in one encoding, when every item is plain and the whole fits the limit.

        A batch no larger than the per-value limit cannot hold a value above it,
        so one encoding checks every item at once. Returns None to take the
        item-by-item path (options, an oversized batch, or an item to report).
        """
        # The items are encoded as they are, without a copy: a missing params
        # is null to the engine, as it is here.
        for item in items:
            if type(item) is not dict or not item.keys() <= _PLAIN_ITEM_KEYS:
                return None
            name = item.get("task_name")
            if type(name) is not str or not name.strip() or len(name) > 256:
                return None
        if not items:
            return None
        try:
            return _json.dumps(items, "items", max_bytes=self.max_payload_bytes)
        except (TypeError, ValueError):
            return None  # the per-item path names the item at fault

    def _spawn_tasks_json_per_item(self, items: Sequence[Mapping[str, Any]]) -> str | None:
        # The batch's JSON is built item by item, so each value is encoded
        # (and checked) once.
        parts: list[str] = []
        for index, item in enumerate(items):
            field = f"items[{index}]."
            if not isinstance(item, Mapping):
                raise TypeError(f"items[{index}] must be a dict, not {type(item).__name__}")
            unknown = sorted(set(item) - SPAWN_OPTIONS - {"task_name", "params"})
            if unknown:
                raise InvalidArgument(f"unknown key(s) {unknown} in items[{index}]")
            if "task_name" not in item:
                raise InvalidArgument(f"items[{index}] has no task_name")
            name = _json.dumps(_validate.name(item["task_name"], f"{field}task_name"), f"{field}task_name")
            params = _json.dumps(item.get("params"), f"{field}params", max_bytes=self.max_payload_bytes)
            text = f'{{"task_name":{name},"params":{params}'
            given = {k: v for k, v in item.items() if k in SPAWN_OPTIONS}
            if given:
                options = spawn_options(field, self.max_payload_bytes, **given)
                if options:
                    text += "," + _json.dumps(options, f"{field}options", max_bytes=None)[1:-1]
            parts.append(text + "}")
        if not parts:
            return None
        return "[" + ",".join(parts) + "]"

    # -- runs -------------------------------------------------------------------

    def claim_task(
        self,
        queue: str,
        worker_id: str,
        claim_timeout: float = DEFAULT_CLAIM_TIMEOUT,
        qty: int = 1,
        *,
        conn: Any = None,
    ) -> list[ClaimedRun]:
        """Lease up to `qty` ready tasks; an empty list when none is due.

        Args:
            claim_timeout: the lease in seconds (rounded up; 0 = never expires).

        Raises:
            InvalidArgument: qty < 1, a negative timeout or a blank worker id.
            QueueNotFound: the queue does not exist.

        Caveats: retried when the connection drops; a claim whose reply was lost
        leaves a lease that expires after `claim_timeout` and is then recovered.
        """
        queue = _validate.queue_name(queue)
        worker_id = _validate.name(worker_id, "worker_id")
        timeout = to_whole_seconds(claim_timeout, "claim_timeout")
        qty = _validate.integer(qty, "qty", minimum=1)
        if qty > MAX_CLAIM_QTY:
            raise InvalidArgument(f"qty must be at most {MAX_CLAIM_QTY}, not {qty}")

        def claim(cur: Any) -> list[ClaimedRun]:
            cur.execute(_sql.CLAIM_TASK, (queue, worker_id, timeout, qty))
            return [ClaimedRun(*row) for row in cur.fetchall()]

        return self._run("claim_task", claim, conn=conn, retry=True, queue=queue)

    def complete_run(self, queue: str, run_id: str, result: Any = None, *, conn: Any = None) -> None:
        """Complete a run's task with a JSON result; its lease ends.

        Raises:
            Cancelled: the task was cancelled. LeaseLost: the run no longer holds it.
            PayloadTooLarge: the result is over the size limit.
        """
        queue = _validate.queue_name(queue)
        run_id = _validate.task_uuid(run_id, "run_id")
        result_json = _json.dumps(result, "result", max_bytes=self.max_payload_bytes)
        self._run(
            "complete_run",
            lambda cur: cur.execute(_sql.COMPLETE_RUN, (queue, run_id, result_json)),
            conn=conn,
            queue=queue,
            run_id=run_id,
        )

    def fail_run(
        self,
        queue: str,
        run_id: str,
        reason: Any,
        retry_at: datetime | None = None,
        *,
        retryable: bool = True,
        conn: Any = None,
    ) -> None:
        """Fail a run: the task is retried per its strategy, or fails when out of attempts.

        Args:
            reason: JSON, by convention `{"type", "message", "traceback"}`. A reason
                over `max_payload_bytes` is not refused (the failure must be
                recorded): it is replaced by `{"type", "message", "truncated": true,
                "original_bytes"}`, the message holding the start of its JSON.
            retry_at: an aware datetime overriding the strategy's delay.
            retryable: False fails the task for good now, whatever attempts
                are left (`teguh.fail_run_non_retryable`; the stored reason gets
                `"non_retryable": true`).

        Raises:
            TypeError, InvalidArgument: the reason is not storable JSON.
            Cancelled: the task was cancelled. LeaseLost: the run no longer holds it.
        """
        queue = _validate.queue_name(queue)
        run_id = _validate.task_uuid(run_id, "run_id")
        reason_json = _json.dumps(reason, "reason", max_bytes=None)
        limit = self.max_payload_bytes
        if limit is not None and len(reason_json.encode("utf-8")) > limit:
            size = len(reason_json.encode("utf-8"))
            kind = reason.get("type") if isinstance(reason, dict) else None
            keep = max(limit // 8, 64)  # characters; at most 4 bytes each, well within the limit
            reason_json = _json.dumps(
                {
                    "type": kind if isinstance(kind, str) and len(kind) <= 200 else "Unknown",
                    "message": reason_json[:keep] + f"... [reason of {size} bytes cut]",
                    "truncated": True,
                    "original_bytes": size,
                },
                "reason",
                max_bytes=None,
            )
        when = None if retry_at is None else require_aware(retry_at, "retry_at")
        if not retryable:
            if when is not None:
                raise InvalidArgument("fail_run takes retry_at or retryable=False, not both")
            self._run(
                "fail_run_non_retryable",
                lambda cur: cur.execute(_sql.FAIL_RUN_NON_RETRYABLE, (queue, run_id, reason_json)),
                conn=conn,
                queue=queue,
                run_id=run_id,
            )
            return
        self._run(
            "fail_run",
            lambda cur: cur.execute(_sql.FAIL_RUN, (queue, run_id, reason_json, when)),
            conn=conn,
            queue=queue,
            run_id=run_id,
        )

    def snooze_run(self, queue: str, run_id: str, delay: Any, *, conn: Any = None) -> None:
        """End a run and put its task back to wait for `delay`, without using an attempt.

        The task's next run keeps the same attempt number and its `snoozes`
        count (`TaskResult.snoozes`) goes up by one (`teguh.snooze_run`).

        Args:
            delay: seconds or a timedelta (measured on the database clock), or
                an aware datetime.

        Raises:
            InvalidArgument: a negative delay or a naive datetime.
            Cancelled, LeaseLost: the run no longer holds the task.
        """
        queue = _validate.queue_name(queue)
        run_id = _validate.task_uuid(run_id, "run_id")
        if isinstance(delay, datetime):
            wake = require_aware(delay, "delay")
            statement, args = _sql.SNOOZE_RUN, (queue, run_id, wake)
        else:
            statement, args = _sql.SNOOZE_RUN_AFTER, (queue, run_id, to_seconds(delay, "delay"))
        self._run(
            "snooze_run", lambda cur: cur.execute(statement, args), conn=conn, queue=queue, run_id=run_id
        )

    def schedule_run(self, queue: str, run_id: str, wake_at: datetime, *, conn: Any = None) -> None:
        """End a run's lease and put its task to sleep until `wake_at` (aware datetime).

        Raises:
            Cancelled, LeaseLost: the run no longer holds the task.
        """
        queue = _validate.queue_name(queue)
        run_id = _validate.task_uuid(run_id, "run_id")
        wake = require_aware(wake_at, "wake_at")
        self._run(
            "schedule_run",
            lambda cur: cur.execute(_sql.SCHEDULE_RUN, (queue, run_id, wake)),
            conn=conn,
            queue=queue,
            run_id=run_id,
        )

    def sleep_run(
        self,
        queue: str,
        run_id: str,
        step_name: str,
        duration: Any = None,
        wake_at: datetime | None = None,
        *,
        conn: Any = None,
    ) -> tuple[bool, datetime]:
        """A durable sleep under a step name; returns (should_suspend, wake time).

        Exactly one of `duration` (seconds, fractional allowed, measured on the
        database clock) and `wake_at` is given. When the step already slept, its
        stored wake time is reused. When `should_suspend` is true the run's lease
        has ended and the task sleeps.

        Raises:
            InvalidArgument: both or neither of duration and wake_at, or a bad name.
            Cancelled, LeaseLost: the run no longer holds the task.
        """
        queue = _validate.queue_name(queue)
        run_id = _validate.task_uuid(run_id, "run_id")
        step_name = _validate.name(step_name, "step_name")
        if (duration is None) == (wake_at is None):
            raise InvalidArgument("give exactly one of duration and wake_at")
        seconds = None if duration is None else to_seconds(duration, "duration")
        wake = None if wake_at is None else require_aware(wake_at, "wake_at")

        def sleep(cur: Any) -> tuple[bool, datetime]:
            cur.execute(_sql.SLEEP_RUN, (queue, run_id, step_name, seconds, wake))
            row = cur.fetchone()
            return bool(row[0]), row[1]

        return self._run("sleep_run", sleep, conn=conn, queue=queue, run_id=run_id)

    def set_checkpoint(
        self,
        queue: str,
        task_id: str,
        step_name: str,
        state: Any,
        owner_run_id: str,
        extend_claim_by: Any = 0,
        *,
        conn: Any = None,
    ) -> None:
        """Store a step's JSON state for the task; optionally extend the run's lease.

        Args:
            extend_claim_by: the lease then runs this many seconds from now (rounded up),
                or at least nine tenths of that when it already did (the lease row is
                then not rewritten); 0 or None: no change.

        Raises:
            Cancelled, LeaseLost: `owner_run_id` no longer holds the task.
            PayloadTooLarge: the state is over the size limit.
        """
        queue = _validate.queue_name(queue)
        task_id = _validate.task_uuid(task_id, "task_id")
        step_name = _validate.name(step_name, "step_name")
        owner_run_id = _validate.task_uuid(owner_run_id, "owner_run_id")
        state_json = _json.dumps(state, "state", max_bytes=self.max_payload_bytes)
        extend = None
        if extend_claim_by is not None and to_seconds(extend_claim_by, "extend_claim_by") > 0:
            extend = to_whole_seconds(extend_claim_by, "extend_claim_by", positive=True)
        self._set_checkpoint_json(queue, task_id, step_name, state_json, owner_run_id, extend, conn=conn)

    def _set_checkpoint_json(
        self,
        queue: str,
        task_id: str,
        step_name: str,
        state_json: str,
        owner_run_id: str,
        extend: int | None,
        *,
        conn: Any = None,
    ) -> None:
        # `set_checkpoint` once its arguments are checked and the state encoded
        # (TaskContext.step encodes the result itself, for the value it returns).
        # On the pool, steps of other threads written at the same time share
        # one statement and one commit (teguh/_checkpoint_batch.py).
        if conn is not None:
            self._set_checkpoint_one(queue, task_id, step_name, state_json, owner_run_id, extend, conn=conn)
            return
        batcher = self.__dict__.get("_checkpoint_batcher")
        if batcher is None:
            # setdefault: two threads racing here agree on one batcher
            batcher = self.__dict__.setdefault(
                "_checkpoint_batcher", CheckpointBatcher(self._set_checkpoint_one, self._set_checkpoints_json)
            )
        batcher.write(queue, (task_id, step_name, state_json, owner_run_id), extend)

    def _set_checkpoint_one(
        self,
        queue: str,
        task_id: str,
        step_name: str,
        state_json: str,
        owner_run_id: str,
        extend: int | None,
        *,
        conn: Any = None,
    ) -> None:
        # one checkpoint, one statement (set_task_checkpoint_state)
        self._run(
            "set_checkpoint",
            lambda cur: cur.execute(
                _sql.SET_TASK_CHECKPOINT_STATE, (queue, task_id, step_name, state_json, owner_run_id, extend)
            ),
            conn=conn,
            queue=queue,
            task_id=task_id,
            run_id=owner_run_id,
        )

    def get_checkpoints(self, queue: str, task_id: str, run_id: str, *, conn: Any = None) -> dict[str, Any]:
        """The task's committed step states, by step name (timed-out waits and sleeps excluded).

        Raises:
            Cancelled, LeaseLost: the run no longer holds the task.
        """
        queue = _validate.queue_name(queue)
        task_id = _validate.task_uuid(task_id, "task_id")
        run_id = _validate.task_uuid(run_id, "run_id")

        def fetch(cur: Any) -> dict[str, Any]:
            cur.execute(_sql.GET_TASK_CHECKPOINT_STATES, (queue, task_id, run_id))
            return {name: state for name, state, status in cur.fetchall() if status == "committed"}

        return self._run(
            "get_checkpoints", fetch, conn=conn, retry=True, queue=queue, task_id=task_id, run_id=run_id
        )

    def await_event(
        self,
        queue: str,
        task_id: str,
        run_id: str,
        step_name: str,
        event_name: str,
        timeout: Any = None,
        *,
        conn: Any = None,
    ) -> tuple[bool, Any]:
        """Wait for an event under a step name; returns (should_suspend, payload).

        If the event was emitted, its payload is checkpointed and returned with
        should_suspend false. Otherwise a wait is recorded, the run's lease ends,
        and should_suspend is true.

        Args:
            timeout: seconds (rounded up) before the wait times out; None: never.

        Raises:
            EventTimeout: the step's wait timed out before the event came.
            Cancelled, LeaseLost: the run no longer holds the task.
        """
        queue = _validate.queue_name(queue)
        task_id = _validate.task_uuid(task_id, "task_id")
        run_id = _validate.task_uuid(run_id, "run_id")
        step_name = _validate.name(step_name, "step_name")
        event_name = _validate.name(event_name, "event_name")
        seconds = None if timeout is None else to_whole_seconds(timeout, "timeout")

        def wait(cur: Any) -> tuple[bool, Any, bool]:
            cur.execute(_sql.AWAIT_EVENT, (queue, task_id, run_id, step_name, event_name, seconds))
            return cur.fetchone()

        should_suspend, payload, timed_out = self._run(
            "await_event", wait, conn=conn, queue=queue, task_id=task_id, run_id=run_id
        )
        if timed_out:
            err = EventTimeout(
                f"event {event_name!r} was not emitted before the wait of step {step_name!r} timed out",
                queue=queue,
                task_id=task_id,
                run_id=run_id,
            )
            err.event_name = event_name
            err.step_name = step_name
            raise err
        return bool(should_suspend), payload

    def emit_event(
        self, queue: str, event_name: str, payload: Any = None, *, conn: Any = None
    ) -> EmitResult:
        """Emit an event (first write wins) and wake the tasks waiting for it.

        Events are per queue and kept until cleanup (the queue's TTL after the
        emit): a task that awaits the name later gets the first payload at
        once, so names should say what they are about (`approved:{user_id}`).

        Returns:
            An `EmitResult`, truthy when this emit was the first of the name:
            otherwise it says when the first one happened and whether its
            payload equals this one (a different payload is dropped).

        Raises:
            InvalidArgument: a blank or over-long name. PayloadTooLarge: payload over the limit.

        Caveats: when the connection drops after the database committed the
        emit, the call is retried and reports `first=False` (the emit it
        retried was the first); with `conn=`, `first` holds only if the
        caller's transaction commits.
        """
        queue = _validate.queue_name(queue)
        event_name = _validate.name(event_name, "event_name")
        payload_json = _json.dumps(payload, "payload", max_bytes=self.max_payload_bytes)

        def emit(cur: Any) -> EmitResult:
            cur.execute(_sql.EMIT_EVENT, (queue, event_name, payload_json))
            first, emitted_at, payload_unchanged = cur.fetchone()
            return EmitResult(bool(first), emitted_at, bool(payload_unchanged))

        return self._run("emit_event", emit, conn=conn, retry=True, queue=queue)

    def cancel_task(self, queue: str, task_id: str, *, children: bool = True, conn: Any = None) -> None:
        """Cancel a task that has not finished; a finished task is left as is.

        With `children` (the default), its unfinished child tasks (spawned
        with `ctx.spawn_task` or `ctx.map`, in any queue) are cancelled too,
        and theirs (docs/composition.md).

        Raises:
            TaskNotFound: no such task.
        """
        queue = _validate.queue_name(queue)
        task_id = _validate.task_uuid(task_id, "task_id")
        if not isinstance(children, bool):
            raise InvalidArgument(f"children must be True or False, not {children!r}")
        self._run(
            "cancel_task",
            lambda cur: cur.execute(_sql.CANCEL_TASK_CHILDREN, (queue, task_id, children)),
            conn=conn,
            retry=True,
            queue=queue,
            task_id=task_id,
        )

    def retry_task(
        self,
        queue: str,
        task_id: str,
        *,
        spawn_new: bool = False,
        max_attempts: int | None = None,
        conn: Any = None,
    ) -> SpawnResult:
        """Retry a failed or cancelled task, in place or (`spawn_new=True`) as a fresh copy.

        Args:
            max_attempts: the new limit, which must exceed the attempts made
                (default: one more attempt).

        Raises:
            InvalidArgument: the task is not failed or cancelled, or max_attempts is too low.
            TaskNotFound: no such task.
        """
        queue = _validate.queue_name(queue)
        task_id = _validate.task_uuid(task_id, "task_id")
        options: dict[str, Any] = {}
        if not isinstance(spawn_new, bool):
            raise TypeError("spawn_new must be a bool")
        if spawn_new:
            options["spawn_new"] = True
        if max_attempts is not None:
            options["max_attempts"] = _validate.integer(max_attempts, "max_attempts", minimum=1)
        options_json = _json.dumps(options, "options", max_bytes=None)

        def retry(cur: Any) -> SpawnResult:
            cur.execute(_sql.RETRY_TASK, (queue, task_id, options_json))
            return _spawn_result(cur.fetchone())

        return self._run("retry_task", retry, conn=conn, queue=queue, task_id=task_id)

    def extend_claim(self, queue: str, run_id: str, extend_by: Any, *, conn: Any = None) -> None:
        """Extend a run's lease to now + `extend_by` seconds (rounded up).

        Raises:
            InvalidArgument: extend_by <= 0.
            Cancelled: the task was cancelled. LeaseLost: the run no longer holds it.
        """
        queue = _validate.queue_name(queue)
        run_id = _validate.task_uuid(run_id, "run_id")
        seconds = to_whole_seconds(extend_by, "extend_by", positive=True)
        self._run(
            "extend_claim",
            lambda cur: cur.execute(_sql.EXTEND_CLAIM, (queue, run_id, seconds)),
            conn=conn,
            retry=True,
            queue=queue,
            run_id=run_id,
        )

    def extend_claims(
        self, queue: str, run_ids: Sequence[str], extend_by: Any, *, conn: Any = None
    ) -> dict[str, str]:
        """Extend several leases in one statement (the worker's heartbeat).

        Returns each run id's outcome: `ok`, `cancelled` or `lost`.

        Raises:
            InvalidArgument: extend_by <= 0 or a malformed id.
        """
        queue = _validate.queue_name(queue)
        ids = [_validate.task_uuid(run_id, "run_ids[]") for run_id in run_ids]
        seconds = to_whole_seconds(extend_by, "extend_by", positive=True)
        if not ids:
            return {}

        def extend(cur: Any) -> dict[str, str]:
            cur.execute(_sql.EXTEND_CLAIMS, (queue, ids, seconds))
            return {str(run_id): outcome for run_id, outcome in cur.fetchall()}

        return self._run("extend_claims", extend, conn=conn, retry=True, queue=queue)

    # -- the worker's calls (internal: their arguments are trusted) ---------------

    def _claim_runs(self, queue: str, worker_id: str, claim_timeout: float, qty: int) -> list[dict[str, Any]]:
        """Lease up to `qty` runs with their checkpoints (`teguh.claim_runs`), as dicts by column.

        `run_id` and `task_id` are strings. Retried when the connection drops,
        like `claim_task`.
        """

        def claim(cur: Any) -> list[dict[str, Any]]:
            cur.execute(_sql.CLAIM_RUNS, (queue, worker_id, claim_timeout, qty))
            return _sql.rows_as_dicts(cur)

        rows = self._run("claim_runs", claim, retry=True, queue=queue)
        for row in rows:
            row["run_id"] = str(row["run_id"])
            row["task_id"] = str(row["task_id"])
        return rows

    def _complete_runs(self, queue: str, run_ids: list[str], results: list[str]) -> dict[str, str]:
        """Complete runs in one statement (`teguh.complete_runs`); `results` are JSON texts.

        Returns each run id's outcome. Not retried here: the caller decides.
        """

        def complete(cur: Any) -> dict[str, str]:
            cur.execute(_sql.COMPLETE_RUNS, (queue, run_ids, results))
            return dict(cur.fetchall())

        return self._run("complete_runs", complete, queue=queue)

    def _fail_run_after(self, queue: str, run_id: str, reason_json: str, delay: float | None) -> None:
        """Fail a run, retrying after `delay` seconds on the database clock (None: its strategy's delay)."""
        self._run(
            "fail_run",
            lambda cur: cur.execute(_sql.FAIL_RUN_AFTER, (queue, run_id, reason_json, delay)),
            queue=queue,
            run_id=run_id,
        )

    def _fail_run_at(self, queue: str, run_id: str, reason_json: str, retry_at: datetime) -> None:
        """Fail a run, retrying at `retry_at` (an aware datetime) whatever the task's strategy says."""
        self._run(
            "fail_run",
            lambda cur: cur.execute(_sql.FAIL_RUN, (queue, run_id, reason_json, retry_at)),
            queue=queue,
            run_id=run_id,
        )

    def _fail_run_non_retryable(self, queue: str, run_id: str, reason_json: str) -> None:
        """Fail a run's task for good now (`teguh.fail_run_non_retryable`)."""
        self._run(
            "fail_run_non_retryable",
            lambda cur: cur.execute(_sql.FAIL_RUN_NON_RETRYABLE, (queue, run_id, reason_json)),
            queue=queue,
            run_id=run_id,
        )

    def _release_run(self, queue: str, run_id: str) -> None:
        """Hand a claimed task back, ready at once on the database clock (the worker's shutdown).

        Raises:
            Cancelled, LeaseLost: the run no longer holds the task.
        """
        self._run(
            "release",
            lambda cur: cur.execute(_sql.RELEASE_RUN, (queue, run_id)),
            queue=queue,
            run_id=run_id,
        )

    def _seconds_until_due(self, queue: str) -> float | None:
        """Seconds until something in the queue falls due (negative: overdue), or None when nothing will.

        Measured on the database clock. Retried when the connection drops;
        raises otherwise (the worker logs and polls).
        """
        return self._run(
            "next_due", lambda cur: scalar(cur, _sql.SECONDS_UNTIL_DUE, queue), retry=True, queue=queue
        )

    # -- results and time -------------------------------------------------------

    def get_task_result(self, queue: str, task_id: str, *, conn: Any = None) -> TaskResult:
        """A task's state, attempts, result and last failure.

        Raises:
            TaskNotFound: no such task.
        """
        queue = _validate.queue_name(queue)
        task_id = _validate.task_uuid(task_id, "task_id")

        def fetch(cur: Any) -> TaskResult:
            cur.execute(_sql.GET_TASK_RESULT, (queue, task_id))
            row = cur.fetchone()
            if row is None:
                message = f"task {task_id} not found in queue {queue!r}"
                raise TaskNotFound(message, queue=queue, task_id=task_id)
            return TaskResult(str(row[0]), *row[1:])

        return self._run("get_task_result", fetch, conn=conn, retry=True, queue=queue, task_id=task_id)

    def wait_for_result(self, queue: str, task_id: str, timeout: Any = None) -> TaskResult:
        """Block until the task is completed, failed or cancelled, and return its result.

        Listens on `teguh_done` on a dedicated connection (instant for tasks spawned
        with `notify_done=True`) and polls with backoff from 50 ms to 1 s, so it
        works for every task. A lost LISTEN connection is replaced (polling covers
        the gap, and the task is looked up again as soon as it is back).

        Args:
            timeout: seconds (or timedelta) to wait at most; None waits forever.

        Raises:
            TimeoutError: the task did not finish in time.
            TaskNotFound: no such task.
        """
        queue = _validate.queue_name(queue)
        task_id = _validate.task_uuid(task_id, "task_id")
        deadline = None if timeout is None else time.monotonic() + to_seconds(timeout, "timeout")
        wanted = f"{queue}:{task_id}"
        # read at call time: tests change the module's intervals
        polling = Backoff(POLL_MIN_INTERVAL, POLL_MAX_INTERVAL)
        with ListenWaiter(
            self.listen_dsn, [DONE_CHANNEL], log=logger, application_name=self.application_name
        ) as listener:
            # LISTEN before the first look, so a completion in between is not missed
            listener.connect()
            polls = 0
            while True:
                result = self.get_task_result(queue, task_id)
                if result.done:
                    return result
                now = time.monotonic()
                if deadline is not None and now >= deadline:
                    raise TimeoutError(f"task {task_id} in queue {queue!r} did not finish within {timeout} s")
                polls += 1
                next_poll = now + polling.delay(polls)
                if deadline is not None:
                    next_poll = min(next_poll, deadline)
                while True:  # wait for our notification, a reconnect or the next poll
                    why = listener.wait(max(next_poll - time.monotonic(), 0))
                    if why == DISCONNECTED:
                        continue  # the next wait reconnects, or waits out the poll interval
                    if why != NOTIFIED or any(p.lower() == wanted for p in listener.payloads):
                        break

    def database_time(self, offset_seconds: float = 0.0) -> datetime:
        """The database clock (`teguh.current_time()`) plus `offset_seconds`, as an aware datetime.

        Every time in teguh is measured on this clock, so "in n seconds" is
        `database_time(n)`, not the local clock plus n.
        """
        return self._run("now", lambda cur: scalar(cur, _sql.DATABASE_TIME, offset_seconds), retry=True)

    def _clock_timestamp(self) -> datetime:
        """The database's real wall clock, ignoring a fake time (no schema needed)."""
        return self._run("now", lambda cur: scalar(cur, _sql.CLOCK_TIMESTAMP), check_schema=False)

    def _get_task_info(self, queue: str, task_id: str) -> dict[str, Any] | None:
        """The task's row with its lease holder (`teguh.get_task_info`), None for an unknown queue or task.

        Neither argument is validated here: an invalid queue name is simply
        not found (the Django backend looks a task up in every queue it has).
        """

        def fetch(cur: Any) -> dict[str, Any] | None:
            cur.execute(_sql.GET_TASK_INFO, (queue, task_id))
            rows = _sql.rows_as_dicts(cur)
            return rows[0] if rows else None

        return self._run("get_result", fetch, retry=True, queue=queue, task_id=task_id)

    def next_due(self, queue: str, *, conn: Any = None) -> datetime | None:
        """When something in the queue next falls due (in the past if work is waiting), or None."""
        queue = _validate.queue_name(queue)
        return self._run(
            "next_due",
            lambda cur: scalar(cur, _sql.NEXT_DUE, queue),
            conn=conn,
            retry=True,
            queue=queue,
        )

    def ticker(self, queue: str | None = None, *, conn: Any = None) -> int:
        """Wake due sleepers and timed-out waits, recover expired leases; returns tasks made ready.

        Args:
            queue: one queue, or None for every queue.
        """
        if queue is not None:
            queue = _validate.queue_name(queue)
        return int(
            self._run(
                "ticker",
                lambda cur: scalar(cur, _sql.TICKER, queue),
                conn=conn,
                retry=True,
                queue=queue,
            )
        )

    def cleanup_tasks(
        self, queue: str, ttl: Any = None, limit: int | None = None, *, conn: Any = None
    ) -> int:
        """Delete terminal tasks finished more than `ttl` seconds ago (default: the queue's TTL).

        Returns how many tasks were deleted; their idempotency keys become free.
        """
        queue = _validate.queue_name(queue)
        seconds = None if ttl is None else to_whole_seconds(ttl, "ttl")
        lim = None if limit is None else _validate.integer(limit, "limit", minimum=1)
        return int(
            self._run(
                "cleanup_tasks",
                lambda cur: scalar(cur, _sql.CLEANUP_TASKS, queue, seconds, lim),
                conn=conn,
                queue=queue,
            )
        )


    def drain_connections(self) -> None:
        """Retire the pool's connections: each is replaced at its next checkout (or closed when returned).

        For session settings that must not outlive their purpose, like
        `teguh.testing.FakeClock`'s fake time.
        """
        self._pool.drain()

    # --- dashboard ---

    def _watch_queues(self, queues: Sequence[str], seconds: int = 60) -> None:
        """Mark `queues` as watched for `seconds` (0 to 3600): their completions notify teguh_watch.

        The dashboard's call, repeated while a page shows the queues; the
        engine's terminal transitions send `teguh_watch` '<queue>' only while
        a queue is watched, so a database without a dashboard pays nothing.
        """
        queues = [_validate.queue_name(q) for q in queues]
        if isinstance(seconds, bool) or not isinstance(seconds, int) or not 0 <= seconds <= 3600:
            raise InvalidArgument(f"watch seconds must be an int from 0 to 3600, not {seconds!r}")
        self._run("watch_queues", lambda cur: cur.execute(_sql.WATCH_QUEUES, (queues, seconds)), retry=True)

    # --- schedules ---

    def create_schedule(
        self,
        name: str,
        task_name: str,
        *,
        cron: str | None = None,
        every: Any = None,
        params: Any = None,
        timezone: str = "UTC",
        overlap: str = "allow",
        catch_up: str = "one",
        max_catch_up: int = 100,
        jitter: Any = 0,
        start_at: datetime | None = None,
        end_at: datetime | None = None,
        queue: str = "default",
        **spawn_options: Any,
    ) -> ScheduleInfo:
        """Create (or replace) a schedule that no app owns: workers never delete it (docs/schedules.md).

        Takes the arguments of `App.schedule`; `queue` is where its tasks go.
        Its first tick is the next one after now: nothing fires at creation.
        Replacing a schedule keeps its next tick unless the timetable changed.

        Raises:
            InvalidArgument: a bad definition (nothing written).
            QueueNotFound: the queue does not exist.
        """
        schedule = _schedules.define(
            name,
            task_name,
            cron=cron,
            every=every,
            params=params,
            timezone=timezone,
            overlap=overlap,
            catch_up=catch_up,
            max_catch_up=max_catch_up,
            jitter=jitter,
            start_at=start_at,
            end_at=end_at,
            queue=queue,
            max_bytes=self.max_payload_bytes,
            **spawn_options,
        )
        self._put_schedules(None, None, [schedule], prune=False, queues={schedule.name: queue})
        return next(s for s in self.list_schedules() if s.name == schedule.name)

    def delete_schedule(self, name: str) -> None:
        """Delete a schedule (its tasks stay). Raises `ScheduleNotFound`."""
        self._schedule_call("delete_schedule", _sql.DELETE_SCHEDULE, name)

    def pause_schedule(self, name: str) -> None:
        """Stop a schedule from firing until `resume_schedule`. Raises `ScheduleNotFound`."""
        self._schedule_call("pause_schedule", _sql.PAUSE_SCHEDULE, name)

    def resume_schedule(self, name: str) -> None:
        """Let a paused schedule fire again; its `catch_up` decides what fires for the paused window.

        Raises `ScheduleNotFound`.
        """
        self._schedule_call("resume_schedule", _sql.RESUME_SCHEDULE, name)

    def _schedule_call(self, what: str, statement: str, name: str) -> None:
        name = _validate.name(name, "schedule name")
        if not self._run(what, lambda cur: scalar(cur, statement, name)):
            raise ScheduleNotFound(f"no schedule named {name!r}")

    def list_schedules(self) -> list[ScheduleInfo]:
        """Every schedule of the database, by name."""

        def fetch(cur: Any) -> list[ScheduleInfo]:
            cur.execute(_sql.LIST_SCHEDULES)
            return [_schedules.info(row) for row in _sql.rows_as_dicts(cur)]

        return self._run("list_schedules", fetch, retry=True)

    def trigger_schedule(self, name: str) -> SpawnResult:
        """Spawn the schedule's task now, outside its timetable (its next tick does not move).

        The task's headers say `{"schedule": name, "scheduled_for": now, "trigger": true}`.
        Raises `ScheduleNotFound`.
        """
        name = _validate.name(name, "schedule name")

        def trigger(cur: Any) -> SpawnResult | None:
            cur.execute(_sql.TRIGGER_SCHEDULE, (name,))
            row = cur.fetchone()
            return None if row is None else _spawn_result(row)

        result = self._run("trigger_schedule", trigger)
        if result is None:
            raise ScheduleNotFound(f"no schedule named {name!r}")
        return result

    def _put_schedules(
        self,
        owner: str | None,
        version: str | None,
        schedules: Sequence[_schedules.Schedule],
        *,
        prune: bool,
        queues: Mapping[str, str],
        handled: Sequence[str] | None = None,
    ) -> str:
        """Upsert schedules (first ticks computed on the database clock); 'ok', or 'stale' (nothing written).

        `queues` maps each schedule's name to its queue. With `prune`, the
        owner's schedules not in `schedules` are deleted (only those of the
        `handled` tasks, when given).
        """
        now = self.database_time()
        items = [s.item(queues[s.name], now, self.max_payload_bytes) for s in schedules]
        items_json = _json.dumps(items, "schedules", max_bytes=None)
        tasks = None if handled is None else list(handled)
        return self._run(
            "put_schedules",
            lambda cur: scalar(cur, _sql.PUT_SCHEDULES, owner, version, items_json, prune, tasks),
        )

    def _fire_due_schedules(self, queues: Sequence[str] | None) -> tuple[float | None, int]:
        """Fire the due schedules of `queues` (None: all); returns (seconds until the next tick, failures).

        Each due row's ticks are computed here (`teguh.schedules.plan`) and
        fired in one `fire_schedule` call; a row another caller fired first is
        passed over. A schedule whose firing fails (its queue was dropped, say)
        is logged and counted, and the others still fire.
        """
        wanted = None if queues is None else list(queues)

        def due(cur: Any) -> list[dict[str, Any]]:
            cur.execute(_sql.DUE_SCHEDULES, (wanted,))
            return _sql.rows_as_dicts(cur)

        failures = 0
        for row in self._run("due_schedules", due, retry=True):
            try:
                ticks, following = _schedules.plan(row, row["now"])
            except Exception as exc:  # a row written by hand with a bad zone or expression
                failures += 1
                logger.warning("schedule %s: cannot compute its ticks (%s)", row["name"], exc)
                continue
            ticks_json = _json.dumps(ticks, "ticks", max_bytes=None)
            args = (row["name"], row["next_run_at"], ticks_json, following)

            def fire(cur: Any, args: tuple[Any, ...] = args) -> list[Any]:
                cur.execute(_sql.FIRE_SCHEDULE, args)
                return cur.fetchall()

            if _faults.ARMED is not None:
                _faults.hit("before_fire_schedule")
            try:
                fired = self._run("fire_schedule", fire)
            except TeguhError as exc:
                failures += 1
                logger.warning("schedule %s could not fire (%s)", row["name"], exc)
                continue
            if fired:
                if _faults.ARMED is not None:
                    _faults.hit("after_fire_schedule")
                logger.debug("schedule %s fired %d task(s)", row["name"], len(fired))
        seconds = self._run(
            "next_schedule_due", lambda cur: scalar(cur, _sql.SECONDS_UNTIL_SCHEDULE, wanted), retry=True
        )
        return seconds, failures

    def _next_schedule_at(self) -> datetime | None:
        """The earliest next tick of any active schedule, on the database clock (FakeClock walks to it)."""
        return self._run(
            "next_schedule_due", lambda cur: scalar(cur, _sql.NEXT_SCHEDULE_DUE, None), retry=True
        )

    # --- composition ---

    def _spawn_children(
        self,
        queue: str,
        parent_queue: str,
        parent_task_id: str,
        parent_run_id: str,
        items: Sequence[Mapping[str, Any]],
        *,
        conn: Any = None,
    ) -> list[SpawnResult]:
        """`spawn_tasks` for a running task: the tasks created are its children (TaskContext's spawns).

        Raises:
            InvalidArgument: an item is malformed (nothing is written).
            Cancelled, LeaseLost: `parent_run_id` no longer holds the parent.
        """
        queue = _validate.queue_name(queue)
        parent_queue = _validate.queue_name(parent_queue)
        parent_task_id = _validate.task_uuid(parent_task_id, "parent_task_id")
        parent_run_id = _validate.task_uuid(parent_run_id, "parent_run_id")
        if isinstance(items, (str, bytes, Mapping)) or not isinstance(items, Sequence):
            raise TypeError("items must be a list of dicts")
        items_json = self._spawn_tasks_json(items) or self._spawn_tasks_json_per_item(items)
        if items_json is None:
            return []

        def spawn(cur: Any) -> list[SpawnResult]:
            cur.execute(_sql.SPAWN_CHILDREN, (queue, parent_queue, parent_task_id, parent_run_id, items_json))
            return [_spawn_result(row) for row in cur.fetchall()]

        return self._run(
            "spawn_children",
            spawn,
            conn=conn,
            queue=parent_queue,
            task_id=parent_task_id,
            run_id=parent_run_id,
        )

    def _await_children(
        self,
        queue: str,
        task_id: str,
        run_id: str,
        step_name: str,
        children: Sequence[tuple[str, str]],
        timeout: int | None = None,
        *,
        conn: Any = None,
    ) -> tuple[bool, list[dict[str, Any]] | None, bool]:
        """A durable wait for children, as step `step_name` (TaskContext.wait_for, gather and map).

        `children` are (queue, task_id) pairs. Returns (should_suspend,
        outcomes, timed_out): outcomes is one `{"state", "result", "failure"}`
        per child, in order, once every child is terminal; with
        should_suspend the run has ended and the task sleeps until the last
        child ends (or `timeout` seconds pass).

        Raises:
            InvalidArgument: a task given is not a child of this task (nothing written).
            Cancelled, LeaseLost: the run no longer holds the task.
        """
        queue = _validate.queue_name(queue)
        task_id = _validate.task_uuid(task_id, "task_id")
        run_id = _validate.task_uuid(run_id, "run_id")
        step_name = _validate.name(step_name, "step_name")
        pairs = [[_validate.queue_name(q), _validate.task_uuid(t, "child task_id")] for q, t in children]
        seconds = None if timeout is None else to_whole_seconds(timeout, "timeout")
        payload = _json.dumps(pairs, "children", max_bytes=None)

        def wait(cur: Any) -> tuple[bool, Any, bool]:
            cur.execute(_sql.AWAIT_CHILDREN, (queue, task_id, run_id, step_name, payload, seconds))
            return cur.fetchone()

        should_suspend, outcomes, timed_out = self._run(
            "await_children", wait, conn=conn, queue=queue, task_id=task_id, run_id=run_id
        )
        return bool(should_suspend), outcomes, bool(timed_out)

    def _report_progress(
        self, queue: str, task_id: str, run_id: str, progress_json: str, *, conn: Any = None
    ) -> None:
        """Store a running task's progress (JSON text built by `TaskContext.report_progress`)."""
        self._run(
            "report_progress",
            lambda cur: cur.execute(_sql.REPORT_PROGRESS, (queue, task_id, run_id, progress_json)),
            conn=conn,
            queue=queue,
            task_id=task_id,
            run_id=run_id,
        )

    def get_progress(self, queue: str, task_id: str, *, conn: Any = None) -> dict[str, Any] | None:
        """The last progress a task reported with `ctx.report_progress`, or None.

        A dict with `done`, `total`, `message` and `updated_at` (an ISO
        timestamp of the database clock). Each report replaces the previous
        one; every report is announced on the `teguh_progress` channel as
        `'<queue>:<task_id>'`.

        Raises:
            TaskNotFound: no such task.
        """
        return self._get_task_links(queue, task_id, conn=conn)[0]

    def _get_task_links(
        self, queue: str, task_id: str, *, conn: Any = None
    ) -> tuple[dict[str, Any] | None, str | None, str | None]:
        """(progress, parent_task_id, parent_queue) of a task; for `TaskInfo` and `get_progress`.

        Raises:
            TaskNotFound: no such task.
        """
        queue = _validate.queue_name(queue)
        task_id = _validate.task_uuid(task_id, "task_id")

        def read(cur: Any) -> tuple[Any, Any, Any]:
            cur.execute(_sql.GET_TASK_PROGRESS, (queue, task_id))
            return cur.fetchone()

        progress, parent_id, parent_queue = self._run(
            "get_task_progress", read, conn=conn, retry=True, queue=queue, task_id=task_id
        )
        return progress, None if parent_id is None else str(parent_id), parent_queue

    # --- topics ---

    def bind(self, pattern: str, task_name: str, *, queue: str = "default", conn: Any = None) -> None:
        """Bind `pattern` to `task_name` on `queue`: every later matching `publish` spawns that task.

        Stored in the database (an existing binding is kept), so producers
        with no worker of their own (another service, the CLI) can bind too;
        `App.bind` is the same, registered by the app's workers when they
        start. `*` matches one dot-separated word, `#` zero or more.

        Raises:
            InvalidArgument: the pattern has an empty word or a wildcard inside
                a word (nothing written).
            QueueNotFound: the queue does not exist.
        """
        binding = {
            "pattern": check_pattern(pattern),
            "task_name": _validate.name(task_name, "task_name"),
            "queue": _validate.queue_name(queue),
        }
        self._bind_topics([binding], conn=conn)

    def _bind_topics(self, bindings: list[dict[str, str]], *, conn: Any = None) -> None:
        """Upsert topic bindings in one statement (a starting worker's call for its app's bindings)."""
        text = _json.dumps(bindings, "topic bindings", max_bytes=None)
        self._run("bind_topics", lambda cur: cur.execute(_sql.BIND_TOPICS, (text,)), conn=conn, retry=True)

    def unbind(self, pattern: str, task_name: str, *, queue: str = "default", conn: Any = None) -> bool:
        """Delete one binding; returns whether it existed.

        Workers never delete bindings (an older worker may still run the
        task during a deploy): a binding dropped from the code stays until
        it is unbound here (docs/composition.md, "Topics").
        """
        pattern = check_pattern(pattern)
        task_name = _validate.name(task_name, "task_name")
        queue = _validate.queue_name(queue)
        return bool(
            self._run(
                "unbind_topic",
                lambda cur: scalar(cur, _sql.UNBIND_TOPIC, pattern, task_name, queue),
                conn=conn,
                retry=True,
            )
        )

    def list_bindings(self, *, conn: Any = None) -> list[TopicBinding]:
        """Every stored topic binding, by pattern, task name and queue."""

        def fetch(cur: Any) -> list[TopicBinding]:
            cur.execute(_sql.LIST_TOPIC_BINDINGS)
            return [TopicBinding(p, t, q, c, u) for p, t, q, c, u in cur.fetchall()]

        return self._run("list_topic_bindings", fetch, conn=conn, retry=True)

    def publish(
        self, topic: str, params: Any = None, *, conn: Any = None, idempotency_key: str | None = None
    ) -> list[SpawnResult]:
        """Spawn one task per binding whose pattern matches `topic`, all in one transaction.

        With `conn=`, inside the caller's transaction: a rollback spawns
        nothing. A task bound by two matching patterns is spawned once.
        Results are in (queue, task name) order; no matching binding returns
        an empty list. With `idempotency_key`, each task gets the key
        `"<idempotency_key>:<task_name>"` in its queue, so publishing again
        with the key spawns nothing new (`created=False`).

        Raises:
            InvalidArgument: an empty word or a wildcard in the topic, a bad
                key (nothing written).
        """
        topic = check_topic(topic)
        if idempotency_key is not None:
            idempotency_key = _validate.name(idempotency_key, "idempotency_key")
        params_json = _json.dumps(params, "params", max_bytes=self.max_payload_bytes)

        def publish(cur: Any) -> list[SpawnResult]:
            cur.execute(_sql.PUBLISH, (topic, params_json, idempotency_key))
            return [_spawn_result(row[2:]) for row in cur.fetchall()]

        return self._run("publish", publish, conn=conn)

    # --- batches ---

    def spawn_batch(
        self,
        queue: str,
        task_name: str,
        items: Sequence[Any],
        *,
        on_failure: str = "continue",
        on_complete: str | None = None,
        conn: Any = None,
        **spawn_options: Any,
    ) -> Batch:
        """Spawn one `task_name` task per item (each item is that task's params) as one batch.

        One statement for the whole batch (50,000 items are fine); with
        `conn=`, inside the caller's transaction, so a rollback leaves
        nothing. `on_failure="fail_fast"` cancels the items still to run at
        the first item that fails for good; `"continue"` runs them all.
        `on_complete` names a task spawned once on `queue` when every item
        ended, with params `{batch_id, queue, task_name, state, total,
        completed, failed, cancelled}`. `spawn_options` are those of
        `spawn_task` (not `idempotency_key`), applied to every item.

        Raises:
            InvalidArgument: an unknown on_failure, no items, a bad option, or
                an on_complete task that no worker of the queue registered
                (checked when workers registered task types there).
            QueueNotFound: the queue does not exist.
            TypeError: an item is not JSON serialisable.
        """
        queue = _validate.queue_name(queue)
        task_name = _validate.name(task_name, "task_name")
        items_json, options_json = batch_request(
            items,
            on_failure=on_failure,
            on_complete=on_complete,
            max_bytes=self.max_payload_bytes,
            options=spawn_options,
        )

        def spawn(cur: Any) -> Batch:
            cur.execute(
                _sql.SPAWN_BATCH, (queue, task_name, items_json, options_json, on_failure, on_complete)
            )
            batch_id, task_ids = cur.fetchone()
            return Batch(str(batch_id), queue, task_name, tuple(task_ids))

        return self._run("spawn_batch", spawn, conn=conn, queue=queue)

    def get_batch(self, batch_id: str, *, conn: Any = None) -> BatchInfo:
        """A batch's counts (total, pending, running, completed, failed, cancelled), state and times.

        Raises:
            BatchNotFound: no such batch.
        """
        batch_id = _validate.task_uuid(batch_id, "batch_id")

        def fetch(cur: Any) -> BatchInfo:
            cur.execute(_sql.GET_BATCH, (batch_id,))
            row = cur.fetchone()
            if row is None:
                raise BatchNotFound(f"batch {batch_id} not found")
            return batch_info(row)

        return self._run("get_batch", fetch, conn=conn, retry=True)

    def batch_results(
        self,
        batch_id: str,
        *,
        limit: int = 100,
        after: str | None = None,
        state: str | None = None,
        conn: Any = None,
    ) -> list[BatchItem]:
        """A page of a batch's items (task id, state, attempts, result, failure), in task id order.

        Pass the last item's `task_id` as `after` for the next page (keyset
        paging: stable while items change state); `state` keeps only items in
        that state (`"failed"`: the failures). Items deleted by `cleanup_tasks`
        are no longer listed; the counts of `get_batch` keep them.

        Raises:
            BatchNotFound: no such batch.
            InvalidArgument: limit outside 1..1000, after not a task id, an unknown state.
        """
        batch_id = _validate.task_uuid(batch_id, "batch_id")
        lim = _validate.integer(limit, "limit", minimum=1)
        if lim > 1000:
            raise InvalidArgument(f"limit must be between 1 and 1000, not {limit!r}")
        after_id = None if after is None else _validate.task_uuid(after, "after")
        if state is not None and state not in TASK_STATES:
            raise InvalidArgument(f"state must be one of {', '.join(TASK_STATES)}, not {state!r}")

        def fetch(cur: Any) -> list[BatchItem]:
            cur.execute(_sql.BATCH_RESULTS, (batch_id, lim, after_id, state))
            return [batch_item(row) for row in cur.fetchall()]

        return self._run("batch_results", fetch, conn=conn, retry=True)

    def list_batches(
        self,
        queue: str | None = None,
        *,
        state: str | None = None,
        limit: int = 50,
        after: str | None = None,
        conn: Any = None,
    ) -> list[BatchInfo]:
        """Batches newest first, as `get_batch` returns them (of one queue, or of all).

        Pass the last batch's `id` as `after` for the next (older) page;
        `state` keeps only batches in that state.

        Raises:
            InvalidArgument: limit outside 1..1000, an unknown state, after not a batch id.
        """
        queue = None if queue is None else _validate.queue_name(queue)
        lim = _validate.integer(limit, "limit", minimum=1)
        if lim > 1000:
            raise InvalidArgument(f"limit must be between 1 and 1000, not {limit!r}")
        if state is not None and state not in BATCH_STATES:
            raise InvalidArgument(f"state must be one of {', '.join(BATCH_STATES)}, not {state!r}")
        after_id = None if after is None else _validate.task_uuid(after, "after")

        def fetch(cur: Any) -> list[BatchInfo]:
            cur.execute(_sql.LIST_BATCHES, (queue, state, lim, after_id))
            return [batch_info(row) for row in cur.fetchall()]

        return self._run("list_batches", fetch, conn=conn, retry=True)


    # --- operations (read side) ---

    def get_task(self, queue: str, task_id: str, *, conn: Any = None) -> TaskInfo:
        """Everything about one task: inputs, state, timestamps, lease, waits, steps and failed attempts.

        Reads the steps of any task, running or not (no lease needed), and the
        attempt history (the last 25 failed attempts: worker, start, end, reason).

        Raises:
            QueueNotFound: no such queue.
            TaskNotFound: no such task.
        """
        queue = _validate.queue_name(queue)
        task_id = _validate.task_uuid(task_id, "task_id")

        def fetch(cur: Any) -> TaskInfo:
            cur.execute(_sql.GET_TASK, (queue, task_id))
            return _ops.task_info(_sql.rows_as_dicts(cur)[0])

        return self._run("get_task", fetch, conn=conn, retry=True, queue=queue, task_id=task_id)

    def list_tasks(
        self,
        queue: str,
        *,
        state: str | None = None,
        task_name: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 50,
        after: str | None = None,
        conn: Any = None,
    ) -> list[TaskInfo]:
        """A page of a queue's tasks, newest first, optionally of one state and task name.

        `since` and `until` bound the enqueue time (`since <= enqueued_at <
        until`). For the next page pass the last task id of this one as
        `after`. Rows are light: `steps` and `attempt_history` are empty and
        `claimed_by`, `claimed_at` and `wait_step` None (`get_task` has them).

        Raises:
            InvalidArgument: an unknown state, a limit outside 1..1000, a naive datetime,
                a bad `after` id or an empty task name.
            QueueNotFound: no such queue.
        """
        queue = _validate.queue_name(queue)
        if state is not None and state not in TASK_STATES:
            raise InvalidArgument(f"state must be one of {', '.join(TASK_STATES)}, not {state!r}")
        if task_name is not None:
            task_name = _validate.name(task_name, "task_name")
        if since is not None:
            require_aware(since, "since")
        if until is not None:
            require_aware(until, "until")
        limit = _validate.integer(limit, "limit", minimum=1)
        if limit > MAX_LIST_LIMIT:
            raise InvalidArgument(f"limit must be at most {MAX_LIST_LIMIT}, not {limit}")
        if after is not None:
            after = _validate.task_uuid(after, "after")

        def fetch(cur: Any) -> list[TaskInfo]:
            cur.execute(_sql.LIST_TASKS, (queue, state, task_name, since, until, limit, after))
            return [_ops.task_info(row) for row in _sql.rows_as_dicts(cur)]

        return self._run("list_tasks", fetch, conn=conn, retry=True, queue=queue)

    def queue_stats(self, queue: str, *, conn: Any = None) -> QueueStats:
        """A queue's counts per state, its oldest waiting task's age, and recent completions and failures.

        Raises:
            QueueNotFound: no such queue.
        """
        queue = _validate.queue_name(queue)

        def fetch(cur: Any) -> QueueStats:
            cur.execute(_sql.QUEUE_STATS, (queue,))
            return _ops.queue_stats(queue, _sql.rows_as_dicts(cur)[0])

        return self._run("queue_stats", fetch, conn=conn, retry=True, queue=queue)

    def list_workers(self, *, conn: Any = None) -> list[WorkerInfo]:
        """The live workers (registered, and heartbeating within the last few beats), oldest first."""

        def fetch(cur: Any) -> list[WorkerInfo]:
            cur.execute(_sql.LIST_WORKERS)
            return [_ops.worker_info(row) for row in _sql.rows_as_dicts(cur)]

        return self._run("list_workers", fetch, conn=conn, retry=True)

    def _worker_heartbeat(
        self, instance_id: str, info: Mapping[str, Any], ttl: float, completed: Mapping[str, int] | None
    ) -> None:
        """Register a worker or refresh its registry row (the worker's start and heartbeat thread)."""
        info_json = _json.dumps(dict(info), "worker info")
        completed_json = None if not completed else _json.dumps(dict(completed), "completed counts")
        self._run(
            "worker_heartbeat",
            lambda cur: cur.execute(_sql.WORKER_HEARTBEAT, (instance_id, info_json, ttl, completed_json)),
        )

    def _unregister_worker(self, instance_id: str) -> None:
        """Delete a stopping worker's registry row."""
        self._run("unregister_worker", lambda cur: cur.execute(_sql.UNREGISTER_WORKER, (instance_id,)))

    # --- observability ---

    def queue_depth(self, queue: str, *, conn: Any = None) -> dict[str, int]:
        """How many of the queue's tasks are ready, running, scheduled and waiting for an event.

        `scheduled` counts sleeping, delayed and retry-waiting tasks. Finished
        tasks are not counted (that would read the whole task table): cheap
        enough for every metrics scrape (`teguh.queue_depth`, docs/metrics.md).

        Raises:
            QueueNotFound: the queue does not exist.
        """
        queue = _validate.queue_name(queue)

        def depth(cur: Any) -> dict[str, int]:
            cur.execute(_sql.QUEUE_DEPTH, (queue,))
            return {name: int(value) for name, value in _sql.rows_as_dicts(cur)[0].items()}

        return self._run("queue_depth", depth, conn=conn, queue=queue)

    # --- children listing ---

    def list_children(
        self, queue: str, task_id: str, *, limit: int = 50, after: str | None = None, conn: Any = None
    ) -> list[TaskInfo]:
        """A page of a task's child tasks, from every queue, oldest first.

        A parent's children may live on other queues: each row's `queue` says
        which. Rows are light, like `list_tasks`'s. For the next page pass the
        last task id of this one as `after`.

        Raises:
            InvalidArgument: a limit outside 1..1000 or a bad task id.
            QueueNotFound: no such queue.
            TaskNotFound: no such task in the queue.
        """
        queue = _validate.queue_name(queue)
        task_id = _validate.task_uuid(task_id, "task_id")
        limit = _validate.integer(limit, "limit", minimum=1)
        if limit > MAX_LIST_LIMIT:
            raise InvalidArgument(f"limit must be at most {MAX_LIST_LIMIT}, not {limit}")
        if after is not None:
            after = _validate.task_uuid(after, "after")

        def fetch(cur: Any) -> list[TaskInfo]:
            cur.execute(_sql.LIST_CHILDREN, (queue, task_id, limit, after))
            return [_ops.task_info(row) for row in _sql.rows_as_dicts(cur)]

        return self._run("list_children", fetch, conn=conn, retry=True, queue=queue, task_id=task_id)

    # --- step checkpoints, group commit ---

    def _set_checkpoints_json(
        self, queue: str, items: Sequence[tuple[str, str, str, str]], extend: int | None
    ) -> list[bool]:
        """Write many checkpoints (task_id, step_name, state_json, owner_run_id) of one queue at once.

        One statement and one commit (`set_task_checkpoint_states`); per item,
        in order, True when it was written (or already there) under its run's
        lease. An item that is not written is the caller's to retry alone.
        """
        task_ids = [it[0] for it in items]
        names = [it[1] for it in items]
        states = [it[2] for it in items]
        run_ids = [it[3] for it in items]

        def write(cur: Any) -> list[bool]:
            cur.execute(_sql.SET_TASK_CHECKPOINT_STATES, (queue, task_ids, names, states, run_ids, extend))
            oks = [False] * len(items)
            for i, ok in cur.fetchall():
                oks[i - 1] = bool(ok)
            return oks

        return self._run("set_checkpoints", write, queue=queue)


def _spawn_result(row: Any) -> SpawnResult:
    task_id, run_id, attempt, created = row
    return SpawnResult(str(task_id), None if run_id is None else str(run_id), attempt, bool(created))
