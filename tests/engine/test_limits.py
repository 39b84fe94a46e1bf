"""Flow-control limits in the claim (docs/flow-control.md): per-type concurrency,
concurrency keys, rate limits, the slots' release and the wake-ups, at the SQL level."""

from __future__ import annotations

from pathlib import Path

import pytest
from teguh_engine_helpers import Q, bg, j, join_all, snapshot, sqlstate, ts

CHANNEL = f"teguh_{Q}"
SCHEMA_FILE = Path(__file__).resolve().parents[2] / "teguh" / "schema" / "teguh.sql"


def register(e, *types: dict) -> None:
    e.sql.run("select teguh.register_task_types(%s, %s::jsonb, null)", e.q, j(list(types)))


def names(runs: list[dict]) -> list[str]:
    return [r["task_name"] for r in runs]


def has_limits(e) -> bool:
    return e.sql.value("select has_limits from teguh.queues where queue_name = %s", e.q)


# -- per-type concurrency --------------------------------------------------------


def test_a_queue_without_limits_stays_on_the_plain_claim(eng):
    register(eng, {"task_name": "plain", "max_attempts": 3})
    eng.spawn("plain", rate_limit_key="ignored")
    assert not has_limits(eng)
    assert len(eng.claim(qty=5)) == 1
    assert eng.rows("r")[0]["task_name"] is None, "no slot recorded on the plain path"


def test_type_concurrency_caps_the_claim_and_other_types_flow(eng):
    register(eng, {"task_name": "imp", "concurrency": 2})
    assert has_limits(eng)
    imports = [eng.spawn("imp", {"i": i})["task_id"] for i in range(5)]
    other = eng.spawn("other")["task_id"]
    runs = eng.claim(qty=10)
    assert names(runs) == ["imp", "imp", "other"]
    assert runs[2]["task_id"] == other
    assert [r["task_id"] for r in runs[:2]] == imports[:2], "in order"
    assert eng.claim(qty=10) == []
    eng.complete(runs[0]["run_id"])
    (run,) = eng.claim(qty=10)
    assert run["task_id"] == imports[2]


def test_concurrent_claims_never_exceed_the_limit(eng, engine_factory):
    register(eng, {"task_name": "imp", "concurrency": 3})
    eng.spawn_many([{"task_name": "imp"} for _ in range(40)])
    claimers = [engine_factory() for _ in range(8)]
    threads = [bg(c.claim, f"w{n}", 60, 5) for n, c in enumerate(claimers)]
    join_all(threads)
    assert [t.error for t in threads if t.error] == []
    assert sum(len(t.result) for t in threads) == 3
    assert eng.count("r") == 3


# -- concurrency keys --------------------------------------------------------------


def test_a_concurrency_key_defaults_to_one_at_a_time_even_for_an_unregistered_type(eng):
    a1 = eng.spawn("sync", concurrency_key="customer:1")["task_id"]
    a2 = eng.spawn("sync", concurrency_key="customer:1")["task_id"]
    b1 = eng.spawn("sync", concurrency_key="customer:2")["task_id"]
    assert has_limits(eng), "the first keyed spawn turns the limited claim on"
    runs = eng.claim(qty=10)
    assert [r["task_id"] for r in runs] == [a1, b1]
    assert eng.claim(qty=10) == []
    eng.complete(runs[0]["run_id"])
    assert [r["task_id"] for r in eng.claim(qty=10)] == [a2]


def test_a_claim_that_read_the_flag_before_the_first_keyed_spawn_leaves_keyed_tasks(eng):
    # The race: a claim reads has_limits (false), then the first keyed spawns
    # commit, then the claim picks. Calling the per-queue claim with
    # p_limits => false is that claim's view.
    plain = eng.spawn("sync")["task_id"]
    keyed = [eng.spawn("sync", concurrency_key="customer:1")["task_id"] for _ in range(2)]
    assert has_limits(eng)
    stale = eng.sql.dicts(f"select * from teguh._claim_{eng.q}('w-stale', 60, 10, false, '{{}}', false)")
    assert [r["task_id"] for r in stale] == [plain], "keyed tasks wait for a limited claim"
    runs = eng.claim(qty=10)
    assert [r["task_id"] for r in runs] == [keyed[0]], "then one at a time for the key"


