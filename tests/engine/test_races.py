"""Races between connections: no double claims, no deadlocks, no lost wake-ups."""

from __future__ import annotations

import queue
import threading
import time

import psycopg2
import pytest
from teguh_engine_helpers import (
    BASE,
    Q,
    bg,
    join_all,
    pid_of,
    ts,
    wait_blocked,
)


def pgcode(exc):
    return getattr(exc, "pgcode", None)


@pytest.mark.slow
def test_many_workers_claim_every_task_exactly_once(eng, engine_factory):
    n = 400
    spawned = eng.spawn_many([{"task_name": "t", "params": {"i": i}} for i in range(n)])
    all_ids = {r["task_id"] for r in spawned}
    workers = [engine_factory() for _ in range(8)]
    claimed: list[tuple[str, str]] = []
    lock = threading.Lock()
    deadline = time.monotonic() + 30

    def work(e, qty):
        mine = []
        while time.monotonic() < deadline:
            with lock:
                if len(claimed) >= n:
                    break
            rows = e.claim(worker=f"w{qty}", timeout=600, qty=qty)
            for r in rows:
                mine.append((r["task_id"], r["run_id"]))
                e.complete(r["run_id"], {"by": qty})
            with lock:
                claimed.extend((r["task_id"], r["run_id"]) for r in rows)
        return mine

    threads = [bg(work, w, 1 + i % 4) for i, w in enumerate(workers)]
    join_all(threads, timeout=60)
    for t in threads:
        assert t.error is None, t.error
    task_ids = [c[0] for c in claimed]
    assert len(task_ids) == len(set(task_ids)), "a task was claimed twice"
    assert set(task_ids) == all_ids
    assert len({c[1] for c in claimed}) == n
    assert eng.count("p") == 0 and eng.count("r") == 0
    assert eng.count("t", "state = 'completed'") == n


@pytest.mark.parametrize("rounds", [15])
def test_cancel_racing_complete_never_deadlocks(eng, engine_factory, rounds):  # A24
    a, b = engine_factory(), engine_factory()
    outcomes = set()
    for i in range(rounds):
        task_id, run_id = eng.start("t", {"round": i})
        barrier = threading.Barrier(2, timeout=10)

        def complete(barrier=barrier, run_id=run_id, i=i):
            barrier.wait()
            a.complete(run_id, {"round": i})

        def cancel(barrier=barrier, task_id=task_id):
            barrier.wait()
            b.cancel(task_id)

        threads = [bg(complete), bg(cancel)]
        join_all(threads, timeout=10)
        assert threads[1].error is None, threads[1].error
        state = eng.state(task_id)
        assert state in ("completed", "cancelled")
        if threads[0].error is None:
            assert state == "completed"
            assert eng.result(task_id)["result"] == {"round": i}
        else:
            assert pgcode(threads[0].error) == "AB001", threads[0].error
            assert state == "cancelled"
        assert eng.leases_of(task_id) == []
        outcomes.add(state)


def test_cancel_racing_fail_and_checkpoint(eng, engine_factory):
    a, b, c = engine_factory(), engine_factory(), engine_factory()
    stale = []
    for i in range(10):
        task_id = eng.spawn("t", max_attempts=5)["task_id"]
        # qty > 1: a stale p_ row of an earlier round must not hide this task
        runs = eng.claim(qty=20)
        assert [r["task_id"] for r in runs] == [task_id]
        run_id = runs[0]["run_id"]
        barrier = threading.Barrier(3, timeout=10)

        def fail(barrier=barrier, run_id=run_id):
            barrier.wait()
            a.fail(run_id)

        def checkpoint(barrier=barrier, task_id=task_id, run_id=run_id, i=i):
            barrier.wait()
            c.checkpoint(task_id, "s", i, run_id)

        def cancel(barrier=barrier, task_id=task_id):
            barrier.wait()
            b.cancel(task_id)

        threads = [bg(fail), bg(checkpoint), bg(cancel)]
        join_all(threads, timeout=10)
        assert threads[2].error is None, threads[2].error
        for t in threads[:2]:
            assert t.error is None or pgcode(t.error) in ("AB001", "AB002"), t.error
        assert eng.state(task_id) == "cancelled"
        assert eng.leases_of(task_id) == []
        if threads[0].error is not None:
            assert pgcode(threads[0].error) == "AB001"
        if eng.pending_row(task_id) is not None:
            stale.append(task_id)
    # a cancelled task is never started again ...
    assert eng.claim(qty=50) == []
    assert eng.count("t", "state <> 'cancelled'") == 0
    # ... and engine.md: "cancel_task: ... its p_, r_, w_ rows go"
    assert stale == [], f"{len(stale)} cancelled task(s) kept a p_ row"


