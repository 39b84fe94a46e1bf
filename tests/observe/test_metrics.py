"""Prometheus metrics of a worker: scraped over real HTTP and parsed with prometheus_client's parser."""

from __future__ import annotations

import sys
import threading
import urllib.request
from typing import Any

import pytest
from _support.polling import eventually
from prometheus_client.parser import text_string_to_metric_families

from teguh import InvalidArgument, NoRetry
from teguh.app import App

from .conftest import Q


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the worker's /metrics, by (name, sorted labels)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        assert response.status == 200
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: dict, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


@pytest.mark.timeout(60)
def test_counters_histograms_and_gauges(app: App, start_worker: Any) -> None:
    release = threading.Event()

    @app.task("echo")
    def echo(params: Any) -> Any:
        return params

    @app.task("flaky", max_attempts=2, retry_strategy=NoRetry())
    def flaky(params: Any) -> Any:
        raise ValueError("no")

    @app.task("block")
    def block(params: Any) -> Any:
        release.wait(20)

    handle = start_worker(metrics_port=0, concurrency=2)
    address = handle.worker.metrics_address
    assert address is not None
    port = address[1]
    for i in range(3):
        echo.spawn(i)
    failing = flaky.spawn().task_id
    assert app.client.wait_for_result(Q, failing, timeout=15).state == "failed"
    handle.wait_idle()
    samples = scrape(port)
    echo_labels = {"queue": Q, "task_name": "echo"}
    flaky_labels = {"queue": Q, "task_name": "flaky"}
    assert value(samples, "teguh_runs_started_total", **echo_labels) == 3
    assert value(samples, "teguh_runs_succeeded_total", **echo_labels) == 3
    assert value(samples, "teguh_runs_started_total", **flaky_labels) == 2
    assert value(samples, "teguh_runs_retried_total", **flaky_labels) == 1
    assert value(samples, "teguh_runs_failed_total", **flaky_labels) == 1
    assert value(samples, "teguh_run_duration_seconds_count", **echo_labels) == 3
    assert value(samples, "teguh_run_duration_seconds_count", **flaky_labels) == 2
    assert value(samples, "teguh_queue_wait_seconds_count", **echo_labels) == 3
    assert value(samples, "teguh_queue_wait_seconds_bucket", **echo_labels, le="+Inf") == 3
    assert value(samples, "teguh_runs_running") == 0
    assert value(samples, "teguh_runs_buffered") == 0
    assert value(samples, "teguh_queue_tasks", queue=Q, state="ready") == 0

    # a running handler and a ready task show in the gauges
    block.spawn()
    block.spawn()
    echo.spawn("later")
    eventually(lambda: value(scrape(port), "teguh_runs_running") == 2, timeout=15)
    eventually(lambda: value(scrape(port), "teguh_queue_tasks", queue=Q, state="ready") == 0, timeout=15)
    samples = scrape(port)
    # the task state "running" counts every claimed run, prefetched ones too
    assert value(samples, "teguh_runs_buffered") == 1
    assert value(samples, "teguh_queue_tasks", queue=Q, state="running") == 3
    release.set()
    handle.wait_idle()
    assert value(scrape(port), "teguh_runs_succeeded_total", **echo_labels) == 4
    handle.stop()
    assert handle.worker.metrics_address is None


def test_a_missing_extra_names_it(app: App, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)  # import fails as if not installed
    with pytest.raises(InvalidArgument, match=r"pip install 'teguh\[metrics\]'"):
        app.worker(metrics_port=9100)
    with pytest.raises(InvalidArgument, match="metrics_port must be a TCP port"):
        app.worker(metrics_port=70000)


def test_cli_without_the_extra_says_what_to_install(dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import logging

    from click.testing import CliRunner

    from teguh.cli import main, worker_cmd

    option = next(p for p in worker_cmd.params if p.name == "metrics_port")
    assert option.opts == ["--metrics-port"] and option.envvar == "TEGUH_METRICS_PORT"
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    monkeypatch.setattr("teguh._malloc.tune_worker_process", lambda: None)
    try:
        result = CliRunner().invoke(
            main, ["--dsn", dsn, "worker", "--app", "teguh.demo:app", "--metrics-port", "9100"]
        )
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    assert result.exit_code == 1, result.output
    assert "teguh: error: metrics_port (--metrics-port) needs the prometheus-client package" in result.output
    assert "pip install 'teguh[metrics]'" in result.output


def test_queue_depth_counts_live_tasks_by_state(app: App) -> None:
    from datetime import datetime, timedelta, timezone

    from teguh import QueueNotFound

    client = app.client
    assert client.queue_depth(Q) == {"ready": 0, "running": 0, "scheduled": 0, "waiting": 0}
    client.spawn_task(Q, "a")
    client.spawn_task(Q, "a")
    client.spawn_task(Q, "a", available_at=datetime.now(timezone.utc) + timedelta(hours=1))
    client.claim_task(Q, "w", 30, 1)
    assert client.queue_depth(Q) == {"ready": 1, "running": 1, "scheduled": 1, "waiting": 0}
    with pytest.raises(QueueNotFound):
        client.queue_depth("nope")
