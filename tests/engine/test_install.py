"""Installing the schema: re-runnable, keeps data, version, pg_cron-less start/stop."""

from __future__ import annotations

import re
import uuid
from datetime import datetime, timezone
from pathlib import Path

import psycopg2
from teguh_engine_helpers import BASE, Engine, snapshot, sqlstate, ts

SCHEMA_FILE = Path(__file__).resolve().parents[2] / "teguh" / "schema" / "teguh.sql"

PUBLIC_FUNCTIONS = {
    "version",
    "current_time",
    "portable_uuidv7",
    "create_queue",
    "drop_queue",
    "list_queues",
    "spawn_task",
    "spawn_tasks",
    "claim_task",
    "complete_run",
    "fail_run",
    "fail_run_non_retryable",
    "snooze_run",
    "schedule_run",
    "sleep_run",
    "set_task_checkpoint_state",
    "get_task_checkpoint_state",
    "get_task_checkpoint_states",
    "await_event",
    "emit_event",
    "emit_event_first",
    "cancel_task",
    "retry_task",
    "extend_claim",
    "extend_claims",
    "get_task_result",
    "get_task_info",
    "next_due",
    "ticker",
    "cleanup_tasks",
    "cleanup_all_queues",
    "start",
    "stop",
    "set_queue_options",
    "get_queue_options",
    "register_task_types",
    "list_task_types",
    "pause_queue",
    "resume_queue",
    "pause_task_type",
    "resume_task_type",
}


def apply_schema(dsn: str, user: str | None = None) -> None:
    conn = psycopg2.connect(dsn) if user is None else psycopg2.connect(dsn, user=user)
    try:
        with conn.cursor() as cur:
            cur.execute(SCHEMA_FILE.read_text())
        conn.commit()
    finally:
        conn.close()


def test_version_is_a_semver_string(db):
    version = db.value("select teguh.version()")
    assert isinstance(version, str)
    assert re.fullmatch(r"\d+\.\d+\.\d+([-.+][0-9A-Za-z.-]+)?", version), version


def test_every_public_function_exists(db):
    names = {r[0] for r in db.all("select proname from pg_proc where pronamespace = 'teguh'::regnamespace")}
    missing = PUBLIC_FUNCTIONS - names
    assert not missing, f"missing functions: {sorted(missing)}"


def test_no_function_has_ambiguous_overloads(db):
    rows = db.all(
        "select proname, count(*) from pg_proc where pronamespace = 'teguh'::regnamespace"
        " group by proname having count(*) > 1"
    )
    assert [r for r in rows if r[0] in PUBLIC_FUNCTIONS] == []


def test_schema_applies_cleanly_to_an_empty_database_twice(empty_dsn):
    apply_schema(empty_dsn)
    apply_schema(empty_dsn)
    conn = psycopg2.connect(empty_dsn)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute("select teguh.version()")
            assert cur.fetchone()[0]
            cur.execute("select teguh.create_queue('fresh')")
            cur.execute("select * from teguh.list_queues()")
            assert cur.fetchall() == [("fresh",)]
    finally:
        conn.close()


def test_reapplying_schema_keeps_all_data(dsn, db):
    db.fake_now(BASE)
    a = Engine(db, "alpha")
    b = Engine(db, "beta")
    a.create()
    b.create()
    done_task, done_run = a.start("t", {"n": 1})
    a.checkpoint(done_task, "step-1", {"v": 1}, done_run)
    a.complete(done_run, {"ok": True})
    waiting_task, waiting_run = a.start("t", {"n": 2})
    assert a.await_event(waiting_task, waiting_run, "wait", "ev", timeout=600)["should_suspend"]
    a.emit("other", {"x": 1})
    pending = [a.spawn("t", {"n": i}, idempotency_key=f"k{i}") for i in range(3)]
    delayed = b.spawn("later", {}, available_at=ts(3600))
    before = snapshot(db)

    apply_schema(dsn)

    after = snapshot(db)
    assert after["contents"] == before["contents"]
    assert {r[1] for r in after["relations"]} >= {r[1] for r in before["relations"]}
    # and the engine still works on the old data
    assert a.result(done_task)["result"] == {"ok": True}
    assert a.spawn("t", {}, idempotency_key="k0")["task_id"] == pending[0]["task_id"]
    claimed = a.claim(qty=10)
    assert {r["task_id"] for r in claimed} == {p["task_id"] for p in pending}
    a.emit("ev", {"late": True})
    woke = a.claim_one()
    assert woke["task_id"] == waiting_task
    assert woke["event_payload"] == {"late": True}
    b.at(3600)
    assert b.claim_one()["task_id"] == delayed["task_id"]


