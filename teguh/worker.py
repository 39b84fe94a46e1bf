"""The worker: claims runs of one queue and executes their handlers in threads.

One main loop claims batches sized to the free slots and hands them to a
`ThreadPoolExecutor`. When there is nothing to claim it waits on its LISTEN
connection for the earliest of a notification, `poll_interval`, the queue's
next due moment (read from the database, so sleeps, event timeouts and
expired leases are picked up on time without a ticker) and the end of one of
its own runs. A heartbeat thread extends all its leases in one statement per
tick, and a completer thread commits finished runs in batches.
"""

from __future__ import annotations

import collections
import logging
import os
import queue as queue_module
import signal
import socket
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import psycopg2
import tenacity

from . import _faults, _json, _validate
from ._listen_probe import open_listener
from .context import RunState, TaskContext
from .errors import (
    Cancelled,
    ConnectionLost,
    LeaseLost,
    PermissionDenied,
    QueueNotFound,
    Suspended,
    TeguhError,
    error_message,
)
from .heartbeat import Heartbeat
from .listener import QueueListener

if TYPE_CHECKING:
    from .app import App
    from .client import Client

logger = logging.getLogger("teguh.worker")

DEFAULT_CONCURRENCY = 10
"""Handlers run at once by one worker."""

DEFAULT_CLAIM_TIMEOUT = 30
"""Seconds a lease lasts without a heartbeat; after that another worker may take the task."""

DEFAULT_POLL_INTERVAL = 30.0
"""The longest an idle worker waits without hearing from the database."""

DEFAULT_SHUTDOWN_TIMEOUT = 30.0
"""Seconds a stopping worker lets running handlers finish before releasing their tasks."""

MAX_HEARTBEAT_INTERVAL = 10.0
MIN_IDLE_WAIT = 0.005
"""The shortest idle wait, so a due moment in the past cannot make the loop spin."""

COMPLETION_RETRY_SECONDS = 60.0
"""How long a completion or failure is retried while the database is unreachable."""

EXIT_STUCK = 3
"""`Worker.exit_code` (and the CLI's exit status) after a stop forced by stuck handlers."""

UNKNOWN_TASK_RETRY_SECONDS = 60.0
"""Delay before a task with no handler here is offered again (another deploy may know it)."""

DEFAULT_BACKOFF_BASE = 1.0
DEFAULT_BACKOFF_MAX = 300.0
"""A task spawned without a retry strategy is retried after 1 s, 2 s, 4 s ... up to 5 min.

Without it, a handler that always fails would be retried in a hot loop. An
explicit `NoRetry()` strategy still retries at once.
"""


def default_worker_id() -> str:
    """`hostname:pid`, which names the process holding a lease."""
    return f"{socket.gethostname()}:{os.getpid()}"


class _Run:
    """A claimed run in this worker: its inputs, its context state and its logger."""

    __slots__ = ("flagged_at", "log", "row", "running", "started", "state")

    def __init__(self, row: dict[str, Any], queue: str) -> None:
        self.row = row
        self.state = RunState()
        self.started = time.monotonic()
        self.running = False
        """Set when a thread starts the handler (prefetched runs are not running)."""
        self.flagged_at: float | None = None
        """When the worker first saw the run lost or cancelled while its handler ran."""
        self.log = logging.LoggerAdapter(
            logger,
            {
                "queue": queue,
                "task_id": row["task_id"],
                "run_id": row["run_id"],
                "attempt": row["attempt"],
                "task_name": row["task_name"],
            },
        )

    @property
    def run_id(self) -> str:
        return self.row["run_id"]


TRANSIENT_SQLSTATES = frozenset({"40P01", "40001"})
"""Deadlock and serialization failure: the transaction was rolled back and may be repeated."""


def _transient(exc: BaseException) -> bool:
    if isinstance(exc, ConnectionLost):
        return True
    cause = exc.__cause__ if isinstance(exc, TeguhError) else exc
    return getattr(cause, "pgcode", None) in TRANSIENT_SQLSTATES


