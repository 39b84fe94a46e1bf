"""`teguh demo` (teguh/demo.py) end to end: every task completes, and the crash part
shows a worker process killed mid-task whose committed steps another worker does not re-run."""

from __future__ import annotations

import re
import time

import psycopg2
import pytest
from click.testing import CliRunner

from teguh import demo
from teguh.cli import main


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_the_demo_completes_and_survives_a_killed_worker_process(dsn: str) -> None:
    lines: list[str] = []
    started = time.monotonic()
    assert demo.run_demo(dsn, echo=lines.append), "\n".join(lines)
    assert time.monotonic() - started < 60
    text = "\n".join(lines)
    assert "all demo tasks completed" in lines
    assert "still running" not in text  # a configured database is not the embedded server's
    for name in ("welcome-email", "ship-order", "flaky-api"):
        assert f"{name}: completed" in text

    crash = [line for line in lines if "[import-rows" in line]
    first = [line for line in crash if "attempt 1]" in line]
    second = [line for line in crash if "attempt 2]" in line]
    # attempt 1 (worker A) committed batches 1 and 2, then was killed inside batch 3
    assert [re.sub(r" \(pid \d+\)", "", line.split("] ")[1]) for line in first] == [
        "batch 1: imported 100 rows",
        "batch 2: imported 100 rows",
        "importing batch 3 (slow)...",
    ]
    # attempt 2 (worker B, another process) re-ran only the uncommitted batch
    assert [re.sub(r" \(pid \d+\)", "", line.split("] ")[1]) for line in second] == [
        "batch 1: already committed, not run again",
        "batch 2: already committed, not run again",
        "batch 3: imported 100 rows",
    ]
    pids = {re.search(r"\(pid (\d+)\)", line).group(1) for line in first + second if "pid" in line}  # type: ignore[union-attr]
    assert len(pids) == 2, crash
    assert any(line.startswith("killed worker A") for line in lines)
    assert "import-rows: completed after 2 attempt(s), result {'rows': 300}" in text

    # the killed worker left nothing running: every demo task finished
    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute("select state, count(*) from teguh.t_demo group by state")
            assert dict(cur.fetchall()) == {"completed": 4}
    finally:
        conn.close()


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_teguh_demo_command_on_a_configured_database(dsn: str) -> None:
    result = CliRunner().invoke(main, ["--dsn", dsn, "demo"])
    assert result.exit_code == 0, result.output
    assert result.output.rstrip().endswith("all demo tasks completed")