def test_install_as_a_non_superuser_owning_the_database(pg_server, empty_dsn):
    role = f"teguh_owner_{uuid.uuid4().hex[:10]}"
    admin = psycopg2.connect(empty_dsn)
    admin.autocommit = True
    dbname = psycopg2.extensions.parse_dsn(empty_dsn)["dbname"]
    try:
        with admin.cursor() as cur:
            cur.execute(f"create role {role} login nosuperuser nocreatedb nocreaterole")
            cur.execute(f'alter database "{dbname}" owner to {role}')
        apply_schema(empty_dsn, user=role)
        apply_schema(empty_dsn, user=role)
        conn = psycopg2.connect(empty_dsn, user=role)
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute("select rolsuper from pg_roles where rolname = current_user")
                assert cur.fetchone()[0] is False
                cur.execute("select teguh.create_queue('owned')")
                cur.execute("select task_id from teguh.spawn_task('owned', 't', '{}'::jsonb)")
                task_id = cur.fetchone()[0]
                cur.execute("select task_id from teguh.claim_task('owned', 'w', 30, 1)")
                assert cur.fetchone()[0] == task_id
        finally:
            conn.close()
    finally:
        with admin.cursor() as cur:
            cur.execute('alter database "{}" owner to current_user'.format(dbname.replace('"', "")))
            cur.execute(f"drop owned by {role} cascade")
        admin.close()
        # the role owns nothing now; drop it from another database
        other = psycopg2.connect(pg_server.dsn("postgres"))
        other.autocommit = True
        with other.cursor() as cur:
            cur.execute(f"drop role if exists {role}")
        other.close()


def test_start_and_stop_without_pg_cron_give_a_notice(db):
    assert db.value("select count(*) from pg_extension where extname = 'pg_cron'") == 0
    for fn in ("start", "stop", "start", "start", "stop", "stop"):
        del db.conn.notices[:]
        db.run(f"select teguh.{fn}()")
        notices = list(db.conn.notices)
        assert notices, f"teguh.{fn}() without pg_cron gave no NOTICE"
        assert all(n.startswith("NOTICE") for n in notices), notices
    assert db.value("select teguh.version()")


def test_current_time_honours_fake_now(db):
    db.fake_now(BASE)
    assert db.value("select teguh.current_time()") == BASE
    db.fake_now(ts(90.5))
    assert db.value("select teguh.current_time()") == ts(90.5)


def test_current_time_is_the_real_clock_without_fake_now(db):
    db.fake_now(BASE)
    db.fake_now(None)  # the setting is now '' (set but empty)
    got = db.value("select teguh.current_time()")
    now = datetime.now(timezone.utc)
    assert abs((got - now).total_seconds()) < 60
    # and it moves within a transaction, as clock_timestamp() does
    db.run("begin")
    try:
        first = db.value("select teguh.current_time()")
        db.value("select pg_sleep(0.01)")
        second = db.value("select teguh.current_time()")
    finally:
        db.run("rollback")
    assert second > first


def test_current_time_never_set_in_a_fresh_session(dsn):
    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute("select teguh.current_time()")
            got = cur.fetchone()[0]
    finally:
        conn.close()
    assert abs((got - datetime.now(timezone.utc)).total_seconds()) < 60


def test_create_queue_creates_the_six_per_queue_tables(db):
    db.run("select teguh.create_queue('shop')")
    tables = {
        r[0]
        for r in db.all(
            "select relname from pg_class where relnamespace = 'teguh'::regnamespace and relkind = 'r'"
        )
    }
    for prefix in ("t", "p", "r", "c", "e", "w"):
        assert f"{prefix}_shop" in tables


