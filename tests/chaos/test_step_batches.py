"""Group-committed steps (teguh/_checkpoint_batch.py) under SIGKILL: exactly-once holds.

Worker processes of high concurrency run tasks of short steps, so that the
checkpoints of different runs are written together in one statement, while one
process at a time is SIGKILLed. Every step body's execution is recorded, so the
scenario's invariants check that each completed task's result names exactly
the executions whose checkpoints committed, and that no step ran twice except
where a kill fell between its body and its checkpoint.
"""

from __future__ import annotations

from typing import Any

import pytest

from . import harness, scenarios

pytestmark = pytest.mark.chaos


@pytest.mark.timeout(240)
def test_batched_checkpoints_survive_sigkills(chaos_dsn: str, supervise: Any) -> None:
    scenarios.sigkill_chaos(
        chaos_dsn,
        supervise,
        tasks=300,
        workers=2,
        every=1.5,
        duration=6.0,
        step_seconds=0.005,
        claim_timeout=2,
        concurrency=12,
    )
    # the steps of different tasks were indeed written together: one batch
    # stamps all its checkpoints with the same database time (single writes,
    # each its own clock_timestamp(), do not share one three ways)
    shared = harness.value(
        chaos_dsn,
        "select count(*) from (select updated_at from teguh.c_jobs group by updated_at"
        " having count(distinct task_id) >= 3) x",
    )
    assert shared > 0
