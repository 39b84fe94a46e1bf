"""Errors that steer retries, at the SQL level: fail_run_non_retryable, snooze_run, jitter."""

from __future__ import annotations

from pathlib import Path

import pytest
from teguh_engine_helpers import BASE, j, sqlstate, ts, uid

SCHEMA_FILE = Path(__file__).resolve().parents[2] / "teguh" / "schema" / "teguh.sql"


def fail_for_good(eng, run_id, reason=None):
    eng.sql.run(
        "select teguh.fail_run_non_retryable(%s, %s, %s::jsonb)",
        eng.q,
        uid(run_id),
        j(reason or {"type": "Bad", "message": "no"}),
    )


def snooze(eng, run_id, wake_at):
    eng.sql.run("select teguh.snooze_run(%s, %s, %s)", eng.q, uid(run_id), wake_at)


def test_non_retryable_fails_the_task_with_attempts_left(eng):
    task_id, run_id = eng.start(max_attempts=5, notify_done=True)
    fail_for_good(eng, run_id, {"type": "Bad", "message": "bad input"})
    row = eng.task(task_id)
    assert (row["state"], row["attempts"]) == ("failed", 1)
    assert row["failure_reason"] == {"type": "Bad", "message": "bad input", "non_retryable": True}
    assert eng.count("p") == 0 and eng.count("r") == 0
    assert row["available_at"] is None and row["finished_at"] == BASE
    with sqlstate("AB002"):
        fail_for_good(eng, run_id)


def test_non_retryable_with_unlimited_attempts_and_a_text_reason(eng):
    task_id, run_id = eng.start()
    fail_for_good(eng, run_id, "just text")
    row = eng.task(task_id)
    assert row["state"] == "failed" and row["failure_reason"] == "just text"


def test_snooze_uses_no_attempt_and_counts_snoozes(eng):
    task_id, run_id = eng.start(max_attempts=1)
    snooze(eng, run_id, ts(30))
    row = eng.task(task_id)
    assert (row["state"], row["attempts"], row["snoozes"], row["available_at"]) == ("sleeping", 1, 1, ts(30))
    assert eng.claim() == []
    eng.at(30)
    run = eng.claim_one()
    assert run["attempt"] == 1, "a snooze does not use an attempt"
    snooze(eng, run["run_id"], ts(10))  # already passed: claimable at once
    assert eng.result(task_id)["snoozes"] == 2
    run = eng.claim_one()
    assert run["attempt"] == 1
    eng.complete(run["run_id"], "ok")
    result = eng.result(task_id)
    assert (result["state"], result["attempts"], result["snoozes"]) == ("completed", 1, 2)


def test_snooze_needs_a_lease_and_a_time(eng):
    _, run_id = eng.start()
    with sqlstate("TG004"):
        snooze(eng, run_id, None)
    eng.complete(run_id)
    with sqlstate("AB002"):
        snooze(eng, run_id, ts(1))


def test_retry_at_counts_the_attempt_and_ends_at_max_attempts(eng):
    """What RetryAfter sends: fail_run with retry_at, whatever the strategy says."""
    task_id, run_id = eng.start(max_attempts=2, retry_strategy={"kind": "fixed", "base_seconds": 1000})
    eng.fail(run_id, retry_at=ts(5))
    row = eng.task(task_id)
    assert (row["state"], row["attempts"], row["available_at"]) == ("sleeping", 2, ts(5))
    eng.at(5)
    run = eng.claim_one()
    eng.fail(run["run_id"], retry_at=ts(60))
    assert eng.state(task_id) == "failed", "the last attempt fails the task, whatever retry_at says"


def test_jitter_spreads_delays_within_bounds(db):
    rows = db.all(
        "select teguh._retry_delay(%s::jsonb, 1) from generate_series(1, 2000)",
        j({"kind": "fixed", "base_seconds": 100, "jitter": 0.2}),
    )
    delays = [r[0] for r in rows]
    assert all(100 <= d <= 120 for d in delays), (min(delays), max(delays))
    assert max(delays) - min(delays) > 15, "the draws spread over the range"
    assert len(set(delays)) > 1000
    # exponential: the cap applies before the jitter
    rows = db.all(
        "select teguh._retry_delay(%s::jsonb, 10) from generate_series(1, 500)",
        j({"kind": "exponential", "base_seconds": 10, "factor": 2, "max_seconds": 300, "jitter": 0.1}),
    )
    assert all(300 <= r[0] <= 330 for r in rows)
    # no jitter key: the exact delay (strategies stored before jitter existed)
    assert db.value("select teguh._retry_delay(%s::jsonb, 3)", j({"kind": "exponential"})) == 120
    assert db.value("select teguh._retry_delay(%s::jsonb, 1)", j({"kind": "none", "jitter": 1})) == 0


@pytest.mark.parametrize("jitter", [-0.1, 1.5, "0.1", True])
def test_bad_jitter_is_refused_at_spawn(eng, jitter):
    with sqlstate("TG004"):
        eng.spawn(retry_strategy={"kind": "exponential", "jitter": jitter})


def test_reinstall_keeps_grants_on_get_task_result_whose_columns_changed(db):
    """An install made before snoozes existed: get_task_result had seven columns."""
    db.run("select teguh.create_queue('up')")
    task = db.dicts("select * from teguh.spawn_task('up', 'x', '1')")[0]
    db.run("drop role if exists teguh_up_reader")
    db.run("create role teguh_up_reader")
    db.run("drop function teguh.get_task_result(text, uuid)")
    db.run(
        "create function teguh.get_task_result(q text, p_task_id uuid)"
        " returns table(task_id uuid, state text, attempts int, result jsonb, failure_reason jsonb,"
        " cancelled_at timestamptz, finished_at timestamptz) language sql"
        " as 'select null::uuid, null, null::int, null::jsonb, null::jsonb, null::timestamptz,"
        " null::timestamptz where false'"
    )
    db.run("revoke execute on function teguh.get_task_result(text, uuid) from public")
    db.run("select teguh.grant_producer('teguh_up_reader')")
    db.run('alter table teguh."t_up" drop column snoozes cascade')
    try:
        with db.conn.cursor() as cur:
            cur.execute(SCHEMA_FILE.read_text())
        db.conn.commit()
        assert db.value(
            "select has_function_privilege('teguh_up_reader', 'teguh.get_task_result(text, uuid)', 'execute')"
        )
        assert not db.value(
            "select has_function_privilege('public', 'teguh.get_task_result(text, uuid)', 'execute')"
        )
        row = db.dicts("select * from teguh.get_task_result('up', %s)", task["task_id"])[0]
        assert (row["state"], row["snoozes"]) == ("pending", 0)
    finally:
        db.run("select teguh.revoke_all('teguh_up_reader')")
        db.run("drop role teguh_up_reader")
