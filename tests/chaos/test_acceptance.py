"""The acceptance scenarios of docs/reliability.md.

The quick versions (scaled down) run in every `pytest`; the full figures run
with `pytest -m chaos_long tests/chaos -s` (marker `chaos_long`, deselected
by default, and also `slow`, so that a `-m` given on the command line, which
replaces the default, cannot pull them in unless it asks for them). Set
`CHAOS_RESULTS=file.jsonl` to collect the measured figures.
"""

from __future__ import annotations

from typing import Any

import pytest

from . import harness, scenarios

pytestmark = pytest.mark.chaos


@pytest.mark.timeout(240)
def test_sigkill_chaos_quick(chaos_dsn: str, supervise: Any) -> None:
    scenarios.sigkill_chaos(
        chaos_dsn,
        supervise,
        tasks=200,
        workers=3,
        every=2.0,
        duration=16.0,
        step_seconds=0.25,
        claim_timeout=3,
        concurrency=4,
    )


@pytest.mark.chaos_long
@pytest.mark.slow
@pytest.mark.timeout(900)
def test_sigkill_chaos_long(chaos_dsn: str, supervise: Any) -> None:
    scenarios.sigkill_chaos(
        chaos_dsn,
        supervise,
        tasks=2000,
        workers=4,
        every=2.0,
        duration=60.0,
        step_seconds=0.2,
        claim_timeout=5,
        concurrency=4,
    )


def _server_dsn(server: Any) -> str:
    dsn = server.get_uri()
    harness.query(dsn, (harness.REPO / "teguh" / "schema" / "teguh.sql").read_text())
    harness.install_ledger(dsn)
    return dsn


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_postgres_restarted_twice_during_a_drain_quick(own_server: Any, supervise: Any) -> None:
    scenarios.postgres_restarts(
        _server_dsn(own_server),
        own_server,
        supervise,
        tasks=150,
        workers=2,
        step_seconds=0.05,
    )


@pytest.mark.chaos_long
@pytest.mark.slow
@pytest.mark.timeout(900)
def test_postgres_restarted_twice_during_a_drain_long(own_server: Any, supervise: Any) -> None:
    scenarios.postgres_restarts(
        _server_dsn(own_server),
        own_server,
        supervise,
        tasks=2000,
        workers=4,
        step_seconds=0.02,
    )


@pytest.mark.timeout(120)
def test_listen_backend_terminated_task_still_starts_within_1s(chaos_dsn: str, procs: Any) -> None:
    scenarios.listen_backend_killed(chaos_dsn, procs, rounds=3)


@pytest.mark.chaos_long
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_listen_backend_terminated_long(chaos_dsn: str, procs: Any) -> None:
    scenarios.listen_backend_killed(chaos_dsn, procs, rounds=20)


@pytest.mark.timeout(240)
def test_every_worker_backend_terminated_repeatedly(chaos_dsn: str, procs: Any) -> None:
    scenarios.pool_backends_terminated(chaos_dsn, procs, tasks=150, rounds=3)


@pytest.mark.timeout(180)
def test_sigterm_under_load_exits_0_and_loses_nothing(chaos_dsn: str, supervise: Any) -> None:
    scenarios.sigterm_under_load(chaos_dsn, supervise, tasks=40)


@pytest.mark.timeout(120)
def test_recovery_after_sigkill_takes_about_one_claim_timeout(
    chaos_dsn: str, procs: Any, in_process_worker: Any
) -> None:
    scenarios.recovery_time(chaos_dsn, procs, in_process_worker, claim_timeout=2)


@pytest.mark.chaos_long
@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("claim_timeout", [5, 15, 30])
def test_recovery_after_sigkill_long(
    claim_timeout: int, chaos_dsn: str, procs: Any, in_process_worker: Any
) -> None:
    scenarios.recovery_time(chaos_dsn, procs, in_process_worker, claim_timeout=claim_timeout)
