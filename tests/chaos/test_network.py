"""The network between worker and database cut or silenced (through `proxy.Proxy`)."""

from __future__ import annotations

import time
from typing import Any

import psycopg2
import pytest

from . import harness, scenarios

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(240)]


def _proxied(dsn: str, proxy: Any) -> str:
    info = psycopg2.extensions.parse_dsn(dsn)
    return proxy.dsn(info["dbname"], info["user"])


@pytest.mark.parametrize("fault", ["stop", "blackhole"])
def test_worker_recovers_on_its_own_after_the_network_comes_back(
    fault: str, chaos_dsn: str, proxy: Any, procs: Any
) -> None:
    tasks = 60
    harness.spawn_steps(chaos_dsn, tasks, seconds=0.1)
    # the ledger bypasses the proxy: only the worker's own connections are cut
    wp = procs(
        _proxied(chaos_dsn, proxy),
        {"claim_timeout": 5, "concurrency": 4, "poll_interval": 2},
        env={"CHAOS_LEDGER_DSN": chaos_dsn},
    )
    harness.wait_until(lambda: harness.value(chaos_dsn, "select count(*) from completions") >= 5, 60)
    getattr(proxy, fault)()
    outage_started = time.monotonic()
    # an outage longer than the lease: the worker's runs are lost meanwhile
    harness.wait_until(lambda: time.monotonic() - outage_started > 8, 10)
    proxy.resume()
    resumed = time.monotonic()
    harness.wait_until(
        lambda: harness.not_terminal(chaos_dsn) == 0,
        150,
        interval=0.5,
        what=lambda: f"drained after {fault}\n{wp.stacks()}",
    )
    figures = scenarios.report(
        f"network_{fault}",
        tasks=tasks,
        outage_s=8,
        recovered_in_s=round(time.monotonic() - resumed, 1),
        states=harness.states(chaos_dsn),
        violations=harness.invariants(chaos_dsn),
    )
    assert wp.alive(), wp.log()
    assert harness.states(chaos_dsn) == {"completed": tasks}, figures
    assert figures["violations"] == scenarios.ALL_ZERO, figures
