"""The harness's building blocks: crash-point parsing, the call watchdog, the proxy."""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Any

import psycopg2
import pytest

import teguh
from teguh import _faults

from . import harness


def test_fault_spec_parsing() -> None:
    assert _faults._parse(None) is None
    assert _faults._parse("") is None
    assert _faults._parse("after_claim") == ("after_claim", 1)
    assert _faults._parse("after_step_fn:3") == ("after_step_fn", 3)
    with pytest.raises(ValueError, match="unknown point"):
        _faults._parse("after_lunch")


def test_unarmed_fault_points_are_inert() -> None:
    assert _faults.ARMED is None  # conftest removes TEGUH_* from the environment
    _faults.hit("after_claim")  # returns: nothing armed


def test_armed_point_exits_137_on_its_nth_pass() -> None:
    code = (
        "from teguh import _faults\n"
        "for i in range(5):\n"
        "    print(i, flush=True)\n"
        "    _faults.hit('before_complete')\n"
    )
    env = {"TEGUH_FAULT": "before_complete:3", "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        cwd=str(harness.REPO),
        timeout=60,
    )
    assert proc.returncode == 137
    assert proc.stdout.split() == ["0", "1", "2"]


@pytest.mark.timeout(60)
def test_watchdog_drops_a_call_past_its_deadline_and_the_client_recovers(dsn: str) -> None:
    client = teguh.Client(dsn)
    client.call_timeout = 1.0
    try:
        t0 = time.monotonic()
        with pytest.raises(teguh.ConnectionLost):
            client._run("sleepy", lambda cur: cur.execute("select pg_sleep(20)"))
        assert time.monotonic() - t0 < 10
        assert client._run("after", lambda cur: (cur.execute("select 41 + 1"), cur.fetchone()[0])[1]) == 42
    finally:
        client.close()


@pytest.mark.timeout(60)
def test_proxy_forwards_cuts_and_resumes(dsn: str, proxy: Any) -> None:
    info = psycopg2.extensions.parse_dsn(dsn)
    via = proxy.dsn(info["dbname"], info["user"])
    assert harness.value(via, "select 1") == 1
    conn = harness.connect(via)
    proxy.stop()
    with pytest.raises(psycopg2.OperationalError), conn.cursor() as cur:
        cur.execute("select 1")
    with pytest.raises(psycopg2.OperationalError):
        psycopg2.connect(via, connect_timeout=2)
    proxy.resume()
    assert harness.value(via, "select 2") == 2


def test_max_stuck_runs_default_option_and_cli(dsn: str) -> None:
    from click.testing import CliRunner

    from teguh.cli import main

    app = teguh.App(dsn, queue="jobs")
    try:
        assert app.worker(concurrency=5).max_stuck_runs == 3
        assert app.worker(concurrency=1).max_stuck_runs == 1
        assert app.worker(concurrency=4, max_stuck_runs=0).max_stuck_runs == 0
        with pytest.raises((ValueError, TypeError)):
            app.worker(max_stuck_runs=-1)
    finally:
        app.client.close()
    result = CliRunner().invoke(main, ["worker", "--help"])
    assert result.exit_code == 0
    assert "--max-stuck-runs" in result.output
