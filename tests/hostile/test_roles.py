"""Privilege separation with real PostgreSQL roles (docs/roles.md).

The schema is installed by a role that owns only the `teguh` schema (not a
superuser, not the database's owner); producer, worker and admin roles get
exactly their grants, and everything else fails with `PermissionDenied`.
Roles are cluster-wide, so their names are unique per test and they are
dropped at teardown.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg2
import pytest

import teguh
from teguh.app import App

try:
    from worker.conftest import WorkerThread
except ImportError:  # pragma: no cover
    from tests.worker.conftest import WorkerThread  # type: ignore[no-redef]

UNKNOWN_ID = "00000000-0000-7000-8000-000000000000"


class Roles:
    """Login roles for one test, and DSNs that connect as them."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.suffix = uuid.uuid4().hex[:10]
        self.names: dict[str, str] = {}
        self.super = psycopg2.connect(dsn)
        self.super.autocommit = True

    def create(self, kind: str) -> str:
        name = f"tg_{kind}_{self.suffix}"
        with self.super.cursor() as cur:
            cur.execute(f'create role "{name}" login nosuperuser nocreatedb nocreaterole')
        self.names[kind] = name
        return name

    def dsn_of(self, kind: str) -> str:
        return f"{self.dsn} user={self.names[kind]}"

    def sql(self, query: str, *args: Any) -> None:
        with self.super.cursor() as cur:
            cur.execute(query, args)

    def drop(self) -> None:
        names = ", ".join(f'"{n}"' for n in self.names.values())
        if names:
            with self.super.cursor() as cur:
                cur.execute(
                    "select pg_terminate_backend(pid) from pg_stat_activity where usename = any(%s)",
                    (list(self.names.values()),),
                )
                cur.execute("drop schema if exists teguh cascade")
                cur.execute(f"drop owned by {names} cascade")
                cur.execute(f"drop role {names}")
        self.super.close()


@pytest.fixture
def roles(empty_dsn: str) -> Iterator[Roles]:
    r = Roles(empty_dsn)
    try:
        yield r
    finally:
        r.drop()


@pytest.fixture
def installed(roles: Roles) -> Iterator[Callable[[str], teguh.Client]]:
    """The schema installed by a schema-only owner; `client_as(kind)` connects as a role."""
    owner = roles.create("owner")
    roles.sql(f'create schema teguh authorization "{owner}"')
    clients: list[teguh.Client] = []

    def client_as(kind: str) -> teguh.Client:
        client = teguh.Client(roles.dsn_of(kind), max_connections=4, application_name=f"teguh-{kind}")
        clients.append(client)
        return client

    teguh.install(roles.dsn_of("owner"))
    yield client_as
    for client in clients:
        client.close()


def run_worker(app: App, queue: str) -> WorkerThread:
    return WorkerThread(app.worker(queue, concurrency=2, claim_timeout=30, poll_interval=30)).start()


def test_a_schema_only_owner_installs_and_runs_everything(
    roles: Roles, installed: Callable[[str], teguh.Client]
) -> None:
    owner = installed("owner")
    teguh.install(owner)  # re-installing as the owner keeps working
    app = App(client=owner, queue="jobs")
    app.task("double")(lambda p: p * 2)
    worker = run_worker(app, "jobs")
    try:
        task = owner.spawn_task("jobs", "double", 21, notify_done=True)
        assert owner.wait_for_result("jobs", task.task_id, timeout=15).result == 42
    finally:
        assert worker.stop()
    owner.cancel_task("jobs", task.task_id)
    owner.drop_queue("jobs")
    assert owner.list_queues() == []


