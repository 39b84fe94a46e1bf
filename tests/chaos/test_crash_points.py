"""Kill a worker at each named crash point: the task still completes, exactly once past its checkpoints.

A worker process armed with `TEGUH_FAULT=<point>:<n>` exits (status 137, as
after SIGKILL) in the exact window; a rescuer then recovers the task once
its lease (claim_timeout 2 s) expires. Task: steps s0, s1, s2.
"""

from __future__ import annotations

from typing import Any

import pytest

from . import harness

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(120)]

H = "$handler"
CASES = {
    # point: (ledger of the killed attempt 1, ledger of the rescue attempt 2, attempts)
    "after_claim:1": ([], [H, "s0", "s1", "s2"]),
    # s1's body returned, its checkpoint never committed: s1 (only) runs again
    "after_step_fn:2": ([H, "s0", "s1"], [H, "s1", "s2"]),
    # s1 committed: neither s0 nor s1 runs again
    "after_checkpoint_commit:2": ([H, "s0", "s1"], [H, "s2"]),
    # the handler returned: it runs again, no step body does
    "before_complete:1": ([H, "s0", "s1", "s2"], [H]),
}


@pytest.mark.parametrize("fault", list(CASES))
def test_killed_at_crash_point_task_completes_once(
    fault: str, chaos_dsn: str, procs: Any, in_process_worker: Any
) -> None:
    (task_id,) = harness.spawn_steps(chaos_dsn, 1)
    doomed = procs(chaos_dsn, {"claim_timeout": 2, "concurrency": 1}, {"TEGUH_FAULT": fault})
    assert doomed.wait(60) == 137, doomed.log()
    assert "fault point" in doomed.log()
    first, second = CASES[fault]
    assert [s for s, _ in harness.executions(chaos_dsn, task_id)] == first

    in_process_worker(chaos_dsn, claim_timeout=2, poll_interval=1)
    harness.wait_until(lambda: harness.not_terminal(chaos_dsn) == 0, 60, what="task terminal")
    state, attempts = harness.query(chaos_dsn, "select state, attempts from teguh.t_jobs")[0]
    assert (state, attempts) == ("completed", 2)
    assert harness.executions(chaos_dsn, task_id) == [(s, 1) for s in first] + [(s, 2) for s in second]
    assert harness.invariants(chaos_dsn) == dict.fromkeys(harness.INVARIANTS, 0)


def test_killed_after_completion_commit_nothing_reruns(
    chaos_dsn: str, procs: Any, in_process_worker: Any
) -> None:
    (task_id,) = harness.spawn_steps(chaos_dsn, 1)
    doomed = procs(
        chaos_dsn, {"claim_timeout": 2, "concurrency": 1}, {"TEGUH_FAULT": "after_complete_commit"}
    )
    assert doomed.wait(60) == 137, doomed.log()
    assert harness.query(chaos_dsn, "select state, attempts from teguh.t_jobs") == [("completed", 1)]
    assert harness.value(chaos_dsn, "select count(*) from teguh.r_jobs") == 0, "no lease left to reclaim"
    # a rescuer past the would-be lease expiry finds nothing to do
    rescuer = in_process_worker(chaos_dsn, claim_timeout=2, poll_interval=1)
    harness.wait_until(rescuer.worker.started.is_set, 10)
    harness.wait_until(
        lambda: harness.value(chaos_dsn, "select teguh.next_due('jobs') is null"), 10, what="nothing due"
    )
    assert rescuer.worker.processed == 0
    assert [s for s, _ in harness.executions(chaos_dsn, task_id)] == ["$handler", "s0", "s1", "s2"]
    assert harness.invariants(chaos_dsn) == dict.fromkeys(harness.INVARIANTS, 0)