@pytest.mark.parametrize("ending", ["complete", "fail"])
def test_end_of_run_blocked_behind_a_lock_then_cancel(eng, engine_factory, ending):
    """absurd test_lock_ordering: cancel queued behind complete/fail waits for it."""
    task_id, run_id = eng.start("t", max_attempts=1)
    locker, ender, canceller = engine_factory(), engine_factory(), engine_factory()
    locker.sql.run("begin")
    locker.sql.run(f"select 1 from {eng.table('r')} where run_id = %s for update", run_id)

    def end():
        if ending == "complete":
            ender.complete(run_id, {"ok": True})
        else:
            ender.fail(run_id, {"type": "Boom"})

    t_end = bg(end)
    wait_blocked(eng.sql, pid_of(ender.sql))
    t_cancel = bg(canceller.cancel, task_id)
    wait_blocked(eng.sql, pid_of(canceller.sql))
    locker.sql.run("commit")
    join_all([t_end, t_cancel], timeout=10)
    assert t_end.error is None, t_end.error
    assert t_cancel.error is None, t_cancel.error
    result = eng.result(task_id)
    if ending == "complete":
        assert result["state"] == "completed" and result["result"] == {"ok": True}
    else:
        assert result["state"] == "failed"
    assert result["cancelled_at"] is None
    assert eng.leases_of(task_id) == []


def test_retrying_fail_blocked_behind_a_lock_then_cancel(eng, engine_factory):
    """fail_run (attempts left) queued first, cancel second: the task ends cancelled

    and, engine.md: "cancel_task: any non-terminal task becomes cancelled ...
    its p_, r_, w_ rows go" -- including the p_ row the retry just made.
    """
    task_id, run_id = eng.start("t", max_attempts=5)
    locker, ender, canceller = engine_factory(), engine_factory(), engine_factory()
    locker.sql.run("begin")
    locker.sql.run(f"select 1 from {eng.table('r')} where run_id = %s for update", run_id)
    t_fail = bg(ender.fail, run_id, {"type": "Boom"})
    wait_blocked(eng.sql, pid_of(ender.sql))
    t_cancel = bg(canceller.cancel, task_id)
    wait_blocked(eng.sql, pid_of(canceller.sql))
    locker.sql.run("commit")
    join_all([t_fail, t_cancel], timeout=10)
    assert t_fail.error is None, t_fail.error
    assert t_cancel.error is None, t_cancel.error
    assert eng.state(task_id) == "cancelled"
    assert eng.leases_of(task_id) == []
    assert eng.pending_row(task_id) is None, "cancelled task kept its p_ row"
    assert eng.claim(qty=5) == []


def test_cancel_first_then_blocked_complete_gets_ab001(eng, engine_factory):
    task_id, run_id = eng.start("t")
    locker, canceller, ender = engine_factory(), engine_factory(), engine_factory()
    locker.sql.run("begin")
    locker.sql.run(f"select 1 from {eng.table('r')} where run_id = %s for update", run_id)
    t_cancel = bg(canceller.cancel, task_id)
    wait_blocked(eng.sql, pid_of(canceller.sql))
    t_end = bg(ender.complete, run_id, {"late": True})
    wait_blocked(eng.sql, pid_of(ender.sql))
    locker.sql.run("commit")
    join_all([t_end, t_cancel], timeout=10)
    assert t_cancel.error is None, t_cancel.error
    assert t_end.error is not None and pgcode(t_end.error) == "AB001", t_end.error
    assert eng.state(task_id) == "cancelled"