def test_key_concurrency_and_type_concurrency_together(eng):
    register(eng, {"task_name": "sync", "key_concurrency": 2, "concurrency": 3})
    eng.spawn_many([{"task_name": "sync", "concurrency_key": k} for k in ["a", "a", "a", "b", "b"]])
    runs = eng.claim(qty=10)
    assert len(runs) == 3
    keys = [eng.task(r["task_id"])["concurrency_key"] for r in runs]
    assert keys == ["a", "a", "b"]


# -- rate limits --------------------------------------------------------------------


def test_a_rate_limit_hands_out_tokens_and_next_due_says_when_the_next_is_due(eng):
    register(eng, {"task_name": "call", "rate_limit": "10/s"})
    eng.spawn_many([{"task_name": "call"} for _ in range(5)])
    assert len(eng.claim(qty=10)) == 1, "a bucket holds ceil(10 / 10) = 1 token"
    assert eng.claim(qty=10) == []
    assert eng.next_due() == ts(0.1)
    eng.at(0.05)
    assert eng.claim(qty=10) == []
    eng.at(0.1)
    assert len(eng.claim(qty=10)) == 1
    eng.at(10)
    assert len(eng.claim(qty=10)) == 1, "the bucket never holds more than its capacity"
    assert eng.next_due() == ts(10.1)


def test_a_bucket_holds_a_tenth_of_the_rate(eng):
    register(eng, {"task_name": "call", "rate_limit": "100/m"})
    eng.spawn_many([{"task_name": "call"} for _ in range(30)])
    assert len(eng.claim(qty=50)) == 10
    eng.at(6)  # 100 per minute: 10 more tokens in 6 s
    assert len(eng.claim(qty=50)) == 10


def test_a_rate_limit_key_gives_each_key_its_own_bucket(eng):
    register(eng, {"task_name": "call", "rate_limit": "1/h"})
    eng.spawn_many([{"task_name": "call", "rate_limit_key": k} for k in ["a", "a", "b"]])
    runs = eng.claim(timeout=0, qty=10)  # leases that never expire: next_due is the bucket's
    assert sorted(eng.task(r["task_id"])["rate_limit_key"] for r in runs) == ["a", "b"]
    assert eng.next_due() == ts(3600)


def test_a_drained_bucket_does_not_keep_next_due_in_the_past(eng):
    register(eng, {"task_name": "call", "rate_limit": "10/s"})
    eng.spawn_many([{"task_name": "call"} for _ in range(2)])
    eng.claim(timeout=0, qty=10)
    eng.claim(timeout=0, qty=10)
    assert eng.next_due() == ts(0.1)
    eng.at(1)
    assert len(eng.claim(timeout=0, qty=10)) == 1
    assert eng.claim(timeout=0, qty=10) == []
    assert eng.next_due() is None


# -- slots end with the run, however it ends -----------------------------------------


def _end_fail(eng, run):
    eng.fail(run["run_id"], retry_at=ts(100))


def _end_sleep(eng, run):
    eng.sleep(run["run_id"], "nap", duration=100)


def _end_schedule(eng, run):
    eng.schedule(run["run_id"], ts(100))


def _end_cancel(eng, run):
    eng.cancel(run["task_id"])


def _end_non_retryable(eng, run):
    eng.sql.run("select teguh.fail_run_non_retryable(%s, %s, '{}'::jsonb)", eng.q, run["run_id"])


def _end_complete_runs(eng, run):
    eng.sql.run(
        "select * from teguh.complete_runs(%s, %s::uuid[], %s::jsonb[])", eng.q, [run["run_id"]], ["1"]
    )


def _end_lease_expiry(eng, run):
    eng.at(61)  # the claim below recovers the expired lease first


