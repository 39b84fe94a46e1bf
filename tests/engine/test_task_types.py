"""Task types, the per-queue default max_attempts, and pause/resume, at the SQL level."""

from __future__ import annotations

from pathlib import Path

from teguh_engine_helpers import Engine, j, snapshot, sqlstate

SCHEMA_FILE = Path(__file__).resolve().parents[2] / "teguh" / "schema" / "teguh.sql"


def register(e: Engine, types: list[dict], version: str | None = None) -> None:
    e.sql.run("select teguh.register_task_types(%s, %s::jsonb, %s)", e.q, j(types), version)


def types_of(e: Engine) -> dict[str, dict]:
    return {r["task_name"]: r for r in e.sql.dicts("select * from teguh.list_task_types(%s)", e.q)}


def fail_until_done(e: Engine, task_id, limit: int = 100) -> int:
    """Claim and fail every ready task until this one stops coming back; returns its attempts."""
    attempts = 0
    while e.state(task_id) == "pending" and attempts < limit:
        for run in e.claim(qty=100):
            e.fail(run["run_id"], retry_at=e.now())
            attempts += run["task_id"] == task_id
    return attempts


# -- default max_attempts --------------------------------------------------------


def test_a_task_spawned_without_max_attempts_fails_for_good_after_25(eng):
    task = eng.spawn("t")
    assert eng.task(task["task_id"])["max_attempts"] == 25
    assert fail_until_done(eng, task["task_id"]) == 25
    assert eng.state(task["task_id"]) == "failed"


def test_max_attempts_0_is_unlimited(eng):
    task = eng.spawn("t", max_attempts=0)
    assert eng.task(task["task_id"])["max_attempts"] is None
    assert fail_until_done(eng, task["task_id"], limit=30) == 30
    assert eng.state(task["task_id"]) == "pending"


def test_the_queue_default_applies_to_new_spawns_only(eng):
    old = eng.spawn("t")
    eng.sql.run("select teguh.set_queue_options(%s, '{\"default_max_attempts\": 3}')", eng.q)
    new = eng.spawn("t")
    batch = eng.spawn_many([{"task_name": "t"}, {"task_name": "t", "max_attempts": 7}])
    assert eng.task(old["task_id"])["max_attempts"] == 25
    assert eng.task(new["task_id"])["max_attempts"] == 3
    assert [eng.task(r["task_id"])["max_attempts"] for r in batch] == [3, 7]
    assert fail_until_done(eng, new["task_id"]) == 3
    eng.sql.run("select teguh.set_queue_options(%s, '{\"default_max_attempts\": 0}')", eng.q)
    assert eng.task(eng.spawn("t")["task_id"])["max_attempts"] is None  # 0: unlimited
    opts = eng.sql.dicts("select * from teguh.get_queue_options(%s)", eng.q)[0]
    assert opts == {"default_max_attempts": 0, "paused": False, "paused_task_types": []}


def test_bad_queue_options_raise_and_write_nothing(eng):
    before = snapshot(eng.sql)
    for options in ('{"default_max_attempts": -1}', '{"bogus": 1}', '{"default_max_attempts": "x"}', "[]"):
        with sqlstate("TG004") as info:
            eng.sql.run("select teguh.set_queue_options(%s, %s::jsonb)", eng.q, options)
        if "bogus" in options:
            assert "bogus" in str(info.value)
    with sqlstate("TG002") as info:
        eng.sql.run("select teguh.set_queue_options('nope', '{\"default_max_attempts\": 3}')")
    assert "nope" in str(info.value)
    assert snapshot(eng.sql) == before


# -- task types --------------------------------------------------------------------


