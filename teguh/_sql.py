"""Every statement teguh sends, named after the engine function it calls.

The one home for SQL text in the package: `Client` (and the CLI, the Django
integration, the test tools and the LISTEN code through it) runs these
constants instead of writing statements of its own, so changing an engine
function's signature means changing one line here, and
`tests/test_sql_home.py` checks that each `teguh.<function>(` named here is
defined in `teguh/schema/teguh.sql`.

Statements are psycopg2 paramstyle (`%s`) strings, except the few that put an
identifier in the statement (a LISTEN channel, a database name): those are
functions returning a `psycopg2.sql.Composed`, which quotes the identifier.
Nothing here runs a statement except `scalar`, whose errors (psycopg2's) reach
the caller unchanged.
"""

from __future__ import annotations

from typing import Any

from psycopg2 import sql as _pgsql

# -- schema and time ------------------------------------------------------------

VERSION = "select teguh.version()"
"""The installed schema's version (also the per-session check that the schema is there)."""

DATABASE_TIME = "select teguh.current_time() + make_interval(secs => %s::float8)"
"""The database clock (`teguh.fake_now` when set) plus an offset in seconds."""

CLOCK_TIMESTAMP = "select clock_timestamp()"
"""The database's real wall clock, ignoring `teguh.fake_now` (FakeClock's default start)."""

SET_FAKE_NOW = "select set_config('teguh.fake_now', %s, %s)"
"""Pin `teguh.current_time()` for the session (`is_local` true: for the transaction only)."""

# -- queues ---------------------------------------------------------------------

CREATE_QUEUE = "select teguh.create_queue(%s)"
DROP_QUEUE = "select teguh.drop_queue(%s)"
LIST_QUEUES = "select * from teguh.list_queues()"
SET_QUEUE_OPTIONS = "select teguh.set_queue_options(%s, %s::jsonb)"
GET_QUEUE_OPTIONS = "select * from teguh.get_queue_options(%s)"
PAUSE_QUEUE = "select teguh.pause_queue(%s)"
RESUME_QUEUE = "select teguh.resume_queue(%s)"

# -- task types -------------------------------------------------------------------

REGISTER_TASK_TYPES = "select teguh.register_task_types(%s, %s::jsonb, %s)"
"""A starting worker's upsert of its handlers' task types (one statement for all)."""

LIST_TASK_TYPES = "select * from teguh.list_task_types(%s)"
PAUSE_TASK_TYPE = "select teguh.pause_task_type(%s, %s)"
RESUME_TASK_TYPE = "select teguh.resume_task_type(%s, %s)"

# -- spawning and events --------------------------------------------------------

SPAWN_TASK = "select * from teguh.spawn_task(%s, %s, %s::jsonb, %s::jsonb)"
SPAWN_PLAIN = "select teguh.spawn_plain(%s, %s, %s::jsonb)"
"""A spawn without options: the new task's id alone (cheaper than spawn_task's table)."""
SPAWN_TASKS = "select * from teguh.spawn_tasks(%s, %s::jsonb)"
EMIT_EVENT = "select * from teguh.emit_event_first(%s, %s, %s::jsonb)"
"""Emit an event; one row (first, emitted_at, payload_unchanged) saying what this emit did."""

CANCEL_TASK = "select teguh.cancel_task(%s, %s::uuid)"
RETRY_TASK = "select * from teguh.retry_task(%s, %s::uuid, %s::jsonb)"

# -- runs -----------------------------------------------------------------------

CLAIM_TASK = "select * from teguh.claim_task(%s, %s, %s, %s)"
CLAIM_RUNS = "select * from teguh.claim_runs(%s, %s, %s, %s)"
"""The worker's claim: `claim_task`'s rows plus each task's checkpoints."""

COMPLETE_RUN = "select teguh.complete_run(%s, %s::uuid, %s::jsonb)"
COMPLETE_RUNS = "select run_id::text, outcome from teguh.complete_runs(%s, %s::uuid[], %s::jsonb[])"
"""The worker's batched completion: one (run_id, outcome) row per run."""

FAIL_RUN = "select teguh.fail_run(%s, %s::uuid, %s::jsonb, %s::timestamptz)"
FAIL_RUN_AFTER = (
    "select teguh.fail_run(%s, %s::uuid, %s::jsonb, teguh.current_time() + make_interval(secs => %s::float8))"
)
"""`fail_run` with the retry delay measured on the database clock (NULL: the task's strategy)."""

FAIL_RUN_NON_RETRYABLE = "select teguh.fail_run_non_retryable(%s, %s::uuid, %s::jsonb)"
"""Fail a run's task for good, whatever attempts are left (a handler's `NonRetryable`)."""

