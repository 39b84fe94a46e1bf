"""`Worker`: claims runs of one queue (or several) and executes their handlers in threads.

This module only coordinates. One main loop claims batches sized to the free
slots and hands them to one `ThreadPoolExecutor`, whatever the number of
queues. When there is nothing to claim it waits on its one LISTEN connection
(on every queue's channel) for the earliest of a notification,
`poll_interval`, the queues' next due moment (read from the database, so
sleeps, event timeouts and expired leases are picked up on time without a
ticker) and the end of one of its own runs. With several queues the claims go
round-robin: each claim round starts at the next queue and asks the queues in
turn until the free slots are filled, so a busy queue cannot starve another.
The parts do the rest:

* `_config`: the options and their validation;
* `_inflight`: the claimed runs, the prefetch buffer, the slots, the one lock;
* `_execute`: one run from handler call to completion or failure;
* `_completer`: the thread committing completions in batches;
* `_heartbeat`: the thread extending leases, and the stuck-handler policy.

How it fails: a failed claim is retried with backoff, never fatal; a failed
start (wrong connection settings, a queue that is missing and not the app's,
no permission) raises from `run()`, in one line, and logs nothing else. Stopping hands back
prefetched runs at once, waits up to `shutdown_timeout` for running handlers,
then releases what is left so another worker can take it immediately.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import psycopg2

from .. import _backoff, _dsn, _faults, _json
from .._notify import TIMEOUT, PollingWaiter, Waiter, open_queue_waiter
from .._options import task_type
from ..errors import (
    Cancelled,
    InvalidArgument,
    LeaseLost,
    PermissionDenied,
    QueueNotFound,
    TeguhError,
    error_message,
)
from ._completer import Completer
from ._config import (
    DEFAULT_CLAIM_TIMEOUT,
    DEFAULT_CONCURRENCY,
    DEFAULT_POLL_INTERVAL,
    DEFAULT_SHUTDOWN_TIMEOUT,
    MAX_HEARTBEAT_INTERVAL,
    WorkerConfig,
)
from ._execute import COMPLETION_RETRY_SECONDS, RunExecutor
from ._heartbeat import EXIT_STUCK, Heartbeat, StuckPolicy
from ._inflight import InFlight, Run
from ._metrics import Metrics, require_prometheus
from ._observe import RunEvents
from ._registry import Registry
from ._schedules import ScheduleFirer, sync_app_schedules

if TYPE_CHECKING:
    from ..client import Client
    from ._protocols import WorkerApp

logger = logging.getLogger("teguh.worker")

CATCH_ALL = "*"
"""The catch-all handler's name (`teguh.app.CATCH_ALL`, not imported: the app imports the worker)."""

CLAIM_BACKOFF = _backoff.Backoff(0.2, 5.0)
"""Waits after failed claims: 0.2 s doubling up to 5 s (a bad row or a lost database)."""

METRICS_HOST = "0.0.0.0"
"""The metrics endpoint listens on every interface, where Prometheus scrapes from."""

MIN_IDLE_WAIT = 0.005
"""The shortest idle wait, so a due moment in the past cannot make the loop spin."""

REGISTRY_JOIN_SECONDS = 5.0
"""How long a stopping worker waits for a heartbeat in flight before deleting its registry row."""


def _no_runs(queue: str | None = None) -> dict[str, Any]:
    """The runs of a worker whose leases never expire, for its heartbeat: none to extend."""
    return {}


def start_line(worker_id: str, queue: str | Sequence[str], dsn: str, concurrency: int) -> str:
    """The worker's INFO line at start: who serves which queues of which database (never a password).

    `worker host:42 serving queue 'jobs' on db shop at /tmp:5432 (concurrency 10)`, or
    `... serving queues 'jobs', 'mail' on ...`: enough to tell, from the log
    alone, a worker serving the wrong queue or database.
    """
    queues = [queue] if isinstance(queue, str) else list(queue)
    serving = f"queue {queues[0]!r}" if len(queues) == 1 else "queues " + ", ".join(map(repr, queues))
    return f"worker {worker_id} serving {serving} on {_dsn.short(dsn)} (concurrency {concurrency})"


def missing_queue_message(queue: str, existing: list[str]) -> str:
    """The one line for a worker asked to serve a queue that neither exists nor is the app's."""
    known = ", ".join(existing) if existing else "none"
    return (
        f"queue {queue!r} does not exist (queues: {known}); "
        f"create it with 'teguh queue create {queue}' or pass --create-queue"
    )