def test_registered_defaults_apply_to_sql_spawns_that_do_not_give_them(eng):
    register(
        eng,
        [
            {
                "task_name": "send-email",
                "max_attempts": 5,
                "priority": 3,
                "retry_strategy": {"kind": "fixed", "base_seconds": 7},
                "cancellation": {"max_delay": 60},
            },
            {"task_name": "plain"},
        ],
        "2026.12.1",
    )
    a = eng.task(eng.spawn("send-email")["task_id"])
    assert (a["max_attempts"], a["priority"], a["retry_strategy"]) == (
        5,
        3,
        {"kind": "fixed", "base_seconds": 7},
    )
    assert a["cancellation"] == {"max_delay": 60} and a["deadline_at"] is not None
    assert eng.pending_row(a["task_id"])["priority"] == 3
    # given options win, one by one; explicit 0 is unlimited, not the default
    b = eng.task(eng.spawn("send-email", max_attempts=0, priority=-1)["task_id"])
    assert (b["max_attempts"], b["priority"], b["retry_strategy"]["base_seconds"]) == (None, -1, 7)
    # a type with no defaults, and an unregistered name: the queue's default
    assert eng.task(eng.spawn("plain")["task_id"])["max_attempts"] == 25
    assert eng.task(eng.spawn("other")["task_id"])["max_attempts"] == 25
    batch = eng.spawn_many(
        [{"task_name": "send-email"}, {"task_name": "other"}, {"task_name": "send-email", "max_attempts": 2}]
    )
    assert [eng.task(r["task_id"])["max_attempts"] for r in batch] == [5, 25, 2]
    assert eng.task(batch[0]["task_id"])["priority"] == 3
    assert fail_until_done(eng, batch[2]["task_id"]) == 2


def test_list_task_types_and_last_writer_wins(eng):
    register(eng, [{"task_name": "a", "max_attempts": 5, "concurrency": 2, "rate_limit": "20/s"}], "v1")
    first = types_of(eng)["a"]
    assert (first["max_attempts"], first["concurrency"], first["rate_limit"], first["version"]) == (
        5,
        2,
        "20/s",
        "v1",
    )
    assert first["paused"] is False
    eng.sql.run("select teguh.pause_task_type(%s, 'a')", eng.q)
    eng.at(60)
    register(eng, [{"task_name": "a", "max_attempts": 9}, {"task_name": "b"}], "v2")
    now = types_of(eng)
    assert (now["a"]["max_attempts"], now["a"]["concurrency"], now["a"]["version"]) == (9, None, "v2")
    assert now["a"]["paused"] is True  # a pause outlives a deploy
    assert now["a"]["registered_at"] == first["registered_at"] < now["a"]["updated_at"]
    assert sorted(now) == ["a", "b"]
    assert eng.task(eng.spawn("a")["task_id"])["max_attempts"] == 9


def test_bad_task_types_raise_and_write_nothing(eng):
    before = snapshot(eng.sql)
    for types, needle in (
        ([{"task_name": "a", "bogus": 1}], "bogus"),
        ([{"task_name": "a", "max_attempts": -1}], "max_attempts"),
        ([{"task_name": "a"}, {"task_name": "b", "priority": 99999}], "priority"),
        ([{"task_name": "a", "concurrency": 0}], "concurrency"),
        ([{"task_name": "a", "rate_limit": "20/x"}], "rate_limit"),
        ([{"task_name": "a"}, {"task_name": "a"}], "more than once"),
        ([{"task_name": ""}], "task name"),
    ):
        with sqlstate("TG004") as info:
            register(eng, types)
        assert needle in str(info.value)
    assert snapshot(eng.sql) == before


def test_drop_queue_drops_its_task_types(eng):
    register(eng, [{"task_name": "a", "max_attempts": 4}])
    eng.sql.run("select teguh.drop_queue(%s)", eng.q)
    eng.create()
    assert types_of(eng) == {}


# -- pause and resume ------------------------------------------------------------


def test_a_paused_queue_accepts_spawns_and_hands_out_nothing(eng):
    running = eng.start("t")
    eng.sql.run("select teguh.pause_queue(%s)", eng.q)
    task = eng.spawn("t")
    assert eng.claim(qty=5) == []
    eng.complete(running[1])  # running tasks finish
    assert eng.state(running[0]) == "completed"
    assert eng.next_due() is None  # nothing for idle workers to wake up for
    eng.sql.run("select teguh.resume_queue(%s)", eng.q)
    assert [r["task_id"] for r in eng.claim(qty=5)] == [task["task_id"]]


def test_resume_notifies_the_queue_channel(eng, listener_factory):
    register(eng, [{"task_name": "a"}])
    lst = listener_factory(f"teguh_{eng.q}")
    eng.sql.run("select teguh.pause_queue(%s)", eng.q)
    eng.sql.run("select teguh.resume_queue(%s)", eng.q)
    eng.sql.run("select teguh.pause_task_type(%s, 'a')", eng.q)
    eng.sql.run("select teguh.resume_task_type(%s, 'a')", eng.q)
    got = lst.collect(eng.sql)
    assert got == [(f"teguh_{eng.q}", "wake"), (f"teguh_{eng.q}", "wake")]