SNOOZE_RUN = "select teguh.snooze_run(%s, %s::uuid, %s::timestamptz)"
SNOOZE_RUN_AFTER = (
    "select teguh.snooze_run(%s, %s::uuid, teguh.current_time() + make_interval(secs => %s::float8))"
)
"""`snooze_run` with the delay measured on the database clock."""

SCHEDULE_RUN = "select teguh.schedule_run(%s, %s::uuid, %s::timestamptz)"
RELEASE_RUN = "select teguh.schedule_run(%s, %s::uuid, teguh.current_time())"
"""Hand a claimed task back, ready at once (the worker's shutdown)."""

SLEEP_RUN = "select * from teguh.sleep_run(%s, %s::uuid, %s, %s::double precision, %s::timestamptz)"
SET_TASK_CHECKPOINT_STATE = (
    "select teguh.set_task_checkpoint_state(%s, %s::uuid, %s, %s::jsonb, %s::uuid, %s::int)"
)
GET_TASK_CHECKPOINT_STATES = "select * from teguh.get_task_checkpoint_states(%s, %s::uuid, %s::uuid)"
AWAIT_EVENT = "select * from teguh.await_event(%s, %s::uuid, %s::uuid, %s, %s, %s::int)"
EXTEND_CLAIM = "select teguh.extend_claim(%s, %s::uuid, %s)"
EXTEND_CLAIMS = "select * from teguh.extend_claims(%s, %s::uuid[], %s)"

# -- results, timers, maintenance -----------------------------------------------

GET_TASK_RESULT = "select * from teguh.get_task_result(%s, %s::uuid)"
GET_TASK_INFO = "select * from teguh.get_task_info(%s, %s::uuid)"
"""A task's row with its lease holder and what it waits for (wake_at, awaited_event), or no row
(unknown queue or task); Django's results and `teguh task show`."""

NEXT_DUE = "select teguh.next_due(%s)"
SECONDS_UNTIL_DUE = "select extract(epoch from teguh.next_due(%s) - teguh.current_time())::float8"
"""Seconds until something in the queue falls due on the database clock (negative: overdue; NULL: nothing)."""

TICKER = "select teguh.ticker(%s::text)"
CLEANUP_TASKS = "select teguh.cleanup_tasks(%s, %s::int, %s::int)"
CRON_START = "select teguh.start()"
CRON_STOP = "select teguh.stop()"

# -- notifications ----------------------------------------------------------------

NOTIFY = "select pg_notify(%s, %s)"
"""Send a notification (the LISTEN probe's test message)."""

LIVENESS = "select 1"
"""A LISTEN connection's liveness check."""


def listen(channel: str) -> _pgsql.Composed:
    """`LISTEN <channel>`, the channel quoted as an identifier."""
    return _pgsql.SQL("listen {}").format(_pgsql.Identifier(channel))


def unlisten(channel: str) -> _pgsql.Composed:
    """`UNLISTEN <channel>`, the channel quoted as an identifier."""
    return _pgsql.SQL("unlisten {}").format(_pgsql.Identifier(channel))


# -- test databases ---------------------------------------------------------------


def create_database(name: str) -> _pgsql.Composed:
    """`CREATE DATABASE <name>` (teguh.testing's temporary databases)."""
    return _pgsql.SQL("create database {}").format(_pgsql.Identifier(name))


def drop_database(name: str) -> _pgsql.Composed:
    """`DROP DATABASE IF EXISTS <name> WITH (FORCE)`, closing its sessions."""
    return _pgsql.SQL("drop database if exists {} with (force)").format(_pgsql.Identifier(name))


# -- running ----------------------------------------------------------------------


def scalar(cur: Any, query: Any, *args: Any) -> Any:
    """Run a one-value query and return the value (None when there is no row)."""
    cur.execute(query, args)
    row = cur.fetchone()
    return None if row is None else row[0]


def rows_as_dicts(cur: Any) -> list[dict[str, Any]]:
    """The remaining rows of the cursor's result, each as a dict by column name."""
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


# --- dashboard ---

WATCH_QUEUES = "select teguh.watch_queues(%s::text[], %s::int)"
"""Mark queues as watched for some seconds: their completions then notify teguh_watch (teguh.dashboard)."""


# --- schedules ---

PUT_SCHEDULES = "select teguh.put_schedules(%s, %s, %s::jsonb, %s, %s::text[])"
"""Upsert schedules (owner, version, items, prune, handled); 'ok' or 'stale' (a later version owns them)."""

DELETE_SCHEDULE = "select teguh.delete_schedule(%s)"
PAUSE_SCHEDULE = "select teguh.pause_schedule(%s)"
RESUME_SCHEDULE = "select teguh.resume_schedule(%s)"
TRIGGER_SCHEDULE = "select * from teguh.trigger_schedule(%s)"
LIST_SCHEDULES = "select * from teguh.list_schedules()"

DUE_SCHEDULES = "select * from teguh.due_schedules(%s::text[])"
"""The due schedules of some queues (null: all) with the engine's now."""