def test_heartbeat_blocked_by_a_cancel_reports_cancelled(eng, engine_factory):
    """extend_claims waits for the lease row a cancel deletes; once the cancel
    commits, the run must be reported cancelled (the handler gets Cancelled),
    not lost."""
    task_id, run_id = eng.start("t")
    canceller, beater = engine_factory(), engine_factory()
    canceller.sql.run("begin")
    canceller.cancel(task_id)
    t_beat = bg(beater.extend_many, [run_id], 30)
    wait_blocked(eng.sql, pid_of(beater.sql))
    canceller.sql.run("commit")
    join_all([t_beat], timeout=10)
    assert t_beat.error is None, t_beat.error
    assert {str(k): v for k, v in t_beat.result.items()} == {str(run_id): "cancelled"}


def test_emit_racing_await_never_loses_the_wakeup(eng, engine_factory):
    """A transaction holds the e_ row; await blocks, emit blocks; release."""
    first_id, first_run = eng.start("t", {"n": 1})
    assert eng.await_event(first_id, first_run, "s", "ev")["should_suspend"]  # e_ row exists now
    task_id, run_id = eng.start("t", {"n": 2})
    locker, awaiter, emitter = engine_factory(), engine_factory(), engine_factory()
    locker.sql.run("begin")
    locker.sql.run(f"select 1 from {eng.table('e')} where event_name = 'ev' for update")

    t_await = bg(awaiter.await_event, task_id, run_id, "s", "ev")
    wait_blocked(eng.sql, pid_of(awaiter.sql))
    t_emit = bg(emitter.emit, "ev", {"paid": 42})
    wait_blocked(eng.sql, pid_of(emitter.sql))
    locker.sql.run("commit")
    join_all([t_await, t_emit], timeout=10)
    assert t_await.error is None, t_await.error
    assert t_emit.error is None, t_emit.error

    woken = {r["task_id"]: r for r in eng.claim(qty=10)}
    if t_await.result["should_suspend"]:
        assert set(woken) == {first_id, task_id}
        run = woken[task_id]
        assert run["event_payload"] == {"paid": 42}
        got = eng.await_event(task_id, run["run_id"], "s", "ev")
        assert got["should_suspend"] is False and got["payload"] == {"paid": 42}
    else:
        assert t_await.result["payload"] == {"paid": 42}
        assert set(woken) == {first_id}
    assert woken[first_id]["event_payload"] == {"paid": 42}
    assert eng.count("w") == 0
    assert eng.count("t", "state = 'sleeping'") == 0


def test_await_blocked_behind_an_uncommitted_emit(eng, engine_factory):
    task_id, run_id = eng.start("t")
    emitter, awaiter = engine_factory(), engine_factory()
    emitter.sql.run("begin")
    emitter.sql.run("select teguh.emit_event(%s, 'ev', '{\"v\": 1}'::jsonb)", Q)
    t_await = bg(awaiter.await_event, task_id, run_id, "s", "ev")
    wait_blocked(eng.sql, pid_of(awaiter.sql))
    emitter.sql.run("commit")
    join_all([t_await], timeout=10)
    assert t_await.error is None, t_await.error
    assert t_await.result["should_suspend"] is False
    assert t_await.result["payload"] == {"v": 1}


@pytest.mark.slow
def test_emit_racing_await_stress(eng, engine_factory):
    awaiter, emitter = engine_factory(), engine_factory()
    rounds = 30
    for i in range(rounds):
        event = f"ev-{i}"
        task_id, run_id = eng.start("t", {"i": i})
        barrier = threading.Barrier(2, timeout=10)

        def do_await(barrier=barrier, task_id=task_id, run_id=run_id, event=event):
            barrier.wait()
            return awaiter.await_event(task_id, run_id, "s", event)

        def do_emit(barrier=barrier, event=event, i=i):
            barrier.wait()
            emitter.emit(event, {"i": i})

        threads = [bg(do_await), bg(do_emit)]
        join_all(threads, timeout=10)
        for t in threads:
            assert t.error is None, t.error
        got = threads[0].result
        if got["should_suspend"]:
            run = eng.claim_one()
            assert run["task_id"] == task_id, f"round {i}: wake-up lost"
            assert run["event_payload"] == {"i": i}
            got = eng.await_event(task_id, run["run_id"], "s", event)
            run_id = run["run_id"]
        assert got["should_suspend"] is False and got["payload"] == {"i": i}
        eng.complete(run_id)
    assert eng.count("t", "state = 'completed'") == rounds