@pytest.mark.parametrize(
    "end",
    [
        _end_fail,
        _end_sleep,
        _end_schedule,
        _end_cancel,
        _end_non_retryable,
        _end_complete_runs,
        _end_lease_expiry,
    ],
    ids=lambda f: f.__name__[5:],
)
def test_a_slot_is_released_however_the_run_ends(eng, listener_factory, end):
    retry_later = {"kind": "fixed", "base_seconds": 100}
    register(eng, {"task_name": "solo", "concurrency": 1, "retry_strategy": retry_later})
    eng.spawn("solo")
    second = eng.spawn("solo")["task_id"]
    (run,) = eng.claim(qty=5)
    assert eng.claim(qty=5) == []
    lst = listener_factory(CHANNEL)
    lst.collect(eng.sql)
    end(eng, run)
    runs = eng.claim(qty=5)
    assert [r["task_id"] for r in runs] == [second]
    if end is not _end_lease_expiry:
        assert "wake" in [p for _, p in lst.collect(eng.sql)], "idle workers learn the slot is free"


def test_only_runs_that_held_a_slot_notify_when_they_end(eng, listener_factory):
    register(eng, {"task_name": "solo", "concurrency": 1})
    eng.spawn("other")
    lst = listener_factory(CHANNEL)
    (run,) = eng.claim()
    lst.collect(eng.sql)
    eng.complete(run["run_id"])
    assert lst.collect(eng.sql) == []


# -- bad input, upgrades ---------------------------------------------------------------


def test_bad_keys_and_limits_write_nothing(eng):
    before = snapshot(eng.sql)
    with sqlstate("TG004"):
        eng.spawn("t", concurrency_key="k" * 1025)
    with sqlstate("TG004"):
        eng.spawn_many([{"task_name": "t"}, {"task_name": "t", "rate_limit_key": ""}])
    with sqlstate("TG004"):
        eng.spawn("t", concurrency_key=42)
    for bad in ({"concurrency": 0}, {"key_concurrency": -1}, {"rate_limit": "20/x"}, {"rate_limit": "0/s"}):
        with sqlstate("TG004"):
            register(eng, {"task_name": "t", **bad})
    assert snapshot(eng.sql) == before


def test_retry_as_a_new_task_keeps_the_keys(eng):
    task_id, run_id = eng.start("t", concurrency_key="c", rate_limit_key="r", max_attempts=1)
    eng.fail(run_id)
    copy = eng.retry(task_id, spawn_new=True)
    row = eng.task(copy["task_id"])
    assert (row["concurrency_key"], row["rate_limit_key"]) == ("c", "r")


def test_reinstall_brings_a_queue_from_before_flow_control_up_to_date(db):
    db.run("select teguh.create_queue('old')")
    db.run("select * from teguh.spawn_task('old', 'x', '1')")
    # what a queue (and the schema) looked like before flow control
    db.run('alter table teguh."t_old" drop column concurrency_key, drop column rate_limit_key')
    db.run('alter table teguh."r_old" drop column task_name, drop column concurrency_key')
    db.run("alter table teguh.queues drop column has_limits")
    db.run("drop table teguh.rate_limits")
    db.run("drop function teguh._claim_old(text, int, int, boolean, text[], boolean)")
    old_claim = "teguh._claim_old(text, int, int, boolean, text[])"
    db.run(f"create function {old_claim} returns void language sql as 'select'")

    with db.conn.cursor() as cur:
        cur.execute(SCHEMA_FILE.read_text())
    db.conn.commit()

    assert db.value("select count(*) from pg_proc where proname = '_claim_old'") == 1
    db.run("select * from teguh.spawn_task('old', 'y', '1', '{\"concurrency_key\": \"k\"}')")
    db.run("select * from teguh.spawn_task('old', 'y', '2', '{\"concurrency_key\": \"k\"}')")
    runs = db.dicts("select * from teguh.claim_task('old', 'w', 60, 10)")
    assert [r["task_name"] for r in runs] == ["x", "y"], "the old task, then one of key k"
    assert db.value("select count(*) from teguh.rate_limits") == 0