def test_create_queue_and_reinstall_take_no_lock_on_a_busy_queue(db, sql_factory):
    """Workers create their queue at start and installs re-run over live queues:
    neither may wait for (or deadlock with) transactions using the queue's tables."""
    db.run("select teguh.create_queue('busy')")
    holder = sql_factory()
    holder.run("begin")
    for prefix in ("t", "p", "r", "c", "e", "w"):
        holder.run(f"lock table teguh.{prefix}_busy in row exclusive mode")
    try:
        db.run("set statement_timeout = '3s'")
        db.run("select teguh.create_queue('busy')")
        db.run("begin")
        with db.conn.cursor() as cur:
            cur.execute(SCHEMA_FILE.read_text())  # no parameters: the file's % signs stay as they are
        db.run("commit")
    finally:
        holder.run("rollback")
        db.run("reset statement_timeout")
    assert db.value("select count(*) from teguh.list_queues() where queue_name = 'busy'") == 1


def test_reinstall_upgrades_task_tables_of_older_versions(db):
    """Queues made by 0.1 had indexes on state, finished_at and last_run_id,
    and no cancelled_run_id; a re-install brings them to the current layout and
    keeps telling a cancelled run (AB001) from a lost one."""
    db.run("select teguh.create_queue('old')")
    spawned = db.dicts("select * from teguh.spawn_task('old', 'x', '1')")[0]
    run = db.dicts("select * from teguh.claim_task('old', 'w', 60, 1)")[0]
    db.run("select teguh.cancel_task('old', %s)", spawned["task_id"])
    # turn the queue back into what 0.1 made (which had no view teguh.tasks)
    db.run("drop view teguh.tasks")
    db.run('drop index teguh."t_old_av", teguh."t_old_dl", teguh."t_old_cr"')
    db.run('alter table teguh."t_old" drop column cancelled_run_id')
    db.run('alter table teguh."t_old" reset (fillfactor)')
    db.run(
        "create index t_old_ai on teguh.t_old (available_at)"
        " where available_at is not null and state in ('pending', 'sleeping')"
    )
    db.run(
        "create index t_old_fi on teguh.t_old (finished_at)"
        " where state in ('completed', 'failed', 'cancelled')"
    )
    db.run("create index t_old_ci on teguh.t_old (last_run_id) where state = 'cancelled'")
    # and the check on state that tables made before 0.3 have
    db.run(
        "alter table teguh.t_old add check"
        " (state in ('pending', 'running', 'sleeping', 'completed', 'failed', 'cancelled'))"
    )

    with db.conn.cursor() as cur:
        cur.execute(SCHEMA_FILE.read_text())
    db.conn.commit()

    names = set(db.value("select array_agg(indexname::text) from pg_indexes where tablename = 't_old'"))
    assert {"t_old_av", "t_old_dl", "t_old_cr"} <= names
    assert not names & {"t_old_ai", "t_old_di", "t_old_fi", "t_old_ci"}, names
    options = db.value(
        "select array_to_string(reloptions, ',') from pg_class where oid = 'teguh.t_old'::regclass"
    )
    assert "fillfactor=30" in options
    checks = "select count(*) from pg_constraint where conrelid = 'teguh.t_old'::regclass and contype = 'c'"
    assert db.value(checks) == 0
    with sqlstate("AB001"):
        db.run("select teguh.complete_run('old', %s, null)", run["run_id"])


def test_the_tasks_view_lists_every_queue(db):
    assert db.all("select * from teguh.tasks") == []  # no queue yet: empty, with its columns
    db.run("select teguh.create_queue('one')")
    db.run("select teguh.create_queue('two')")
    a = db.dicts("select * from teguh.spawn_task('one', 'a', '1')")[0]
    b = db.dicts("select * from teguh.spawn_task('two', 'b', '2')")[0]
    rows = db.all("select queue_name, task_id::text, task_name, state from teguh.tasks order by task_id")
    assert rows == [("one", str(a["task_id"]), "a", "pending"), ("two", str(b["task_id"]), "b", "pending")]
    db.run("select teguh.drop_queue('one')")
    assert db.all("select queue_name from teguh.tasks") == [("two",)]
    with db.conn.cursor() as cur:
        cur.execute(SCHEMA_FILE.read_text())  # re-install keeps it
    db.conn.commit()
    assert db.all("select queue_name, task_name from teguh.tasks") == [("two", "b")]
    db.run("select teguh.drop_queue('two')")
    assert db.all("select * from teguh.tasks") == []