def test_expired_leases_recovered_once_under_concurrent_claims(eng, engine_factory):
    n = 30
    eng.spawn_many([{"task_name": "t", "params": {"i": i}} for i in range(n)])
    first = eng.claim(worker="dead", timeout=1, qty=n)
    assert len(first) == n
    workers = [engine_factory(at=10) for _ in range(6)]
    got: list[dict] = []
    lock = threading.Lock()
    deadline = time.monotonic() + 20

    def work(e):
        while time.monotonic() < deadline:
            with lock:
                if len(got) >= n:
                    return
            rows = e.claim(worker="alive", timeout=600, qty=3)
            with lock:
                got.extend(rows)

    threads = [bg(work, w) for w in workers]
    join_all(threads, timeout=30)
    for t in threads:
        assert t.error is None, t.error
    ids = [r["task_id"] for r in got]
    assert len(ids) == len(set(ids)) == n
    assert {r["attempt"] for r in got} == {2}
    assert eng.count("r", "claimed_by = 'dead'") == 0
    assert eng.count("r", "claimed_by = 'alive'") == n


def test_ticker_racing_claims(eng, engine_factory):
    n = 60
    for i in range(n):
        _, run_id = eng.start("t", {"i": i})
        eng.schedule(run_id, ts(5))
    claimers = [engine_factory(at=5) for _ in range(3)]
    ticker = engine_factory(at=5)
    got: list[dict] = []
    lock = threading.Lock()
    deadline = time.monotonic() + 20

    def work(e):
        while time.monotonic() < deadline:
            with lock:
                if len(got) >= n:
                    return
            rows = e.claim(timeout=600, qty=4)
            with lock:
                got.extend(rows)

    threads = [bg(work, c) for c in claimers] + [bg(ticker.ticker), bg(ticker.ticker)]
    join_all(threads, timeout=30)
    for t in threads:
        assert t.error is None, t.error
    ids = [r["task_id"] for r in got]
    assert len(ids) == len(set(ids)) == n
    assert {r["attempt"] for r in got} == {1}


def test_cancel_racing_claims(eng, engine_factory):
    n = 60
    ids = [r["task_id"] for r in eng.spawn_many([{"task_name": "t"} for _ in range(n)])]
    claimer, canceller = engine_factory(), engine_factory()
    barrier = threading.Barrier(2, timeout=10)

    def claim_all():
        barrier.wait()
        out = []
        for _ in range(n):
            out.extend(claimer.claim(timeout=600, qty=2))
        return out

    def cancel_all():
        barrier.wait()
        for tid in reversed(ids):
            canceller.cancel(tid)

    threads = [bg(claim_all), bg(cancel_all)]
    join_all(threads, timeout=30)
    for t in threads:
        assert t.error is None, t.error
    assert eng.count("t", "state <> 'cancelled'") == 0
    assert eng.count("p") == 0 and eng.count("r") == 0 and eng.count("w") == 0
    for run in threads[0].result:
        try:
            claimer.complete(run["run_id"])
        except psycopg2.Error as exc:
            assert exc.pgcode == "AB001"
        else:  # pragma: no cover - every task was cancelled
            raise AssertionError("a cancelled task's run completed")


def test_concurrent_idempotent_spawns_make_one_task(eng, engine_factory):
    spawners = [engine_factory() for _ in range(8)]
    barrier = threading.Barrier(len(spawners), timeout=10)

    def spawn(e):
        barrier.wait()
        return e.spawn("t", {"who": id(e)}, idempotency_key="once-only")

    threads = [bg(spawn, e) for e in spawners]
    join_all(threads, timeout=20)
    for t in threads:
        assert t.error is None, t.error
    rows = [t.result for t in threads]
    assert len({r["task_id"] for r in rows}) == 1
    assert sum(1 for r in rows if r["created"]) == 1
    assert eng.count("t") == 1 and eng.count("p") == 1