def test_producer_worker_and_admin_get_exactly_their_rights(
    roles: Roles, installed: Callable[[str], teguh.Client]
) -> None:
    owner = installed("owner")
    for kind in ("producer", "worker", "admin", "nobody"):
        roles.create(kind)
    for kind in ("producer", "worker", "admin"):
        owner._run(
            "grant",
            lambda cur, kind=kind: cur.execute(f"select teguh.grant_{kind}(%s)", (roles.names[kind],)),
        )
    admin, producer, worker, nobody = (installed(k) for k in ("admin", "producer", "worker", "nobody"))

    admin.create_queue("jobs")  # created after the grants: its per-queue functions need no grant
    task = producer.spawn_task("jobs", "echo", {"n": 1}, notify_done=True)
    producer.spawn_tasks("jobs", [{"task_name": "echo", "params": 2}])
    producer.emit_event("jobs", "ready", {"ok": True})
    assert producer.get_task_result("jobs", task.task_id).state == "pending"
    worker._register_task_types("jobs", [{"task_name": "echo", "max_attempts": 3}], "v1")
    assert [t.name for t in producer.list_task_types("jobs")] == ["echo"]
    admin.pause_task_type("jobs", "echo")
    admin.resume_task_type("jobs", "echo")
    admin.pause_queue("jobs")
    admin.resume_queue("jobs")
    admin.set_queue_options("jobs", default_max_attempts=30)

    denied: dict[str, list[Callable[[], Any]]] = {
        "producer": [
            lambda: producer.claim_task("jobs", "w"),
            lambda: producer.complete_run("jobs", UNKNOWN_ID),
            lambda: producer.fail_run("jobs", UNKNOWN_ID, {"type": "x"}),
            lambda: producer.extend_claim("jobs", UNKNOWN_ID, 5),
            lambda: producer.create_queue("other"),
            lambda: producer.drop_queue("jobs"),
            lambda: producer.cancel_task("jobs", task.task_id),
            lambda: producer.retry_task("jobs", task.task_id),
            lambda: producer.cleanup_tasks("jobs"),
            lambda: producer.ticker(),
            lambda: producer.pause_queue("jobs"),
            lambda: producer.set_queue_options("jobs", default_max_attempts=3),
            lambda: producer._register_task_types("jobs", [{"task_name": "x"}], None),
        ],
        "worker": [
            lambda: worker.create_queue("other"),
            lambda: worker.drop_queue("jobs"),
            lambda: worker.cancel_task("jobs", task.task_id),
            lambda: worker.retry_task("jobs", task.task_id),
            lambda: worker.cleanup_tasks("jobs"),
            lambda: worker.pause_queue("jobs"),
            lambda: worker.resume_task_type("jobs", "echo"),
        ],
        "admin": [
            lambda: admin.claim_task("jobs", "w"),
            lambda: admin.complete_run("jobs", UNKNOWN_ID),
        ],
        "nobody": [
            lambda: nobody.spawn_task("jobs", "echo"),
            lambda: nobody.list_queues(),
            lambda: nobody.get_task_result("jobs", task.task_id),
        ],
    }
    for calls in denied.values():
        for call in calls:
            with pytest.raises(teguh.PermissionDenied):
                call()

    # nobody but the owner touches the tables or the internal and per-queue functions
    for kind in ("producer", "worker", "admin", "nobody"):
        conn = psycopg2.connect(roles.dsn_of(kind))
        conn.autocommit = True
        try:
            for query in (
                "select count(*) from teguh.t_jobs",
                "delete from teguh.p_jobs",
                "select teguh._check_name('a', 'b')",
                "select * from teguh._claim_jobs('x', 30, 1, false, null, false)",
                "select * from teguh._spawn_jobs('t', '1', '{}', 25, false)",
                "select teguh.grant_admin(current_user)",
                "create table teguh.evil (x int)",
            ):
                with pytest.raises(psycopg2.Error) as info, conn.cursor() as cur:
                    cur.execute(query)
                assert info.value.pgcode == "42501", (kind, query, info.value.pgcode)
        finally:
            conn.close()

    # a worker role runs a real worker (it may not create the queue, which exists)
    app = App(client=worker, queue="jobs")
    app.task("echo")(lambda p, ctx: ctx.step("s", lambda: {"echo": p}))
    thread = run_worker(app, "jobs")
    try:
        assert producer.wait_for_result("jobs", task.task_id, timeout=15).result == {"echo": {"n": 1}}
    finally:
        assert thread.stop() and thread.error is None
    # ... but not on a queue that does not exist
    with pytest.raises(teguh.QueueNotFound, match="may not create it"):
        App(client=worker, queue="missing").worker("missing", install_signal_handlers=False).run()

    admin.cancel_task("jobs", task.task_id)
    admin.drop_queue("jobs")
    owner._run("revoke", lambda cur: cur.execute("select teguh.revoke_all(%s)", (roles.names["producer"],)))
    with pytest.raises(teguh.PermissionDenied):
        installed("producer").list_queues()


def test_entry_points_are_definer_with_a_pinned_search_path_and_public_has_nothing(db: Any) -> None:
    db.run("select teguh.create_queue('jobs')")
    public_exec = db.all(
        "select p.oid::regprocedure::text from pg_proc p"
        " where p.pronamespace = 'teguh'::regnamespace and has_function_privilege('public', p.oid, 'execute')"
    )
    assert public_exec == []
    unpinned = db.all(
        "select p.oid::regprocedure::text from pg_proc p"
        " where p.pronamespace = 'teguh'::regnamespace and p.prosecdef"
        " and not exists (select 1 from unnest(p.proconfig) c where c like 'search_path=%%')"
    )
    assert unpinned == []
    definers = {
        r[0]
        for r in db.all(
            "select proname from pg_proc where pronamespace = 'teguh'::regnamespace and prosecdef"
        )
    }
    assert {
        "spawn_task",
        "claim_runs",
        "complete_runs",
        "emit_event",
        "create_queue",
        "drop_queue",
    } <= definers
    # Internal functions run as their caller, except trigger functions: a
    # deferred trigger fires at commit, after the entry point that queued it
    # returned, and nobody can call a trigger function directly.
    triggers = {
        r[0]
        for r in db.all(
            "select proname from pg_proc where pronamespace = 'teguh'::regnamespace"
            " and prorettype = 'trigger'::regtype"
        )
    }
    assert "_batch_ends_at_commit" in triggers
    assert not any(name.startswith("_") for name in definers - triggers)


def test_grant_to_an_unknown_role_is_a_clear_error(db: Any) -> None:
    with pytest.raises(psycopg2.Error) as info:
        db.run("select teguh.grant_worker('no_such_role_here')")
    assert info.value.pgcode == "TG004" and "does not exist" in str(info.value)