class Worker:
    """Runs the handlers of an `App` for the tasks of one queue, or of several.

    Args:
        app: the app whose handlers run.
        queue: the queue to work on. It is created if missing when the app
            declares it (`App.declared_queues()`: the app's queue and its
            tasks' queues) or `create_queue` is set; any other queue must
            exist, else `run()` raises `QueueNotFound` listing the queues that do.
            Give either `queue` or `queues`.
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
        create_queue: create `queue` if missing even when the app does not
            declare it (`teguh worker --create-queue`).
        queues: serve these queues instead of `queue`, with one thread pool
            (`concurrency` is shared by all of them), one LISTEN connection and
            round-robin claims (see docs/worker.md). Each queue is created or
            checked like `queue`. `Worker.queue` is the first one.
        metrics_port: serve Prometheus metrics of this worker's runs on this
            port (`/metrics`, every interface; 0 picks a free port, see
            `metrics_address`). Needs the `teguh[metrics]` extra
            (docs/metrics.md).

    Raises:
        InvalidArgument: an option out of range (also a `ValueError`), or both
            or neither of `queue` and `queues`.
        InvalidQueueName: a bad queue name.
        TypeError: an int option given another type.

    Signals to wait on (`threading.Event`): `started`, set once the worker
    listens and claims; `idle`, set while the claim loop sits in its idle wait
    with no run in flight, none buffered and no wake-up of its own pending (so
    only a notification, a due moment, `poll_interval` or `stop()` can end
    that wait), and cleared as soon as the wait ends. Tests wait on `idle`
    before spawning to prove that a notification woke the worker.

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
        app: WorkerApp,
        queue: str | None = None,
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
        create_queue: bool = False,
        queues: Sequence[str] | None = None,
        metrics_port: int | None = None,
    ) -> None:
        self.app = app
        self._config = config = WorkerConfig.from_options(
            queue,
            concurrency=concurrency,
            claim_timeout=claim_timeout,
            heartbeat_interval=heartbeat_interval,
            poll_interval=poll_interval,
            batch_size=batch_size,
            prefetch=prefetch,
            worker_id=worker_id,
            max_stuck_runs=max_stuck_runs,
            shutdown_timeout=shutdown_timeout,
            install_signal_handlers=install_signal_handlers,
            listen_dsn=listen_dsn,
            create_queue=create_queue,
            queues=queues,
            metrics_port=metrics_port,
        )
        if config.metrics_port is not None:
            require_prometheus()  # fail now, naming the extra, not when the worker starts
        # the validated options, also as the plain attributes they always were
        self.queue = config.queue
        """The (first) queue served."""
        self.queues: tuple[str, ...] = config.queues
        """Every queue served, `queue` first."""
        self.concurrency = config.concurrency
        self.claim_timeout = config.claim_timeout
        self.heartbeat_interval = config.heartbeat_interval
        self.poll_interval = config.poll_interval
        self.batch_size = config.batch_size
        self.prefetch = config.prefetch
        self.worker_id = config.worker_id
        self.max_stuck_runs = config.max_stuck_runs
        self.shutdown_timeout = config.shutdown_timeout
        self.install_signal_handlers = config.install_signal_handlers
        self.listen_dsn = config.listen_dsn
        self.create_queue = config.create_queue
        self.metrics_port = config.metrics_port
        self._metrics: Metrics | None = None
        self._client = client
        self._owns_client = client is None

        self._inflight = InFlight(config.queue, config.concurrency, config.prefetch, self._wake)
        self._stuck = StuckPolicy(
            self._inflight, config.queue, config.concurrency, config.claim_timeout, config.max_stuck_runs
        )
        self._stopping = False
        self._force = False
        self._ran = False
        self._turn = 0
        """Where the next claim round starts in `queues` (round-robin)."""
        self._claiming = config.queue
        """The queue of the claim in progress (named when it fails)."""
        self._label = ",".join(config.queues)
        """The queues as one word, for worker-wide log records and connection names."""
        self._listener: Waiter | None = None
        self._wake_pending = False
        """A wake-up was written in this turn of the claim loop: another one would add nothing."""
        self._schedules: ScheduleFirer | None = None
        self.started = threading.Event()
        """Set once the worker listens and claims (tests and embedders wait on it)."""
        self.idle = self._inflight.idle
        """Set while the claim loop sits in its idle wait with nothing in flight (see the class docs)."""
        self.stuck_handlers = 0
        """Handlers still running when `run()` returned (their tasks were released)."""
        self.exit_code = 0
        """0 after a requested stop; `EXIT_STUCK` (3) when too many handlers were stuck."""

    # -- public -------------------------------------------------------------

    @property
    def client(self) -> Client:
        """The client the worker talks through."""
        if self._client is None:
            from ..client import Client

            self._client = Client(
                self.app.client.dsn,
                max_connections=self.concurrency + 4,
                application_name=f"teguh-worker:{self._label}",
            )
            self._client.max_payload_bytes = self.app.client.max_payload_bytes
            # a call blocked longer than a lease is pointless: the lease is gone
            self._client.call_timeout = min(max(10.0, float(self.claim_timeout)), 60.0)
            self._client.session_hooks = self.app.client.session_hooks  # shared: a fake clock reaches both
        return self._client

    @property
    def processed(self) -> int:
        """Runs that ended in this worker (completed, failed, suspended or cancelled)."""
        return self._inflight.processed

    @property
    def stuck_runs(self) -> int:
        """Handlers still running well after their run was lost or cancelled (each holds a slot)."""
        return self._stuck.count()

    @property
    def metrics_address(self) -> tuple[str, int] | None:
        """`(host, port)` of the metrics endpoint while it is served, else None."""
        return None if self._metrics is None else self._metrics.address

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
        self._inflight.close()
        if force:
            self._force = True
        self._wake()

    def run(self) -> None:
        """Claim and run tasks until `stop()` (or SIGTERM/SIGINT in the main thread)."""
        if self._ran:
            raise RuntimeError("a Worker runs once; create a new one")
        self._ran = True
        restore = self._install_signals()
        client = self.client
        executor = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix=f"teguh-{self.queue}")
        heartbeat = None
        registry = Registry(
            client,
            worker_id=self.worker_id,
            queues=self.queues,
            concurrency=self.concurrency,
            app_version=getattr(self.app, "version", None),
            interval=self.heartbeat_interval if self.claim_timeout > 0 else MAX_HEARTBEAT_INTERVAL,
            running=lambda: self._inflight.active,
        )
        hooks = getattr(self.app, "hooks", None)
        if self.metrics_port is not None:
            self._metrics = Metrics(self.metrics_port, METRICS_HOST, client, self.queues, self._inflight)
            hooks = self._metrics.hooks().merged(hooks)
        events = RunEvents(hooks)
        completer = Completer(
            client, self.queue, self._inflight, on_death=self.stop, on_completed=registry.completed,
            events=events,
        )
        runner = RunExecutor(
            self.app, client, self.queue, self.claim_timeout, self._inflight, completer, events
        )
        try:
            for queue in self.queues:
                self._ensure_queue(client, queue)
            for queue in self.queues:
                self._register_task_types(client, queue)
            sync_app_schedules(client, self.app)
            self._schedules = ScheduleFirer(client, self.queues)
            self._register_topic_bindings(client)
            # LISTEN may need a direct connection when the pool goes through PgBouncer
            listen_dsn = self.listen_dsn or (self.app.client if self._owns_client else client).listen_dsn
            self._listener = open_queue_waiter(client, self.queues, listen_dsn, self.poll_interval)
            self._schedules.polling = isinstance(self._listener, PollingWaiter)
            if self._stopping:
                self._listener.wake()
            registry.register()
            if self.claim_timeout > 0:
                heartbeat = Heartbeat(
                    client,
                    self.queues if len(self.queues) > 1 else self.queue,
                    self.claim_timeout,
                    self.heartbeat_interval,
                    self._inflight.lease_states,
                    on_tick=self._check_stuck,
                    registry=registry,
                )
            else:
                # leases never expire: the heartbeat only keeps the registry row fresh
                heartbeat = Heartbeat(
                    client, self.queues, 0, MAX_HEARTBEAT_INTERVAL, _no_runs, registry=registry
                )
            heartbeat.start()
            completer.start()
            if self._metrics is not None:
                self._metrics.start()
            logger.info(
                start_line(self.worker_id, self.queues, client.dsn, self.concurrency),
                extra={"queue": self._label},
            )
            self.started.set()
            self._loop(executor, runner)
        finally:
            self._shutdown(executor, heartbeat, completer, registry)
            restore()

    def _ensure_queue(self, client: Client, queue: str) -> None:
        """Create `queue` if the app declares it (or `create_queue`); else check that it exists.

        A role not allowed to create queues (a `grant_worker` role) only checks.
        """
        declared = getattr(self.app, "declared_queues", None)
        if self.create_queue or (declared is not None and queue in declared()):
            try:
                client.create_queue(queue)
                return
            except PermissionDenied:
                if queue not in client.list_queues():
                    raise QueueNotFound(
                        f"queue {queue!r} does not exist, and this role may not create it: "
                        f"create it with a role that may (`teguh queue create {queue}`)",
                        queue=queue,
                    ) from None
                logger.debug("this role may not create queues; queue %s exists", queue)
                return
        queues = client.list_queues()
        if queue not in queues:
            # a typo in --queue must not start serving an empty queue
            raise QueueNotFound(missing_queue_message(queue, queues), queue=queue)

    def _home_queues(self) -> tuple[str, ...]:
        """Where handlers without a queue of their own belong: the app's queue if served, else all served."""
        own = getattr(self.app, "queue", None)
        return (own,) if own in self.queues else self.queues

    def _register_task_types(self, client: Client, queue: str | None = None) -> None:
        """Register the handlers of `queue` (default: the first) as task types, in one statement.

        A handler with a queue of its own belongs to that queue. One without
        belongs to the app's queue when this worker serves it, else to every
        queue this worker serves (so `teguh worker -q other` registers them on
        `other`, as a one-queue worker always did). The catch-all is not a task
        type. Every starting worker upserts its own handlers, so during a
        rolling deploy the last one to start wins. A role granted before task
        types existed may not register: that is logged, and spawns then get the
        queue's defaults only.
        """
        queue = queue or self.queue
        tasks = getattr(self.app, "tasks", None) or {}
        limit = client.max_payload_bytes
        home = queue in self._home_queues()
        types = [
            task_type(name, {**task.defaults, **task.limits}, limit)
            for name, task in sorted(tasks.items())
            if name != CATCH_ALL and (task.queue == queue if task.queue else home)
        ]
        for item in types:
            target = getattr(tasks[item["task_name"]], "on_failure", None)
            if target is not None:
                item["on_failure"] = {"task_name": target, "queue": self._on_failure_queue(target)}
        if not types:
            return
        try:
            client._register_task_types(queue, types, getattr(self.app, "version", None))
        except PermissionDenied:
            logger.warning(
                "this role may not register task types on queue %s: spawns from elsewhere will not get "
                "the handlers' defaults (run teguh.grant_worker for this role again)",
                queue,
                extra={"queue": queue},
            )

    def _register_topic_bindings(self, client: Client) -> None:
        """Upsert the app's topic bindings on the queues this worker serves, in one statement.

        Like task types: every starting worker writes its app's bindings (the
        others' queues are their workers' to bind), and none deletes any, since
        an older worker may still run a task whose binding newer code dropped
        (`Client.unbind` removes one).
        """
        bindings = getattr(self.app, "topic_bindings", None)
        served = [b for b in (bindings() if bindings is not None else []) if b["queue"] in self.queues]
        if not served:
            return
        try:
            client._bind_topics(served)
        except PermissionDenied:
            logger.warning(
                "this role may not bind topics: publishes will not reach this app's bound tasks "
                "(run teguh.grant_worker for this role again)"
            )

    def _on_failure_queue(self, target: str) -> str:
        """The queue an `on_failure` task goes to: its handler's, which this app must have.

        Checked when the worker starts, so a misspelt name stops the worker
        instead of spawning tasks nobody runs.
        """
        tasks = getattr(self.app, "tasks", None) or {}
        handler = tasks.get(target) or tasks.get(CATCH_ALL)
        if handler is None:
            raise InvalidArgument(
                f"on_failure names task {target!r}, which has no handler in this app "
                "(register it with @app.task, or a catch-all '*' handler)"
            )
        queue = getattr(self.app, "queue_of", None)
        return queue(target) if queue is not None else self.queue

    def _wake(self) -> None:
        """End the claim loop's current or next wait (any thread).

        One write to the waiter's pipe per turn of the loop is enough: on a
        busy worker every run's slot wakes the loop, and a pipe write is a
        system call. The loop clears the flag at the top of each turn, before
        it looks at anything, so what changed after that is announced by a
        write still in the pipe when the turn's wait begins; what changed
        before it, the turn sees.
        """
        if self._wake_pending:
            return
        self._wake_pending = True
        if self._listener is not None:
            self._listener.wake()

    def _check_stuck(self) -> None:
        """After each heartbeat: stop (exit code 3) once `max_stuck_runs` slots are held by stuck handlers."""
        if self._stuck.over_limit(self._stopping):
            self.exit_code = EXIT_STUCK
            self.stop()

    # -- main loop ----------------------------------------------------------

    def _loop(self, executor: ThreadPoolExecutor, runner: RunExecutor) -> None:
        assert self._listener is not None
        inflight = self._inflight
        failures = 0
        while not self._stopping:
            self._wake_pending = False  # before looking at anything (see `_wake`)
            # schedules fire from here, busy or idle: nothing to read until the next tick is due
            tick_in = self._schedules.seconds_until_next() if self._schedules is not None else None
            free = self._start_buffered(executor, runner)
            want = free + self.prefetch - inflight.buffered
            got_all = False
            if want > 0:
                qty = min(want, self.batch_size)
                try:
                    got = self._claim_round(qty)
                except Exception as exc:  # a bad row (say, undecodable JSON) must not end the worker
                    failures += 1
                    delay = CLAIM_BACKOFF.delay(failures)
                    where = f" on queue {self._claiming}" if len(self.queues) > 1 else ""
                    logger.warning(
                        "claim failed%s (%s); retrying in %.1f s",
                        where,
                        error_message(exc),
                        delay,
                        extra={"queue": self._claiming},
                    )
                    self._listener.wait(delay)
                    continue
                failures = 0
                got_all = got == qty
                free = self._start_buffered(executor, runner)
                if got_all and (free > 0 or inflight.buffered < self.prefetch):
                    continue  # the queue had more and there is room: claim again now
            timeout = self.poll_interval
            if tick_in is not None:
                timeout = min(timeout, max(tick_in, MIN_IDLE_WAIT))
            # Only a claim that came back short says the queue may be empty. With
            # no claim (want <= 0: runs buffered for parked threads, which count
            # as free slots) the runs' threads wake the loop when the buffer
            # runs low, so asking the database for its next due moment is a
            # wasted round trip.
            if want > 0 and not got_all and free > 0:
                due = self._seconds_until_due()
                if due is not None:
                    timeout = min(timeout, max(due, MIN_IDLE_WAIT))
            self._idle_wait(timeout)

    def _idle_wait(self, timeout: float) -> None:
        """Wait on the listener up to `timeout` seconds, with `idle` set when nothing is in flight."""
        listener = self._listener
        assert listener is not None
        if not self._inflight.quiet():
            self._noticed(listener.wait(timeout))
            return
        # A wake-up already pending (a slot freed since the claim) ends the
        # wait at once: take it now, so `idle` is never set for a wait that ends
        # by itself. Every wake-up of this worker is written before the slot it
        # announces is freed, so none can arrive after this check.
        result = listener.wait(0)
        if result != TIMEOUT:
            self._noticed(result)
            return
        self._inflight.enter_wait()
        try:
            result = listener.wait(timeout)
        finally:
            self._inflight.leave_wait()
        self._noticed(result)

    def _noticed(self, result: str) -> None:
        """Tell the schedule firer why a wait ended (a schedule change makes it re-read)."""
        if self._schedules is not None and self._listener is not None:
            self._schedules.noticed(result, getattr(self._listener, "payloads", ()))

    def _start_buffered(self, executor: ThreadPoolExecutor, runner: RunExecutor) -> int:
        """Put idle threads to work on buffered runs; returns the threads still idle."""
        started, free = self._inflight.reserve_slots()
        for _ in range(started):
            executor.submit(runner.drain)
        return free

    def _claim_round(self, qty: int) -> int:
        """Claim up to `qty` runs over the queues, round-robin; returns how many were claimed.

        Each round starts at the next queue and asks the queues in turn, each
        for what is still wanted, until `qty` runs are held: when every queue
        has work, the queues take turns filling the slots, and no queue waits
        more than one round per other queue. What a round claimed before a
        failing claim is held (and heartbeated) before the error propagates.
        """
        queues = self.queues
        if len(queues) == 1:
            rows = self._claim(qty)
            self._hold(rows, queues[0])
            return len(rows)
        start = self._turn
        self._turn = (start + 1) % len(queues)
        got = 0
        for i in range(len(queues)):
            queue = queues[(start + i) % len(queues)]
            rows = self._claim(qty - got, queue)
            self._hold(rows, queue)
            got += len(rows)
            if got >= qty:
                break
        return got

    def _hold(self, rows: list[dict[str, Any]], queue: str) -> None:
        if rows and _faults.ARMED is not None:
            _faults.hit("after_claim")
        self._inflight.hold(rows, queue)

    def _claim(self, qty: int, queue: str | None = None) -> list[dict[str, Any]]:
        queue = queue or self.queue
        self._claiming = queue
        return self.client._claim_runs(queue, self.worker_id, self.claim_timeout, qty)

    def _seconds_until_due(self) -> float | None:
        """Seconds until the earliest next due moment over the queues (None: nothing due, or unknown)."""
        soonest = None
        for queue in self.queues:
            try:
                due = self.client._seconds_until_due(queue)
            except (TeguhError, psycopg2.Error) as exc:
                logger.warning("next_due failed (%s)", error_message(exc), extra={"queue": queue})
                continue
            if due is not None and (soonest is None or due < soonest):
                soonest = due
        return soonest

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
        self,
        executor: ThreadPoolExecutor,
        heartbeat: Heartbeat | None,
        completer: Completer,
        registry: Registry | None = None,
    ) -> None:
        """Stop the parts in order: no new starts, hand back, wait, complete, release, close."""
        self._stopping = True
        self._inflight.close()
        # prefetched runs never started: hand them back before waiting for the rest
        unstarted = self._inflight.take_unstarted()
        for run in unstarted:
            self._release(run, started=False)
        # stuck handlers will not finish: wait only for the others
        self._inflight.wait_for_handlers(
            0 if self._force else self.shutdown_timeout, self._stuck.grace, lambda: self._force
        )
        completer.close(timeout=COMPLETION_RETRY_SECONDS + 5)
        leftover = self._inflight.runs()
        for run in leftover:
            self._release(run)
        if heartbeat is not None:
            heartbeat.stop()
        if registry is not None:
            # a beat in flight would write the row again after its delete
            if heartbeat is not None and heartbeat.is_alive():
                heartbeat.join(REGISTRY_JOIN_SECONDS)
            registry.unregister()
        if self._listener is not None:
            self._listener.close()
        if self._metrics is not None:
            self._metrics.stop()
        self.stuck_handlers = self._inflight.active
        # idle pool threads exit at once; busy ones cannot be stopped (see the class docs)
        executor.shutdown(wait=not self.stuck_handlers, cancel_futures=True)
        if self._owns_client and self._client is not None:
            self._client.close()
        if not self.started.is_set():
            # run() is raising the reason it never started: that is the one line to show
            logger.debug("worker %s did not start", self.worker_id, extra={"queue": self._label})
            return
        logger.info(
            "worker %s stopped (%d running and %d prefetched runs released)",
            self.worker_id,
            len(leftover),
            len(unstarted),
            extra={"queue": self._label},
        )

    def _release(self, run: Run, *, started: bool = True) -> None:
        """Hand a task back so another worker can start it at once.

        A run whose handler is still running uses its attempt, like any
        failure (reason `$Shutdown`), so a handler that hangs every time
        cannot loop for ever: on its last attempt the task fails. A run that
        never started (prefetched), or whose handler returned and whose
        completion could not be committed, goes back without using one.
        """
        hung = started and not run.state.completing
        run.state.lost = True
        try:
            if hung:
                reason = {
                    "type": "$Shutdown",
                    "message": f"still running when worker {self.worker_id} stopped "
                    f"(after shutdown_timeout {self.shutdown_timeout:g} s); released",
                    "worker_id": self.worker_id,
                }
                # ready at once on the database clock, as the next attempt
                self.client._fail_run_after(run.queue, run.run_id, _json.dumps(reason, "reason"), 0.0)
                run.log.warning(
                    "released as a failed attempt ($Shutdown): still running at shutdown; "
                    "another worker will take it"
                )
            else:
                self.client._release_run(run.queue, run.run_id)
                if started:
                    run.log.warning("released: its completion was not committed; another worker will take it")
        except (Cancelled, LeaseLost):
            pass
        except TeguhError as exc:
            run.log.warning("could not release (%s); its lease will expire", exc)