def test_concurrent_create_queue(db, sql_factory):
    conns = [sql_factory() for _ in range(6)]
    barrier = threading.Barrier(len(conns), timeout=10)

    def create(sql):
        barrier.wait()
        sql.run("select teguh.create_queue('raced')")

    threads = [bg(create, s) for s in conns]
    join_all(threads, timeout=20)
    for t in threads:
        assert t.error is None, t.error
    assert [r[0] for r in db.all("select * from teguh.list_queues()")] == ["raced"]


def test_emit_racing_cancel_of_a_waiter(eng, engine_factory):
    emitter, canceller = engine_factory(), engine_factory()
    for i in range(10):
        task_id, run_id = eng.start("t")
        eng.await_event(task_id, run_id, "s", f"ev{i}")
        barrier = threading.Barrier(2, timeout=10)

        def emit(barrier=barrier, i=i):
            barrier.wait()
            emitter.emit(f"ev{i}", i)

        def cancel(barrier=barrier, task_id=task_id):
            barrier.wait()
            canceller.cancel(task_id)

        threads = [bg(emit), bg(cancel)]
        join_all(threads, timeout=10)
        for t in threads:
            assert t.error is None, t.error
        assert eng.state(task_id) == "cancelled"
        assert eng.pending_row(task_id) is None and eng.waits_of(task_id) == []
    assert eng.claim(qty=20) == []


def test_fake_time_is_per_connection(eng, engine_factory):
    other = engine_factory(at=None)
    assert eng.now() == BASE
    assert other.now() != BASE


def test_spawns_race_queues_being_created_and_dropped(eng, engine_factory):
    """Every create_queue and drop_queue rebuilds teguh._spawn_dispatch while other sessions spawn
    through it: spawns into a steady queue never fail or go astray, and a queue created by one
    session takes spawns from another as soon as its creation commits."""
    churner, checker = engine_factory(), engine_factory()
    producers = [engine_factory() for _ in range(3)]
    created: queue.Queue = queue.Queue()
    checked: queue.Queue = queue.Queue()
    done = threading.Event()
    rounds = 15

    def churn():
        try:
            for i in range(rounds):
                churner.sql.run("select teguh.create_queue(%s)", f"churn{i}")
                created.put(i)
                assert checked.get(timeout=20) == i
                if i:
                    churner.sql.run("select teguh.drop_queue(%s)", f"churn{i - 1}")
        finally:
            done.set()
            created.put(None)

    def check():
        seen = 0
        while (i := created.get(timeout=30)) is not None:
            task_id = checker.sql.value("select teguh.spawn_plain(%s, 't', %s::jsonb)", f"churn{i}", str(i))
            assert checker.sql.value(f"select params from teguh.t_churn{i} where task_id = %s", task_id) == i
            seen += 1
            checked.put(i)
        return seen

    def produce(e, k):
        n = 0
        while not done.is_set():
            if n % 2:
                e.spawn("steady", {"k": k, "n": n})
            else:
                e.sql.value("select teguh.spawn_plain(%s, 'steady', %s::jsonb)", Q, f'{{"k": {k}, "n": {n}}}')
            n += 1
        return n

    threads = [bg(churn), bg(check)] + [bg(produce, e, k) for k, e in enumerate(producers)]
    join_all(threads, timeout=90)
    for t in threads:
        assert t.error is None, t.error
    assert threads[1].result == rounds
    spawned = sum(t.result for t in threads[2:])
    assert spawned > 3 * rounds  # the producers ran through the churn, not after it
    assert eng.count("t", "task_name = 'steady'") == spawned
    assert eng.count("p") == spawned
    names = eng.sql.value(
        "select pg_get_functiondef("
        "'teguh._spawn_dispatch(text, text, jsonb, jsonb, int, boolean)'::regprocedure)"
    )
    assert f"_spawn_churn{rounds - 1}(" in names and "_spawn_churn0(" not in names