# get_task_info as it was before it gained wake_at, awaited_event and wait_step
OLD_GET_TASK_INFO = """
create function teguh.get_task_info(q text, p_task_id uuid)
returns table(task_id uuid, task_name text, params jsonb, state text, attempts int, priority int,
              enqueued_at timestamptz, first_started_at timestamptz, finished_at timestamptz,
              result jsonb, failure_reason jsonb, cancelled_at timestamptz,
              claimed_by text, claimed_at timestamptz)
language plpgsql stable as $$
#variable_conflict use_variable
begin
  if not exists (select 1 from teguh.queues where queue_name = q) then
    return;
  end if;
  return query execute format(
    'select t.task_id, t.task_name, t.params, t.state, t.attempts, t.priority, t.enqueued_at, '
    't.first_started_at, t.finished_at, t.result, t.failure_reason, t.cancelled_at, '
    'r.claimed_by, r.claimed_at '
    'from teguh.%I t left join teguh.%I r on r.task_id = t.task_id where t.task_id = $1',
    't_' || q, 'r_' || q)
    using p_task_id;
end
$$
"""


def test_reinstall_replaces_an_older_get_task_info_and_keeps_its_grants(db):
    role = f"teguh_reader_{uuid.uuid4().hex[:10]}"
    db.run(f"create role {role} nologin")
    try:
        db.run("drop function teguh.get_task_info(text, uuid)")
        with db.conn.cursor() as cur:
            cur.execute(OLD_GET_TASK_INFO)  # no parameters: its % signs stay as they are
        db.run("select teguh.grant_producer(%s)", role)
        db.conn.commit()

        for _ in range(2):  # the upgrade, then a plain re-install
            with db.conn.cursor() as cur:
                cur.execute(SCHEMA_FILE.read_text())
            db.conn.commit()
            columns = db.value(
                "select proargnames from pg_proc where oid = 'teguh.get_task_info(text, uuid)'::regprocedure"
            )
            assert columns[-3:] == ["wake_at", "awaited_event", "wait_step"]
            assert db.value(
                "select has_function_privilege(%s, 'teguh.get_task_info(text, uuid)', 'execute')", role
            )
            assert not db.value(
                "select has_function_privilege('public', 'teguh.get_task_info(text, uuid)', 'execute')"
            )
        oid = db.value("select 'teguh.get_task_info(text, uuid)'::regprocedure::oid")
        with db.conn.cursor() as cur:
            cur.execute(SCHEMA_FILE.read_text())
        db.conn.commit()
        # an install over the current shape does not drop it again
        assert db.value("select 'teguh.get_task_info(text, uuid)'::regprocedure::oid") == oid
    finally:
        db.run("select teguh.revoke_all(%s)", role)
        db.run(f"drop role {role}")
        db.conn.commit()


def test_reinstall_grants_spawn_plain_to_every_role_that_may_spawn_task(db):
    """spawn_plain came after the grant functions had run for existing roles: an install gives it
    to each role that may call spawn_task, so clients that use it need no new grant."""
    producer = f"teguh_prod_{uuid.uuid4().hex[:10]}"
    other = f"teguh_none_{uuid.uuid4().hex[:10]}"
    db.run(f"create role {producer} nologin")
    db.run(f"create role {other} nologin")
    try:
        db.run("select teguh.grant_producer(%s)", producer)
        db.run(
            f"revoke execute on function teguh.spawn_plain(text, text, jsonb) from {producer}"
        )  # as before 0.3
        db.conn.commit()
        may = "select has_function_privilege(%s, 'teguh.spawn_plain(text, text, jsonb)', 'execute')"
        assert not db.value(may, producer)
        with db.conn.cursor() as cur:
            cur.execute(SCHEMA_FILE.read_text())
        db.conn.commit()
        assert db.value(may, producer)
        assert not db.value(may, other)
        assert not db.value(may, "public")
    finally:
        db.run("select teguh.revoke_all(%s)", producer)
        db.run(f"drop role {producer}")
        db.run(f"drop role {other}")
        db.conn.commit()