FIRE_SCHEDULE = "select * from teguh.fire_schedule(%s, %s, %s::jsonb, %s)"
"""Fire one due schedule: (name, expected next_run_at, ticks JSON, next tick)."""

NEXT_SCHEDULE_DUE = "select teguh.next_schedule_due(%s::text[])"
SECONDS_UNTIL_SCHEDULE = (
    "select extract(epoch from teguh.next_schedule_due(%s::text[]) - teguh.current_time())::float8"
)
"""Seconds until the earliest tick of an active schedule of some queues (negative: overdue; null: none)."""

# --- composition ---

SPAWN_CHILDREN = "select * from teguh.spawn_children(%s, %s, %s::uuid, %s::uuid, %s::jsonb)"
"""Spawn tasks as children of a running task (their parent link set), in one statement."""

AWAIT_CHILDREN = "select * from teguh.await_children(%s, %s::uuid, %s::uuid, %s, %s::jsonb, %s::int)"
"""A durable wait for children: (should_suspend, outcomes, timed_out)."""

CANCEL_TASK_CHILDREN = "select teguh.cancel_task(%s, %s::uuid, %s::boolean)"
"""`cancel_task` saying whether the task's unfinished children are cancelled with it."""

REPORT_PROGRESS = "select teguh.report_progress(%s, %s::uuid, %s::uuid, %s::jsonb)"
GET_TASK_PROGRESS = "select * from teguh.get_task_progress(%s, %s::uuid)"
"""A task's last progress report and its parent link (progress, parent_task_id, parent_queue)."""


# --- topics ---

BIND_TOPICS = "select teguh.bind_topics(%s::jsonb)"
"""Upsert topic bindings (a starting worker's app bindings, or one `Client.bind`) in one statement."""

UNBIND_TOPIC = "select teguh.unbind_topic(%s, %s, %s)"
LIST_TOPIC_BINDINGS = "select * from teguh.list_topic_bindings()"
PUBLISH = "select * from teguh.publish(%s, %s::jsonb, %s)"
"""Spawn one task per binding matching the topic: one row (queue_name, task_name, spawn columns) each."""

# --- batches ---

SPAWN_BATCH = (
    "select batch_id, task_ids::text[] from teguh.spawn_batch(%s, %s, %s::jsonb, %s::jsonb, %s, %s)"
)
"""Spawn a batch; one row (batch_id, the items' task ids in input order)."""

GET_BATCH = "select * from teguh.get_batch(%s::uuid)"
"""A batch's counts, state and times; no row for an unknown batch."""

BATCH_RESULTS = "select * from teguh.batch_results(%s::uuid, %s, %s::uuid, %s)"
"""A page of a batch's items in task id order (keyset: after the given task id; optionally of one state)."""

LIST_BATCHES = "select * from teguh.list_batches(%s, %s, %s, %s::uuid)"
"""Batches newest first (of one queue or all; of one state), as GET_BATCH's rows, keyset by batch id."""

# --- operations (read side) ---

GET_TASK = "select * from teguh.get_task(%s, %s::uuid)"
"""One task in full: its row, lease, waits, steps and attempt history (`Client.get_task`)."""

LIST_TASKS = (
    "select * from teguh.list_tasks(%s, %s::text, %s::text, %s::timestamptz, %s::timestamptz, "
    "%s::int, %s::uuid)"
)
"""A page of tasks, newest first (`Client.list_tasks`)."""

QUEUE_STATS = "select * from teguh.queue_stats(%s)"
"""A queue's counts per state and recent throughput (`Client.queue_stats`)."""

WORKER_HEARTBEAT = "select teguh.worker_heartbeat(%s::uuid, %s::jsonb, %s::float8, %s::jsonb)"
"""A worker's registration and each of its heartbeats (the worker registry)."""

UNREGISTER_WORKER = "select teguh.unregister_worker(%s::uuid)"
"""A cleanly stopping worker removes its registry row."""

LIST_WORKERS = "select * from teguh.list_workers()"
"""The live workers of the registry (`Client.list_workers`)."""
# --- observability ---------------------------------------------------------------

QUEUE_DEPTH = "select * from teguh.queue_depth(%s)"

# --- children listing ---

LIST_CHILDREN = "select * from teguh.list_children(%s, %s::uuid, %s::int, %s::uuid)"
"""A page of a task's children from every queue, oldest first (`Client.list_children`)."""

# --- step checkpoints, group commit ---

SET_TASK_CHECKPOINT_STATES = (
    "select i, ok from teguh.set_task_checkpoint_states("
    "%s, %s::uuid[], %s::text[], %s::jsonb[], %s::uuid[], %s::int)"
)
"""Many steps' checkpoints in one statement and one commit (`teguh._checkpoint_batch`)."""