MAX_FAILURE_MESSAGE_CHARS = 8 * 1024
"""A failure reason's `message` is cut to this many characters (the cut is marked)."""

MAX_FAILURE_TRACEBACK_CHARS = 64 * 1024
"""A failure reason's `traceback` keeps this many characters: its start and its end.

A failure is always recorded: an oversized, unprintable or unencodable
exception is truncated or escaped, never a reason to lose the failure.
"""


def _clean_text(text: str, limit: int, *, keep_tail: bool = False) -> str:
    """Make `text` storable in jsonb and at most about `limit` characters long.

    NUL becomes the two characters `\\0`, lone surrogates are backslash-escaped;
    an over-long text keeps its start (and its end with `keep_tail`) around a marker.
    """
    if "\x00" in text:
        text = text.replace("\x00", "\\0")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    if len(text) <= limit:
        return text
    cut = len(text) - limit
    if keep_tail:
        head = limit // 4
        return f"{text[:head]}\n... [{cut} characters cut] ...\n{text[head + cut :]}"
    return f"{text[:limit]}... [{cut} characters cut]"


def _safe_str(exc: BaseException) -> str:
    try:
        text = str(exc)
    except BaseException as err:  # a broken __str__ must not lose the failure
        return f"<str() of the exception failed: {type(err).__name__}>"
    return text if isinstance(text, str) else repr(text)


def _reason(exc: BaseException) -> dict[str, Any]:
    """The failure reason stored for an exception: its type, message and traceback.

    Never raises, and the result always encodes as JSON: messages and
    tracebacks are truncated (MAX_FAILURE_MESSAGE_CHARS, MAX_FAILURE_TRACEBACK_CHARS)
    and cleaned of what jsonb cannot store.
    """
    try:
        trace = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    except BaseException as err:  # e.g. RecursionError on a pathological cause chain
        trace = f"<the traceback could not be formatted: {type(err).__name__}>"
    return {
        "type": _clean_text(type(exc).__name__, 200),
        "module": _clean_text(type(exc).__module__, 400),  # with "type": the import path (django.tasks)
        "message": _clean_text(_safe_str(exc), MAX_FAILURE_MESSAGE_CHARS),
        "traceback": _clean_text(trace, MAX_FAILURE_TRACEBACK_CHARS, keep_tail=True),
    }


