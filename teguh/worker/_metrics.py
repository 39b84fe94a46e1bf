"""A worker's Prometheus metrics: counters and histograms fed by the run events, served over HTTP.

Built only when the worker is given `metrics_port` (`teguh worker
--metrics-port 9100`), so `prometheus-client` (the `teguh[metrics]` extra) is
imported only then. The counters and histograms are lifecycle hooks (see
`_hooks`), added to the app's; the gauges of running and buffered runs read
the worker's `InFlight`, and the queue's counts (`Client.queue_depth`, one
small query per served queue) are read at scrape time, so an unscraped worker
does no work for them. Each worker has a registry of its own: two workers in
one process (tests, embedding) do not mix their series.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from .._hooks import Hooks
from ..errors import InvalidArgument, TeguhError, error_message

if TYPE_CHECKING:
    from ..client import Client
    from ._inflight import InFlight

logger = logging.getLogger("teguh.worker")

INSTALL_HINT = "pip install 'teguh[metrics]' (from a clone: pip install -e '.[metrics]')"

DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, float("inf"))
"""Run times and queue waits in seconds: from a fast handler's milliseconds to long jobs."""


def require_prometheus() -> Any:
    """The `prometheus_client` module, or an error naming the extra to install."""
    try:
        import prometheus_client
    except ImportError:
        raise InvalidArgument(
            f"metrics_port (--metrics-port) needs the prometheus-client package: {INSTALL_HINT}"
        ) from None
    return prometheus_client


class Metrics:
    """The metrics of one worker and the HTTP server exposing them.

    Args:
        port: the TCP port to serve `/metrics` on (0: any free port; see `port` after `start`).
        host: the address to bind.
        client: the worker's client (for the queues' counts).
        queues: the queues the worker serves.
        inflight: the worker's runs (for the running and buffered gauges).
    """

    def __init__(
        self, port: int, host: str, client: Client, queues: tuple[str, ...], inflight: InFlight
    ) -> None:
        prom = require_prometheus()
        self._prom = prom
        self._port = port
        self._host = host
        self._client = client
        self._queues = queues
        self._server: Any = None
        self._thread: Any = None
        self.registry = registry = prom.CollectorRegistry(auto_describe=True)
        labels = ("queue", "task_name")
        self.started = prom.Counter(
            "teguh_runs_started", "Runs whose handler started.", labels, registry=registry
        )
        self.succeeded = prom.Counter(
            "teguh_runs_succeeded", "Runs completed (committed).", labels, registry=registry
        )
        self.retried = prom.Counter(
            "teguh_runs_retried", "Runs that failed and will be retried.", labels, registry=registry
        )
        self.failed = prom.Counter(
            "teguh_runs_failed", "Runs whose task failed for good.", labels, registry=registry
        )
        self.cancelled = prom.Counter(
            "teguh_runs_cancelled", "Runs ended by their task's cancellation.", labels, registry=registry
        )
        self.duration = prom.Histogram(
            "teguh_run_duration_seconds",
            "Run time of handlers, from their start to their recorded outcome.",
            labels,
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.queue_wait = prom.Histogram(
            "teguh_queue_wait_seconds",
            "Time from a task becoming claimable to its handler's start.",
            labels,
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        running = prom.Gauge("teguh_runs_running", "Handlers running now in this worker.", registry=registry)
        running.set_function(lambda: inflight.active)
        buffered = prom.Gauge(
            "teguh_runs_buffered", "Runs claimed and waiting for a free handler thread.", registry=registry
        )
        buffered.set_function(lambda: inflight.buffered)
        registry.register(_QueueDepth(prom, client, queues))

    def hooks(self) -> Hooks:
        """The hooks that count runs (added to the app's by the worker)."""
        hooks = Hooks()
        hooks.add("task_started", self._on_started)
        hooks.add("task_succeeded", self._on_ended(self.succeeded))
        hooks.add("task_retrying", self._on_ended(self.retried))
        hooks.add("task_failed", self._on_ended(self.failed))
        hooks.add("task_cancelled", self._on_ended(self.cancelled))
        return hooks

    def _on_started(self, ctx: Any, **details: Any) -> None:
        labels = (details["queue"], details["task_name"])
        self.started.labels(*labels).inc()
        waited = details.get("queue_wait")
        if waited is not None:
            self.queue_wait.labels(*labels).observe(waited)

    def _on_ended(self, counter: Any) -> Any:
        def ended(ctx: Any, **details: Any) -> None:
            labels = (details["queue"], details["task_name"])
            counter.labels(*labels).inc()
            if details.get("duration") is not None:
                self.duration.labels(*labels).observe(details["duration"])

        return ended

    @property
    def address(self) -> tuple[str, int] | None:
        """`(host, port)` served (the port chosen when given 0), or None when not serving."""
        if self._server is None:
            return None
        return (self._host, self._server.server_address[1])

    def start(self) -> None:
        """Serve `/metrics` from a daemon thread."""
        try:
            self._server, self._thread = self._prom.start_http_server(
                self._port, addr=self._host, registry=self.registry
            )
        except OSError as exc:
            raise TeguhError(f"cannot serve metrics on {self._host}:{self._port}: {exc}") from None
        logger.info("metrics on http://%s:%d/metrics", self._host, self._server.server_address[1])

    def stop(self) -> None:
        """Stop serving."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


class _QueueDepth:
    """A collector reading each served queue's counts at scrape time (`Client.queue_depth`)."""

    def __init__(self, prom: Any, client: Client, queues: tuple[str, ...]) -> None:
        self._prom = prom
        self._client = client
        self._queues = queues

    def describe(self) -> list[Any]:
        return [self._family()]

    def _family(self) -> Any:
        from prometheus_client.core import GaugeMetricFamily

        return GaugeMetricFamily(
            "teguh_queue_tasks",
            "Tasks of the queue by state: ready, running, scheduled, waiting (read at scrape time).",
            labels=("queue", "state"),
        )

    def collect(self) -> Iterator[Any]:
        family = self._family()
        for queue in self._queues:
            try:
                depth = self._client.queue_depth(queue)
            except Exception as exc:  # a scrape must not fail for a lost database
                logger.warning(
                    "metrics: could not read the counts of queue %s (%s)", queue, error_message(exc)
                )
                continue
            for state, count in depth.items():
                family.add_metric((queue, state), count)
        yield family
