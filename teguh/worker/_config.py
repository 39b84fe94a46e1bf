"""A worker's options, their defaults, and their validation at construction.

Every option is checked once, when the `Worker` is built, so a bad value fails
at once with the option's name in the message (`InvalidArgument`, a
`ValueError`; `TypeError` for a wrong type) instead of deep inside a thread
later. The checked values live in a frozen `WorkerConfig` that the worker's
parts read and cannot change.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field

from .. import _validate
from ..errors import InvalidArgument

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


def default_worker_id() -> str:
    """`hostname:pid`, which names the process holding a lease."""
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class WorkerConfig:
    """The validated options of one worker (see `Worker` for what each means).

    Build it with `WorkerConfig.from_options`, which applies the defaults
    that depend on other options (`prefetch`, `batch_size`, `max_stuck_runs`,
    `heartbeat_interval`).
    """

    queue: str
    concurrency: int
    claim_timeout: int
    heartbeat_interval: float
    poll_interval: float
    batch_size: int
    prefetch: int
    worker_id: str
    max_stuck_runs: int
    shutdown_timeout: float
    install_signal_handlers: bool
    listen_dsn: str | None
    create_queue: bool = False
    queues: tuple[str, ...] = field(default=())
    """Every queue served, `queue` first (one element for a one-queue worker)."""
    metrics_port: int | None = None
    """The port of the Prometheus endpoint (0: any free port), or None for no metrics."""

    def __post_init__(self) -> None:
        if not self.queues:
            object.__setattr__(self, "queues", (self.queue,))

    @classmethod
    def from_options(
        cls,
        queue: str | None,
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
        listen_dsn: str | None = None,
        create_queue: bool = False,
        queues: Sequence[str] | None = None,
        metrics_port: int | None = None,
    ) -> WorkerConfig:
        """Check every option (in the order of `Worker`'s signature) and fill in the defaults.

        Raises:
            InvalidQueueName: a bad queue name.
            InvalidArgument: a value out of range (also a `ValueError`), or
                both or neither of `queue` and `queues`.
            TypeError: an int option given another type.
        """
        served = serving(queue, queues)
        concurrency = _validate.integer(concurrency, "concurrency", minimum=1)
        claim_timeout = _validate.integer(claim_timeout, "claim_timeout", minimum=0)
        if poll_interval is None or poll_interval <= 0:
            raise InvalidArgument(f"poll_interval must be > 0 seconds, not {poll_interval!r}")
        prefetch = _validate.integer(concurrency if prefetch is None else prefetch, "prefetch", minimum=0)
        batch_size = _validate.integer(batch_size or concurrency + prefetch, "batch_size", minimum=1)
        worker_id = _validate.name(worker_id or default_worker_id(), "worker_id")
        max_stuck_runs = _validate.integer(
            -(-concurrency // 2) if max_stuck_runs is None else max_stuck_runs,
            "max_stuck_runs",
            minimum=0,
        )
        if shutdown_timeout is None or shutdown_timeout < 0:
            raise InvalidArgument(f"shutdown_timeout must be >= 0 seconds, not {shutdown_timeout!r}")
        if metrics_port is not None:
            metrics_port = _validate.integer(metrics_port, "metrics_port", minimum=0)
            if metrics_port > 65535:
                raise InvalidArgument(f"metrics_port must be a TCP port (0 to 65535), not {metrics_port}")
        return cls(
            queue=served[0],
            concurrency=concurrency,
            claim_timeout=claim_timeout,
            heartbeat_interval=_heartbeat_interval(heartbeat_interval, claim_timeout),
            poll_interval=float(poll_interval),
            batch_size=batch_size,
            prefetch=prefetch,
            worker_id=worker_id,
            max_stuck_runs=max_stuck_runs,
            shutdown_timeout=float(shutdown_timeout),
            install_signal_handlers=install_signal_handlers,
            listen_dsn=listen_dsn,
            create_queue=bool(create_queue),
            queues=served,
            metrics_port=metrics_port,
        )


def serving(queue: str | None, queues: Sequence[str] | None) -> tuple[str, ...]:
    """The queues a worker serves: `queue` alone, or `queues` in order without repeats.

    Exactly one of the two is given (`Worker(app, "jobs")` or
    `Worker(app, queues=["jobs", "mail"])`): a worker given both would have to
    guess which one the caller meant.

    Raises:
        InvalidArgument: both or neither given, or an empty `queues`.
        InvalidQueueName: a bad queue name.
    """
    if queues is None:
        if queue is None:
            raise InvalidArgument("a worker needs a queue: pass queue or queues")
        return (_validate.queue_name(queue),)
    if queue is not None:
        raise InvalidArgument(f"pass queue or queues, not both (queue={queue!r}, queues={queues!r})")
    if isinstance(queues, str):
        # a str is a sequence of letters: ["j", "o", "b", "s"] is never what was meant
        raise InvalidArgument(f"queues must be a list of queue names, not the str {queues!r}")
    served = tuple(dict.fromkeys(_validate.queue_name(name) for name in queues))
    if not served:
        raise InvalidArgument("queues must name at least one queue")
    return served


def _heartbeat_interval(requested: float | None, claim_timeout: int) -> float:
    """The heartbeat interval: at most a third of the lease (and 10 s), so two ticks may fail."""
    ceiling = min(MAX_HEARTBEAT_INTERVAL, claim_timeout / 3)
    if requested is None:
        return ceiling
    if requested <= 0:
        raise InvalidArgument(f"heartbeat_interval must be > 0 seconds, not {requested!r}")
    if requested > ceiling and claim_timeout > 0:
        logger.warning(
            "heartbeat_interval %.1f s is too long for claim_timeout %d s; using %.1f s",
            requested,
            claim_timeout,
            ceiling,
        )
        return ceiling
    return float(requested)