class Worker:
    """Runs the handlers of an `App` for the tasks of one queue.

    Args:
        app: the app whose handlers run.
        queue: the queue to work on (created if missing).
        concurrency: handlers run at once (threads).
        claim_timeout: lease length in seconds; 0 means leases never expire
            (and no heartbeat runs).
        heartbeat_interval: seconds between lease extensions; default and
            maximum `min(10, claim_timeout / 3)`.
        poll_interval: the longest idle wait, in seconds.
        batch_size: the most runs claimed at once (default: `concurrency + prefetch`).
        prefetch: runs claimed ahead of free slots, so the next batch is at hand
            when handlers finish (default: `concurrency`). Prefetched runs hold
            leases; a stopping worker hands them back at once. Use 0 for long
            tasks on many workers, so no task waits behind a busy worker.
        worker_id: names this worker on its leases (default `hostname:pid`).
        max_stuck_runs: how many handlers may keep running after their run was
            lost or cancelled (for longer than `claim_timeout`) before the
            worker stops with `exit_code` 3 so its supervisor restarts it;
            default half the slots, rounded up; 0 never stops.
        shutdown_timeout: seconds a stop waits for running handlers.
        install_signal_handlers: let `run()` handle SIGTERM/SIGINT when it runs
            in the main thread.
        client: the `Client` to use (default: one sized for `concurrency`,
            on the app's database).
        listen_dsn: where the LISTEN connection goes (default: the client's
            `listen_dsn`, i.e. `TEGUH_LISTEN_DSN`, else its DSN). Point it at
            PostgreSQL directly when the pool goes through PgBouncer in
            transaction mode; at start the worker checks that a notification
            arrives and otherwise polls every `poll_interval`, with a warning.

    Caveats: Python cannot stop a thread. The heartbeat keeps the leases of
    every running handler, hung or not; a run is lost only when the process
    stops heartbeating (paused, partitioned, GIL held) or the task is
    cancelled (by hand or by its `max_duration`). A handler that keeps running
    after that keeps its thread and slot: its writes are refused (`LeaseLost`,
    `Cancelled`) and it is counted as stuck; past `max_stuck_runs` the worker
    stops (see docs/reliability.md).
    """

    def __init__(
        self,
        app: App,
        queue: str,
        *,
        concurrency: int = DEFAULT_CONCURRENCY,
        claim_timeout: int = DEFAULT_CLAIM_TIMEOUT,
        heartbeat_interval: float | None = None,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        batch_size: int | None = None,
        prefetch: int | None = None,
        worker_id: str | None = None,
        max_stuck_runs: int | None = None,
        shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT,
        install_signal_handlers: bool = True,
        client: Client | None = None,
        listen_dsn: str | None = None,
    ) -> None:
        self.app = app
        self.queue = _validate.queue_name(queue)
        self.concurrency = _validate.integer(concurrency, "concurrency", minimum=1)
        self.claim_timeout = _validate.integer(claim_timeout, "claim_timeout", minimum=0)
        if poll_interval is None or poll_interval <= 0:
            raise ValueError(f"poll_interval must be > 0 seconds, not {poll_interval!r}")
        self.poll_interval = float(poll_interval)
        self.prefetch = _validate.integer(
            self.concurrency if prefetch is None else prefetch, "prefetch", minimum=0
        )
        self.batch_size = _validate.integer(
            batch_size or self.concurrency + self.prefetch, "batch_size", minimum=1
        )
        self.worker_id = _validate.name(worker_id or default_worker_id(), "worker_id")
        self.max_stuck_runs = _validate.integer(
            -(-self.concurrency // 2) if max_stuck_runs is None else max_stuck_runs,
            "max_stuck_runs",
            minimum=0,
        )
        if shutdown_timeout is None or shutdown_timeout < 0:
            raise ValueError(f"shutdown_timeout must be >= 0 seconds, not {shutdown_timeout!r}")
        self.shutdown_timeout = float(shutdown_timeout)
        self.install_signal_handlers = install_signal_handlers
        ceiling = min(MAX_HEARTBEAT_INTERVAL, self.claim_timeout / 3)
        if heartbeat_interval is None:
            self.heartbeat_interval = ceiling
        elif heartbeat_interval <= 0:
            raise ValueError(f"heartbeat_interval must be > 0 seconds, not {heartbeat_interval!r}")
        elif heartbeat_interval > ceiling and self.claim_timeout > 0:
            logger.warning(
                "heartbeat_interval %.1f s is too long for claim_timeout %d s; using %.1f s",
                heartbeat_interval,
                self.claim_timeout,
                ceiling,
            )
            self.heartbeat_interval = ceiling
        else:
            self.heartbeat_interval = float(heartbeat_interval)
        self._client = client
        self._owns_client = client is None
        self.listen_dsn = listen_dsn

        self._runs: dict[str, _Run] = {}
        self._buffer: collections.deque[_Run] = collections.deque()
        self._active = 0
        self._lock = threading.Condition()
        self._stopping = False
        self._force = False
        self._ran = False
        self._listener: QueueListener | None = None
        self._completions: queue_module.Queue[tuple[_Run, str] | None] = queue_module.Queue()
        self.started = threading.Event()
        """Set once the worker listens and claims (tests and embedders wait on it)."""
        self.processed = 0
        """Runs that ended in this worker (completed, failed, suspended or cancelled)."""
        self.stuck_handlers = 0
        """Handlers still running when `run()` returned (their tasks were released)."""
        self.exit_code = 0
        """0 after a requested stop; `EXIT_STUCK` (3) when too many handlers were stuck."""

    # -- public -------------------------------------------------------------

    @property
    def client(self) -> Client:
        """The client the worker talks through."""
        if self._client is None:
            from .client import Client

            self._client = Client(
                self.app.client.dsn,
                max_connections=self.concurrency + 4,
                application_name=f"teguh-worker:{self.queue}",
            )
            self._client.max_payload_bytes = self.app.client.max_payload_bytes
            # a call blocked longer than a lease is pointless: the lease is gone
            self._client.call_timeout = min(max(10.0, float(self.claim_timeout)), 60.0)
            self._client.session_hooks = self.app.client.session_hooks  # shared: a fake clock reaches both
        return self._client

    @property
    def listener_pid(self) -> int | None:
        """The server pid of the LISTEN connection, when connected."""
        return self._listener.backend_pid if self._listener is not None else None

    def stop(self, *, force: bool = False) -> None:
        """Stop claiming and return from `run()` once running handlers finish.

        Handlers get `shutdown_timeout` seconds; what is still running after
        that (at once with `force`) is released so another worker can take it
        immediately. Safe to call from any thread or a signal handler.
        """
        self._stopping = True
        if force:
            self._force = True
        if self._listener is not None:
            self._listener.wake()

    def run(self) -> None:
        """Claim and run tasks until `stop()` (or SIGTERM/SIGINT in the main thread)."""
        if self._ran:
            raise RuntimeError("a Worker runs once; create a new one")
        self._ran = True
        restore = self._install_signals()
        client = self.client
        executor = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix=f"teguh-{self.queue}")
        heartbeat = None
        completer = threading.Thread(
            target=self._complete_loop, name=f"teguh-completer-{self.queue}", daemon=True
        )
        try:
            self._ensure_queue(client)
            # LISTEN may need a direct connection when the pool goes through PgBouncer
            listen_dsn = self.listen_dsn or (self.app.client if self._owns_client else client).listen_dsn
            self._listener = open_listener(client, self.queue, listen_dsn, self.poll_interval)
            if self._stopping:
                self._listener.wake()
            if self.claim_timeout > 0:
                heartbeat = Heartbeat(
                    client,
                    self.queue,
                    self.claim_timeout,
                    self.heartbeat_interval,
                    self._run_states,
                    on_tick=self._check_stuck,
                )
                heartbeat.start()
            completer.start()
            logger.info(
                "worker %s started on queue %s (concurrency %d)",
                self.worker_id,
                self.queue,
                self.concurrency,
                extra={"queue": self.queue},
            )
            self.started.set()
            self._loop(executor)
        finally:
            self._shutdown(executor, heartbeat, completer)
            restore()

    def _ensure_queue(self, client: Client) -> None:
        """Create the queue, or, for a role not allowed to (a `grant_worker` role), check it exists."""
        try:
            client.create_queue(self.queue)
        except PermissionDenied:
            if self.queue not in client.list_queues():
                raise QueueNotFound(
                    f"queue {self.queue!r} does not exist, and this role may not create it: "
                    "create it with a role that may (`teguh queue create`)",
                    queue=self.queue,
                ) from None
            logger.debug("this role may not create queues; queue %s exists", self.queue)

    # -- main loop ----------------------------------------------------------

    def _loop(self, executor: ThreadPoolExecutor) -> None:
        assert self._listener is not None
        failures = 0
        while not self._stopping:
            free = self._start_buffered(executor)
            want = free + self.prefetch - len(self._buffer)
            got_all = False
            if want > 0:
                qty = min(want, self.batch_size)
                try:
                    rows = self._claim(qty)
                except Exception as exc:  # a bad row (say, undecodable JSON) must not end the worker
                    failures += 1
                    delay = min(5.0, 0.1 * 2 ** min(failures, 6))
                    logger.warning("claim failed (%s); retrying in %.1f s", error_message(exc), delay)
                    self._listener.wait(delay)
                    continue
                failures = 0
                if rows and _faults.ARMED is not None:
                    _faults.hit("after_claim")
                self._hold(rows)
                got_all = len(rows) == qty
                free = self._start_buffered(executor)
                if got_all and (free > 0 or len(self._buffer) < self.prefetch):
                    continue  # the queue had more and there is room: claim again now
            timeout = self.poll_interval
            if not got_all and free > 0:
                due = self._seconds_until_due()
                if due is not None:
                    timeout = min(timeout, max(due, MIN_IDLE_WAIT))
            self._listener.wait(timeout)

    def _hold(self, rows: list[dict[str, Any]]) -> None:
        """Register claimed runs (their leases are heartbeated from now on) and buffer them."""
        with self._lock:
            for row in rows:
                run = _Run(row, self.queue)
                self._runs[run.run_id] = run
                self._buffer.append(run)

    def _start_buffered(self, executor: ThreadPoolExecutor) -> int:
        """Put idle threads to work on buffered runs; returns the threads still idle."""
        with self._lock:
            free = self.concurrency - self._active
            n = min(free, len(self._buffer))
            self._active += n
        for _ in range(n):
            executor.submit(self._drain)
        return free - n

    def _drain(self) -> None:
        """An executor thread's work: run buffered runs until none is left.

        Taking the next run here, rather than going back through the main
        loop and the executor for each one, keeps a fast queue's per-task cost
        to a deque pop. The main loop is woken when the buffer runs low (to
        claim more) and when the thread goes idle.
        """
        low_water = self.prefetch // 2
        while True:
            with self._lock:
                if not self._buffer or self._stopping:
                    self._active -= 1
                    self._lock.notify_all()
                    break
                run = self._buffer.popleft()
                low = len(self._buffer) == low_water
            if low and self._listener is not None:
                self._listener.wake()
            run.running = True
            self._execute(run)
        if self._listener is not None:
            self._listener.wake()

    def _claim(self, qty: int) -> list[dict[str, Any]]:
        def claim(cur: Any) -> list[dict[str, Any]]:
            cur.execute(
                "select * from teguh.claim_runs(%s, %s, %s, %s)",
                (self.queue, self.worker_id, self.claim_timeout, qty),
            )
            names = [d[0] for d in cur.description]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

        rows = self.client._run("claim_runs", claim, retry=True, queue=self.queue)
        for row in rows:
            row["run_id"] = str(row["run_id"])
            row["task_id"] = str(row["task_id"])
        return rows

    def _seconds_until_due(self) -> float | None:
        def due(cur: Any) -> float | None:
            cur.execute(
                "select extract(epoch from teguh.next_due(%s) - teguh.current_time())::float8", (self.queue,)
            )
            return cur.fetchone()[0]

        try:
            return self.client._run("next_due", due, retry=True, queue=self.queue)
        except (TeguhError, psycopg2.Error) as exc:
            logger.warning("next_due failed (%s)", error_message(exc))
            return None

    def _run_states(self) -> dict[str, RunState]:
        # a lost or cancelled run has no lease left to extend
        with self._lock:
            return {
                run_id: run.state
                for run_id, run in self._runs.items()
                if not (run.state.lost or run.state.cancelled)
            }

    def _stuck(self) -> list[_Run]:
        """Runs whose handler kept running for a while after the run was lost or cancelled.

        Caller holds `_lock`. The grace of one claim timeout lets a handler
        that is between two teguh calls notice the signal and unwind.
        """
        now = time.monotonic()
        grace = max(self.claim_timeout, 1)
        stuck = []
        for run in self._runs.values():
            if not run.running or run.state.completing or not (run.state.lost or run.state.cancelled):
                continue
            if run.flagged_at is None:
                run.flagged_at = now
            elif now - run.flagged_at >= grace:
                stuck.append(run)
        return stuck

    @property
    def stuck_runs(self) -> int:
        """Handlers still running well after their run was lost or cancelled (each holds a slot)."""
        with self._lock:
            return len(self._stuck())

    def _check_stuck(self) -> None:
        """Stop the worker (exit code 3) once `max_stuck_runs` slots are held by stuck handlers."""
        with self._lock:
            stuck = self._stuck()
        if not self.max_stuck_runs or len(stuck) < self.max_stuck_runs or self._stopping:
            return
        for run in stuck:
            run.log.error("handler still running %.0f s after its run ended", time.monotonic() - run.started)
        logger.error(
            "%d of %d slots are held by stuck handlers (max_stuck_runs %d); stopping the worker "
            "so that its supervisor restarts it (Python cannot stop a thread)",
            len(stuck),
            self.concurrency,
            self.max_stuck_runs,
            extra={"queue": self.queue},
        )
        self.exit_code = EXIT_STUCK
        self.stop()

    # -- executing a run ----------------------------------------------------

    def _execute(self, run: _Run) -> None:
        keep = False
        try:
            keep = self._handle(run)
        except BaseException as exc:  # never let a run kill its thread silently
            run.log.error("unexpected error while running the task: %s", type(exc).__name__, exc_info=True)
            try:
                self._fail(run, _reason(exc))
            except BaseException:
                run.log.error("could not record the failure; the lease will expire and the task retry")
        finally:
            if not keep:
                with self._lock:
                    self._runs.pop(run.run_id, None)
                    self.processed += 1

    def _handle(self, run: _Run) -> bool:
        """Run the handler; returns True when a completion was queued for the completer."""
        row = run.row
        undecodable = [
            key
            for key in ("params", "headers", "event_payload", "checkpoints")
            if isinstance(row.get(key), _json.UndecodableJSON)
        ]
        if undecodable:
            message = (
                f"the task's {' and '.join(undecodable)} cannot be decoded: JSON nested deeper "
                f"than Python can parse (the client refuses more than {_json.MAX_JSON_DEPTH} levels)"
            )
            run.log.error("%s", message)
            self._fail(run, {"type": "UndecodableJSON", "message": message})
            return False
        handler = self.app.handler_for(row["task_name"])
        if handler is None:
            run.log.warning(
                "no handler for task %r; retrying in %.0f s", row["task_name"], UNKNOWN_TASK_RETRY_SECONDS
            )
            self._fail(
                run,
                {
                    "type": "UnknownTask",
                    "message": f"no handler for task {row['task_name']!r} on queue {self.queue!r} "
                    "(and no catch-all '*' handler)",
                },
                delay=UNKNOWN_TASK_RETRY_SECONDS,
            )
            return False
        ctx = TaskContext(
            self.client,
            queue=self.queue,
            task_id=row["task_id"],
            run_id=row["run_id"],
            attempt=row["attempt"],
            task_name=row["task_name"],
            params=row["params"],
            headers=row["headers"],
            wake_event=row["wake_event"],
            event_payload=row["event_payload"],
            checkpoints=row.get("checkpoints") or {},
            claim_timeout=self.claim_timeout,
            state=run.state,
            log=run.log,
        )
        run.log.debug("running")
        try:
            result = self.app.run_handler(handler, row["params"], ctx)
        except Suspended as sig:
            run.log.info("suspended: %s", sig)
            return False
        except Cancelled:
            run.log.info("cancelled")
            return False
        except LeaseLost:
            run.log.warning("lost its lease; another run owns the task now")
            return False
        except BaseException as exc:
            reason = _reason(exc)
            run.log.warning(
                "failed: %s: %s",
                reason["type"],
                reason["message"][:1000],
                exc_info=not isinstance(exc, ConnectionLost),
            )
            self._fail(run, reason)
            return False
        try:
            text = _json.dumps(
                result, f"result of task {row['task_name']!r}", max_bytes=self.client.max_payload_bytes
            )
        except Exception as exc:  # TypeError, InvalidArgument, PayloadTooLarge, anything a __repr__ raises
            message = _clean_text(
                f"the task's result cannot be stored: {_safe_str(exc)}", MAX_FAILURE_MESSAGE_CHARS
            )
            run.log.warning("returned a result that cannot be stored: %s", message[:1000])
            self._fail(run, {"type": _clean_text(type(exc).__name__, 200), "message": message})
            return False
        if _faults.ARMED is not None:
            _faults.hit("before_complete")
        run.state.completing = True
        self._completions.put((run, text))
        return True

    def _fail(self, run: _Run, reason: dict[str, Any], *, delay: float | None = None) -> None:
        if run.state.cancelled or run.state.lost:
            return
        if delay is None and not run.row.get("retry_strategy"):
            delay = min(DEFAULT_BACKOFF_MAX, DEFAULT_BACKOFF_BASE * 2 ** min(run.row["attempt"] - 1, 20))
        final = run.row.get("max_attempts") is not None and run.row["attempt"] >= run.row["max_attempts"]
        if final:
            run.log.error(
                "failed for good after %d attempt(s): %s", run.row["attempt"], reason.get("message")
            )
        try:
            self._retrying(lambda: self._fail_now(run, reason, delay))
        except Cancelled:
            run.log.info("cancelled before its failure was recorded")
        except LeaseLost:
            run.log.warning("lost its lease before its failure was recorded")
        except Exception as exc:
            run.log.error(
                "could not record the failure (%s); the lease will expire and the task retry",
                error_message(exc),
            )

    def _fail_now(self, run: _Run, reason: dict[str, Any], delay: float | None) -> None:
        text = _json.dumps(reason, "failure reason", max_bytes=None)
        # a delay is measured on the database's clock, like every time in teguh
        self.client._run(
            "fail_run",
            lambda cur: cur.execute(
                "select teguh.fail_run(%s, %s::uuid, %s::jsonb,"
                " teguh.current_time() + make_interval(secs => %s::float8))",
                (self.queue, run.run_id, text, delay),
            ),
            queue=self.queue,
            run_id=run.run_id,
        )

    def _retrying(self, call: Any) -> Any:
        """Repeat `call` while the database is unreachable or reports a transient error.

        Safe for completions and failures: if an earlier try did commit, the
        repeat finds no lease and raises `LeaseLost`, which callers accept. A
        deadlock or serialization failure rolled the try back, so it is repeated.
        """
        for attempt in tenacity.Retrying(
            retry=tenacity.retry_if_exception(_transient),
            stop=tenacity.stop_after_delay(COMPLETION_RETRY_SECONDS),
            wait=tenacity.wait_exponential(multiplier=0.1, max=5.0) + tenacity.wait_random(0, 0.2),
            reraise=True,
        ):
            with attempt:
                return call()
        return None  # pragma: no cover

    # -- completions --------------------------------------------------------

    def _complete_loop(self) -> None:
        """Commit finished runs in batches: one statement for all runs waiting.

        `_flush` survives every error; should this thread end anyway, the
        worker stops, since a worker that cannot complete would otherwise keep
        heartbeating leases it will never give back.
        """
        try:
            self._complete_batches()
        except BaseException:
            logger.critical("the completion thread failed; stopping the worker", exc_info=True)
            self.stop()

    def _complete_batches(self) -> None:
        done = False
        while not done:
            item = self._completions.get()
            batch: list[tuple[_Run, str]] = []
            if item is None:
                done = True
            else:
                batch.append(item)
            while len(batch) < 1000:
                try:
                    item = self._completions.get_nowait()
                except queue_module.Empty:
                    break
                if item is None:
                    done = True
                    continue
                batch.append(item)
            if batch:
                self._flush(batch)

    def _flush(self, batch: list[tuple[_Run, str]]) -> None:
        run_ids = [run.run_id for run, _ in batch]
        results = [text for _, text in batch]

        def complete(cur: Any) -> dict[str, str]:
            cur.execute(
                "select run_id::text, outcome from teguh.complete_runs(%s, %s::uuid[], %s::jsonb[])",
                (self.queue, run_ids, results),
            )
            return dict(cur.fetchall())

        try:
            outcomes = self._retrying(lambda: self.client._run("complete_runs", complete, queue=self.queue))
        except Exception as exc:  # the completer must outlive any error
            logger.error(
                "could not record %d completions (%s); their leases will expire and the tasks run again",
                len(batch),
                error_message(exc),
            )
            outcomes = {}
        if outcomes and _faults.ARMED is not None:
            _faults.hit("after_complete_commit")
        with self._lock:
            for run, _ in batch:
                outcome = outcomes.get(run.run_id)
                if outcome == "ok":
                    run.log.info("completed")
                elif outcome == "cancelled":
                    run.log.info("finished, but its task had been cancelled")
                elif outcome == "lost":
                    run.log.warning("finished after losing its lease; its result was discarded")
                self._runs.pop(run.run_id, None)
                self.processed += 1
            self._lock.notify_all()

    # -- shutdown -----------------------------------------------------------

    def _install_signals(self) -> Any:
        if not self.install_signal_handlers or threading.current_thread() is not threading.main_thread():
            return lambda: None
        previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}

        def handle(signum: int, frame: Any) -> None:
            # State first, logging after: a second signal can run this handler
            # again in the middle of the first one's logging call.
            if self._stopping:
                self.stop(force=True)
                logger.warning("second %s: stopping now", signal.Signals(signum).name)
            else:
                self.stop()
                logger.info(
                    "%s: finishing running tasks (up to %.0f s); send it again to stop now",
                    signal.Signals(signum).name,
                    self.shutdown_timeout,
                )

        for sig in previous:
            signal.signal(sig, handle)

        def restore() -> None:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

        return restore

    def _shutdown(
        self, executor: ThreadPoolExecutor, heartbeat: Heartbeat | None, completer: threading.Thread
    ) -> None:
        self._stopping = True
        # prefetched runs never started: hand them back before waiting for the rest
        with self._lock:
            unstarted = list(self._buffer)
            self._buffer.clear()
            for run in unstarted:
                self._runs.pop(run.run_id, None)
        for run in unstarted:
            self._release(run, started=False)
        deadline = time.monotonic() + (0 if self._force else self.shutdown_timeout)
        with self._lock:
            # stuck handlers will not finish: wait only for the others
            while self._active > len(self._stuck()) and not self._force:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._lock.wait(min(left, 0.5))
        if completer.is_alive():
            self._completions.put(None)
            completer.join(timeout=COMPLETION_RETRY_SECONDS + 5)
        with self._lock:
            leftover = [run for run in self._runs.values()]
        for run in leftover:
            self._release(run)
        if heartbeat is not None:
            heartbeat.stop()
        if self._listener is not None:
            self._listener.close()
        with self._lock:
            self.stuck_handlers = self._active
        # idle pool threads exit at once; busy ones cannot be stopped (see the class docs)
        executor.shutdown(wait=not self.stuck_handlers, cancel_futures=True)
        if self._owns_client and self._client is not None:
            self._client.close()
        logger.info(
            "worker %s stopped (%d running and %d prefetched runs released)",
            self.worker_id,
            len(leftover),
            len(unstarted),
            extra={"queue": self.queue},
        )

    def _release(self, run: _Run, *, started: bool = True) -> None:
        """Hand a task back so another worker can start it at once."""
        run.state.lost = True
        try:
            self.client._run(
                "release",
                lambda cur: cur.execute(
                    "select teguh.schedule_run(%s, %s::uuid, teguh.current_time())", (self.queue, run.run_id)
                ),
                queue=self.queue,
                run_id=run.run_id,
            )
            if started:
                run.log.warning("released: still running at shutdown; another worker will take it")
        except (Cancelled, LeaseLost):
            pass
        except TeguhError as exc:
            run.log.warning("could not release (%s); its lease will expire", exc)
