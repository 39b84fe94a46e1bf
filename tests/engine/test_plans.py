"""Zero-bloat dispatch (p_ never updated) and an index-driven, bounded claim path."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from teguh_engine_helpers import Engine, Q, j, ts

PER_QUEUE = [f"{p}_{Q}" for p in ("t", "p", "r", "c", "e", "w")]


def exercise_every_path(e: Engine, helper: Engine) -> int:
    """Drives p_ through every transition; returns how many runs were claimed."""
    claims = 0

    def claim(qty=1, **kw):
        nonlocal claims
        rows = e.claim(qty=qty, **kw)
        claims += len(rows)
        return rows

    e.spawn_many([{"task_name": "bulk", "params": {"i": i}} for i in range(200)])
    for _ in range(20):
        e.spawn("single", {"x": 1}, priority=3)
    e.spawn("dup", idempotency_key="k")
    e.spawn("dup", idempotency_key="k")
    runs = claim(qty=150, timeout=30)
    for r in runs[:50]:
        e.complete(r["run_id"], {"ok": True})
    for r in runs[50:80]:
        e.fail(r["run_id"])  # immediate retry: a new p_ row
    for r in runs[80:100]:
        e.fail(r["run_id"], retry_at=ts(20))  # delayed retry
    for r in runs[100:110]:
        e.schedule(r["run_id"], ts(10))
    for r in runs[110:120]:
        e.sleep(r["run_id"], "nap", duration=15)
    for i, r in enumerate(runs[120:130]):
        e.await_event(r["task_id"], r["run_id"], "s", f"ev{i % 3}")
    for r in runs[130:140]:
        e.await_event(r["task_id"], r["run_id"], "s", "never", timeout=12)
    # runs[140:150] keep their leases and expire
    e.emit("ev0", {"v": 0})
    helper.emit("ev1", None)
    pending = [r["task_id"] for r in e.rows("p")][:10]
    for tid in pending:
        e.cancel(tid)
    e.at(25)
    e.ticker()
    while True:
        rows = claim(qty=25, timeout=0)
        if not rows:
            break
        for r in rows:
            if r["task_name"] == "single":
                e.fail(r["run_id"], {"type": "x"})
            else:
                e.complete(r["run_id"])
    # a cancelled task retried by hand, and one failed for good retried
    e.retry(pending[0])
    claims += len(claim(qty=5))
    e.emit("ev2", [1])
    claims += len(claim(qty=50))
    return claims


@pytest.mark.slow
def test_dispatch_rows_are_never_updated(eng, engine_factory, sql_factory):
    helper = engine_factory(at=0)
    claims = exercise_every_path(eng, helper)
    assert claims > 300
    remaining = eng.count("p")
    for s in (eng.sql, helper.sql):
        s.run("select pg_stat_force_next_flush()")
    helper.sql.conn.close()
    observer = sql_factory()
    deadline = time.monotonic() + 20
    while True:
        observer.run("select pg_stat_clear_snapshot()")
        row = observer.dicts(
            "select n_tup_ins, n_tup_upd, n_tup_hot_upd, n_tup_del from pg_stat_user_tables"
            " where schemaname = 'teguh' and relname = %s",
            f"p_{Q}",
        )[0]
        if row["n_tup_ins"] >= claims + remaining and row["n_tup_del"] >= claims:
            break
        assert time.monotonic() < deadline, f"statistics never caught up: {row}, claims={claims}"
        eng.sql.run("select pg_stat_force_next_flush()")
        time.sleep(0.05)
    assert row["n_tup_upd"] == 0, row
    assert row["n_tup_hot_upd"] == 0, row


def load_100k(e: Engine) -> None:
    """110k tasks: ~70k pending, 10k delayed, 13k leases, 5k sleepers, 12k waits; ANALYZE."""
    batch = (
        "select count(*) from teguh.spawn_tasks(%s, (select jsonb_agg(jsonb_build_object("
        "'task_name', 'bulk', 'params', jsonb_build_object('i', g)) || %s::jsonb)"
        " from generate_series(1, %s) g))"
    )
    for _ in range(4):
        assert e.sql.value(batch, e.q, "{}", 25000) == 25000
    later = {"available_at": ts(3600).isoformat()}
    assert e.sql.value(batch, e.q, j(later), 5000) == 5000
    deadline = {"available_at": ts(5000).isoformat(), "cancellation": {"max_delay": 7200}}
    assert e.sql.value(batch, e.q, j(deadline), 5000) == 5000
    for _ in range(3):
        assert len(e.claim(qty=10000, timeout=600)) == 10000
    r = e.table("r")
    e.sql.run(
        f"with x as materialized (select run_id from {r} order by run_id limit 5000)"
        " select count(teguh.schedule_run(%s, x.run_id, %s)) from x",
        e.q,
        ts(1800),
    )
    e.sql.run(
        f"with x as materialized (select task_id, run_id from {r} order by run_id desc limit 12000)"
        " select count(*) from x, teguh.await_event(%s, x.task_id, x.run_id, 's',"
        " 'ev' || (get_byte(uuid_send(x.task_id), 15) %% 50), 900)",
        e.q,
    )
    assert e.count("w") == 12000 and e.count("r") == 13000
    assert e.count("t", "state = 'sleeping'") == 17000
    for name in PER_QUEUE:
        e.sql.run(f'analyze teguh."{name}"')


def plan_nodes(plan):
    yield plan
    for child in plan.get("Plans", []):
        yield from plan_nodes(child)


def seq_scans(sql, query, *args, min_rows=10000):
    """Sequential scans in the plan of `query` over relations of min_rows or more."""
    plan = sql.value(f"explain (format json) {query}", *args)[0]["Plan"]
    big = {
        r[0]
        for r in sql.all(
            "select relname from pg_class where relnamespace = 'teguh'::regnamespace"
            " and relkind = 'r' and reltuples >= %s",
            min_rows,
        )
    }
    return [
        n.get("Relation Name")
        for n in plan_nodes(plan)
        if n["Node Type"] == "Seq Scan" and n.get("Relation Name") in big
    ]


# The statements the claim path and next_due run on the per-queue tables
# (see _recover_expired, _wake_due, _enforce_deadlines, claim_task and
# next_due in teguh/schema/teguh.sql), with the queue spliced in.
CLAIM_PATH_STATEMENTS = [
    "select run_id from teguh.r_{q} where claim_expires_at <= %s order by claim_expires_at limit 10"
    " for update skip locked",
    "select task_id from teguh.t_{q} where available_at <= %s and state in ('pending', 'sleeping')"
    " order by available_at limit 10 for update skip locked",
    "select task_id from teguh.t_{q} where deadline_at <= %s and state in ('pending', 'running', 'sleeping')"
    " order by deadline_at limit 10 for update skip locked",
    "select task_id from teguh.p_{q} order by priority desc, available_at, task_id limit 10"
    " for update skip locked",
    "select min(available_at) from teguh.t_{q} where available_at is not null"
    " and state in ('pending', 'sleeping') and %s is not null",
    "select min(deadline_at) from teguh.t_{q} where deadline_at is not null"
    " and state in ('pending', 'running', 'sleeping') and %s is not null",
    "select min(claim_expires_at) from teguh.r_{q} where claim_expires_at is not null and %s is not null",
    # emit: the waiters of one event
    "select task_id from teguh.w_{q} where event_name = 'ev7' and (timeout_at is null or timeout_at > %s)"
    " order by task_id for update",
    # rows of one task or run, by key
    "select 1 from teguh.t_{q} where task_id = '00000000-0000-7000-8000-000000000000' and %s is not null",
    "select 1 from teguh.p_{q} where task_id = '00000000-0000-7000-8000-000000000000' and %s is not null",
    "select 1 from teguh.r_{q} where run_id = '00000000-0000-7000-8000-000000000000' and %s is not null",
    "select 1 from teguh.r_{q} where task_id = '00000000-0000-7000-8000-000000000000' and %s is not null",
    "select 1 from teguh.w_{q} where task_id = '00000000-0000-7000-8000-000000000000' and %s is not null",
]


@pytest.mark.slow
def test_claim_path_is_bounded_and_index_driven_at_100k_tasks(eng):
    load_100k(eng)
    assert eng.count("t") == 110000
    assert eng.count("p") == 70000

    # 1. plans of the claim path's statements: no sequential scan of a big table
    big = {
        r[0]
        for r in eng.sql.all(
            "select relname from pg_class where relnamespace = 'teguh'::regnamespace"
            " and relkind = 'r' and reltuples >= 10000"
        )
    }
    assert {f"t_{Q}", f"p_{Q}", f"r_{Q}", f"w_{Q}"} <= big
    for template in CLAIM_PATH_STATEMENTS:
        query = template.format(q=Q)
        scans = seq_scans(eng.sql, query, ts(2000))
        assert scans == [], f"{scans} in plan of: {query}"

    # 2. what claim_task and next_due actually read, with due work in every sweep
    eng.at(2000)  # sleepers due, leases expired, wait timeouts passed

    # pg_stat_xact_user_tables holds this backend's unflushed counts (earlier
    # transactions' too), and nothing is flushed inside a transaction: measure
    # the difference across the probe.
    def counters():
        return {
            r["relname"]: r
            for r in eng.sql.dicts(
                "select relname, coalesce(seq_tup_read, 0) as seq_tup_read, coalesce(idx_scan, 0) as idx_scan"
                " from pg_stat_xact_user_tables where schemaname = 'teguh'"
            )
        }

    eng.sql.run("begin")
    try:
        before = counters()
        claimed = 0
        for _ in range(5):
            claimed += len(eng.claim(worker="probe", timeout=600, qty=10))
        for _ in range(3):
            assert eng.next_due() is not None
        after = counters()
    finally:
        eng.sql.run("rollback")
    assert claimed == 50

    def delta(rel, col):
        return after.get(rel, {}).get(col, 0) - before.get(rel, {}).get(col, 0)

    for rel in sorted(big):
        assert delta(rel, "seq_tup_read") < 1000, f"{rel}: {before.get(rel)} -> {after.get(rel)}"
    assert delta(f"t_{Q}", "idx_scan") > 0


@pytest.mark.slow
def test_spawn_reads_tasks_by_key_only(eng):
    """A spawn's idempotency lookup probes the key's index; it never scans t_.

    An earlier version joined the batch to t_ on the key, and with some
    statistics the planner hashed all of t_ for it, so spawns slowed down as a
    queue's history grew. The lookup is now a scalar subquery per item that
    lost its key, which cannot become a scan.
    """
    batch = (
        "select count(*) from teguh.spawn_tasks(%s, (select jsonb_agg(jsonb_build_object("
        "'task_name', 'bulk', 'params', g)) from generate_series(1, %s) g))"
    )
    assert eng.sql.value(batch, eng.q, 30000) == 30000

    def seq_read() -> int:
        return eng.sql.value(
            "select coalesce(seq_tup_read, 0) from pg_stat_xact_user_tables where relname = %s", f"t_{Q}"
        )

    eng.sql.run("begin")
    try:
        before = seq_read()
        for i in range(3):
            first = eng.spawn("probe", {"i": i}, idempotency_key=f"probe-{i}")
            again = eng.spawn("probe", {"i": i}, idempotency_key=f"probe-{i}")
            assert again["task_id"] == first["task_id"] and again["created"] is False
            assert eng.spawn("probe", {"i": i})["created"] is True
        mixed = eng.spawn_many(
            [{"task_name": "probe", "idempotency_key": "probe-0"}, {"task_name": "probe", "params": 9}]
        )
        assert [r["created"] for r in mixed] == [False, True]
        assert mixed[0]["task_id"] == first["task_id"] or mixed[0]["created"] is False
        after = seq_read()
    finally:
        eng.sql.run("rollback")
    assert after - before < 1000, f"spawns read {after - before} rows of t_ sequentially"


HOT_BLOCKING = {"state", "last_run_id", "finished_at", "attempts", "first_started_at", "result"}


def test_task_indexes_avoid_the_columns_claims_and_completions_change(eng):
    """An index on any column a claim or completion writes would turn those
    writes into non-HOT updates: one dead tuple per update that only VACUUM
    can reclaim, and a new entry in every index."""
    used = set(
        eng.sql.value(
            """select coalesce(array_agg(distinct a.attname), '{}')
                 from pg_index i
                 join pg_attribute a on a.attrelid = i.indrelid
                where i.indrelid = %s::regclass
                  and (a.attnum = any(i.indkey)
                       or pg_get_expr(i.indpred, i.indrelid) ~ ('\\m' || a.attname || '\\M')
                       or pg_get_expr(i.indexprs, i.indrelid) ~ ('\\m' || a.attname || '\\M'))""",
            eng.table("t"),
        )
    )
    assert used, "t_ has no indexes?"
    assert not used & HOT_BLOCKING, used & HOT_BLOCKING


def task_update_counts(observer: Any, writers: list[Engine], at_least: int) -> dict[str, int]:
    """t_'s update and HOT-update counts once `at_least` updates reached the statistics.

    Each writer's backend reports its counts about once a second; asking it to
    flush and polling with a deadline avoids sleeping for that second.
    """
    deadline = time.monotonic() + 20
    while True:
        for w in writers:
            w.sql.run("select pg_stat_force_next_flush()")
        observer.run("select pg_stat_clear_snapshot()")
        row = observer.dicts(
            "select n_tup_upd, n_tup_hot_upd from pg_stat_user_tables"
            " where schemaname = 'teguh' and relname = %s",
            f"t_{Q}",
        )[0]
        if row["n_tup_upd"] >= at_least:
            return row
        assert time.monotonic() < deadline, f"statistics never caught up: {row}"
        time.sleep(0.05)  # a polling interval, not synchronisation


def test_claims_and_completions_rewrite_task_rows_in_place(eng, sql_factory):
    """The whole life of a plain task leaves t_ with HOT updates only (pruned
    without VACUUM), and p_ and r_ with one insert and one delete each."""
    n = 300
    eng.spawn_many([{"task_name": "hot", "params": {"i": i, "pad": "x" * 40}} for i in range(n)])
    for _ in range(n // 50):
        runs = eng.claim(qty=50)
        eng.sql.run(
            "select * from teguh.complete_runs(%s, %s::uuid[], %s::jsonb[])",
            eng.q,
            [str(r["run_id"]) for r in runs],
            [None] * len(runs),
        )
    assert eng.count("t", "state = 'completed'") == n
    row = task_update_counts(sql_factory(), [eng], at_least=2 * n)
    assert row["n_tup_upd"] == 2 * n, row
    assert row["n_tup_hot_upd"] == row["n_tup_upd"], row


def test_task_rows_stay_hot_when_no_prune_can_run(eng, engine_factory, sql_factory):
    """With pruning impossible (an old snapshot held open) and four connections
    racing claims and completions, every task row update is still HOT: a page
    filled to the fill factor has room for a row's pending, running and
    completed versions side by side."""
    n = 400
    eng.spawn_many([{"task_name": "hot", "params": {"i": i, "pad": "x" * 40}} for i in range(n)])
    horizon = sql_factory()
    horizon.conn.autocommit = False
    horizon.conn.set_session(isolation_level="REPEATABLE READ")
    horizon.value("select count(*) from teguh.t_jobs")  # takes the snapshot that pins the horizon
    racers = [engine_factory(at=0) for _ in range(4)]
    errors: list[BaseException] = []

    def drain(e: Engine) -> None:
        try:
            while runs := e.claim(qty=10):
                e.sql.run(
                    "select * from teguh.complete_runs(%s, %s::uuid[], %s::jsonb[])",
                    e.q,
                    [str(r["run_id"]) for r in runs],
                    [None] * len(runs),
                )
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=drain, args=(e,)) for e in racers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert eng.count("t", "state = 'completed'") == n
    horizon.conn.rollback()
    row = task_update_counts(sql_factory(), racers, at_least=2 * n)
    assert row["n_tup_upd"] == 2 * n, row
    assert row["n_tup_hot_upd"] == row["n_tup_upd"], row


def test_functions_called_per_job_or_poll_keep_their_plans(eng):
    # PL/pgSQL caches the plans of its static statements for the session; a
    # SQL function called from PL/pgSQL (or inlined into a dynamic EXECUTE)
    # is planned again on every call: _due_<q> made each idle poll several
    # times dearer, _notify_watch each completion batch.
    names = [f"_claim_{Q}", f"_done_{Q}", f"_due_{Q}", f"_spawn_{Q}", "_notify_watch"]
    rows = eng.sql.all(
        "select p.proname::text, l.lanname::text from pg_proc p join pg_language l on l.oid = p.prolang"
        " where p.pronamespace = 'teguh'::regnamespace and p.proname = any(%s)",
        names,
    )
    assert sorted(rows) == sorted((name, "plpgsql") for name in names)


def test_claims_and_completions_choose_plans_by_batch_size_and_leave_the_callers_setting(eng):
    # Below ten ids per call the plan cache would plan the claim's and the
    # completion's statements again on every call (a custom plan looks
    # cheaper for a short array), which costs more than running them; a
    # generic plan grows with the square of a large batch. So: generic plans
    # for small batches, custom for large, and the caller keeps its setting.
    assert eng.sql.value("select teguh._plan_mode(1)") == "force_generic_plan"
    assert eng.sql.value("select teguh._plan_mode(64)") == "force_generic_plan"
    assert eng.sql.value("select teguh._plan_mode(65)") == "force_custom_plan"
    eng.spawn_many([{"task_name": "t", "params": i} for i in range(3)])
    conn = eng.sql.conn
    conn.autocommit = False
    try:
        with conn.cursor() as cur:
            cur.execute("set local plan_cache_mode = force_custom_plan")
            cur.execute("select run_id::text from teguh.claim_runs(%s, 'w', 60, 2)", (Q,))
            ids = [r[0] for r in cur.fetchall()]
            assert len(ids) == 2
            cur.execute("show plan_cache_mode")
            assert cur.fetchone()[0] == "force_custom_plan"
            complete = "select outcome from teguh.complete_runs(%s, %s::uuid[], %s::jsonb[])"
            cur.execute(complete, (Q, ids, ["1", "2"]))
            assert [r[0] for r in cur.fetchall()] == ["ok", "ok"]
            cur.execute("show plan_cache_mode")
            assert cur.fetchone()[0] == "force_custom_plan"
        conn.commit()
    finally:
        conn.rollback()
        conn.autocommit = True
    assert eng.count("t", "state = 'completed'") == 2