def test_a_paused_task_type_is_skipped_and_others_flow(eng):
    register(eng, [{"task_name": "a"}, {"task_name": "b"}])
    a1 = eng.spawn("a", priority=5)
    b1 = eng.spawn("b")
    eng.sql.run("select teguh.pause_task_type(%s, 'a')", eng.q)
    a2 = eng.spawn("a", priority=5)
    b2 = eng.spawn("b")
    assert eng.sql.dicts("select paused_task_types from teguh.get_queue_options(%s)", eng.q) == [
        {"paused_task_types": ["a"]}
    ]
    claimed = [r["task_id"] for r in eng.claim(qty=10)]
    assert claimed == [b1["task_id"], b2["task_id"]]
    eng.sql.run("select teguh.pause_task_type(%s, 'b')", eng.q)
    eng.sql.run("select teguh.resume_task_type(%s, 'a')", eng.q)
    b3 = eng.spawn("b")
    assert [r["task_id"] for r in eng.claim(qty=10)] == [a1["task_id"], a2["task_id"]]
    eng.sql.run("select teguh.resume_task_type(%s, 'b')", eng.q)
    assert eng.sql.value("select paused_task_types from teguh.queues where queue_name = %s", eng.q) is None
    assert [r["task_id"] for r in eng.claim(qty=10)] == [b3["task_id"]]


def test_pause_of_an_unknown_queue_or_task_type_raises_and_writes_nothing(eng):
    register(eng, [{"task_name": "a"}])
    before = snapshot(eng.sql)
    with sqlstate("TG004") as info:
        eng.sql.run("select teguh.pause_task_type(%s, 'nope')", eng.q)
    assert "nope" in str(info.value)
    for fn in ("pause_queue", "resume_queue"):
        with sqlstate("TG002"):
            eng.sql.run(f"select teguh.{fn}('missing')")
    with sqlstate("TG002"):
        eng.sql.run("select teguh.resume_task_type('missing', 'a')")
    assert snapshot(eng.sql) == before


# -- roles and upgrades -------------------------------------------------------------


def test_role_kinds_get_the_new_functions(db):
    def has(kind: str, fn: str) -> bool:
        return db.value("select %s = any(teguh._role_functions(%s))", fn, kind)

    assert has("producer", "list_task_types") and has("producer", "spawn_task")
    assert has("worker", "register_task_types") and not has("producer", "register_task_types")
    for fn in ("set_queue_options", "pause_queue", "resume_queue", "pause_task_type", "resume_task_type"):
        assert has("admin", fn) and not has("worker", fn) and not has("producer", fn)


def test_reinstall_upgrades_a_queue_of_an_older_version(db):
    """Queues of 0.1 had no task types, pause or default max_attempts, and
    3-argument _spawn_<q>/_claim_<q>: a re-install gives them 25 and the new
    functions, without leaving an overload behind."""
    db.run("select teguh.create_queue('old')")
    db.run("drop function teguh._spawn_old(text, jsonb, jsonb, int, boolean)")
    db.run("drop function teguh._claim_old(text, int, int, boolean, text[], boolean)")
    db.run(
        "create function teguh._spawn_old(p_task_name text, p_params jsonb, p_options jsonb)"
        " returns int language sql as 'select 1'"
    )
    db.run("create function teguh._claim_old(a text, b int, c int) returns int language sql as 'select 1'")
    db.run("drop table teguh.task_types")
    db.run(
        "alter table teguh.queues drop column default_max_attempts, drop column paused,"
        " drop column paused_task_types, drop column has_task_types"
    )
    with db.conn.cursor() as cur:
        cur.execute(SCHEMA_FILE.read_text())
    db.conn.commit()
    assert db.value("select count(*) from pg_proc where proname in ('_spawn_old', '_claim_old')") == 2
    old = Engine(db, "old")
    task = old.spawn("t")
    assert old.task(task["task_id"])["max_attempts"] == 25
    assert [r["task_id"] for r in old.claim()] == [task["task_id"]]
