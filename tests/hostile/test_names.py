"""Hostile queue, task, step and event names, through the client and the SQL functions.

Every name is either refused before anything is written (the catalog and the
row counts are unchanged) or stored and read back exactly; the client and the
engine agree on which.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import psycopg2
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

import teguh
from teguh import _validate

from .conftest import HOSTILE, Q, pgcode_of

UNKNOWN_ID = "00000000-0000-7000-8000-000000000000"

HOSTILE_QUEUE_NAMES = [
    "jobs; drop schema teguh cascade; --",
    'a"b',
    "a'b",
    "Jobs",
    "jobs ",
    " jobs",
    "ñ",
    "\u0458obs",  # Cyrillic je, a homoglyph of j
    "",
    "\t",
    "a\\b",
    "a$$b",
    "q%Iq",
    "a.b",
    "teguh.t_x",
    "x" * 56,
    "x" * 64,
    "a" * 63 + "b" * 7,
    "a" * 63 + "c" * 7,
]
"""Queue names the engine must refuse (pg_catalog and the like are merely odd, not invalid)."""

SQL_QUEUE_CALLS = [
    "select teguh.create_queue(%s)",
    "select teguh.drop_queue(%s)",
    "select * from teguh.spawn_task(%s, 't', '{}')",
    'select * from teguh.spawn_tasks(%s, \'[{"task_name": "t"}]\')',
    "select * from teguh.claim_task(%s, 'w')",
    "select teguh.emit_event(%s, 'e', null)",
    f"select teguh.cancel_task(%s, '{UNKNOWN_ID}')",
    f"select * from teguh.get_task_result(%s, '{UNKNOWN_ID}')",
    "select teguh.next_due(%s)",
    "select teguh.ticker(%s)",
    "select teguh.cleanup_tasks(%s)",
]

HOSTILE_CHARS = [
    "'", '"', ";", "--", "%I", "%s", "%L", "%%", "\\", "$$", "$q$", "\x00", "\ud800", "\udfff",
    "\u202e", "\u200f", "\n", "\t", "\r", " ", "\u00a0", "\u2028", "\u0085", "\x1c", "\x7f", "\ufeff",
    "é", "😀", "ж", "a", "Z", "0", "_", ":", "/", "*",
]  # fmt: skip

names = st.one_of(
    st.text(max_size=40),
    st.lists(st.sampled_from(HOSTILE_CHARS), min_size=1, max_size=12).map("".join),
    st.builds(lambda n, c: c * n, st.integers(240, 1030), st.sampled_from(["a", "é", "😀", "ж", "'"])),
)
"""Any text, strings built from SQL metacharacters and control characters, and names near 1024 bytes."""


def encodable(name: str) -> bool:
    """Whether PostgreSQL can receive the string at all (no NUL, no lone surrogate)."""
    if "\x00" in name:
        return False
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def client_accepts(name: str) -> bool:
    try:
        _validate.name(name, "name")
    except (teguh.InvalidArgument, TypeError):
        return False
    return True


def test_sql_functions_refuse_hostile_queue_names(db: Any, catalog: Callable[[], Any]) -> None:
    before = catalog()
    for name in HOSTILE_QUEUE_NAMES:  # one database for all names: this is the slow part
        for query in SQL_QUEUE_CALLS:
            assert pgcode_of(lambda query=query, name=name: db.run(query, name)) == "TG001", (query, name)
    assert catalog() == before


def test_client_refuses_hostile_queue_names(client: teguh.Client, catalog: Callable[[], Any]) -> None:
    before = catalog()
    for name in HOSTILE_QUEUE_NAMES:
        calls: list[Callable[[], Any]] = [
            lambda name=name: client.create_queue(name),
            lambda name=name: client.drop_queue(name),
            lambda name=name: client.spawn_task(name, "t"),
            lambda name=name: client.claim_task(name, "w"),
            lambda name=name: client.emit_event(name, "e"),
            lambda name=name: client.cancel_task(name, UNKNOWN_ID),
            lambda name=name: client.cleanup_tasks(name),
        ]
        for call in calls:
            with pytest.raises(teguh.InvalidQueueName):
                call()
    assert catalog() == before


def test_odd_but_valid_queue_names_stay_inside_the_schema(client: teguh.Client, db: Any) -> None:
    for name in ("pg_catalog", "public", "teguh", "queues", "x" * 55):
        client.create_queue(name)
        task = client.spawn_task(name, "t")
        assert client.get_task_result(name, task.task_id).state == "pending"
    # every table lives in schema teguh; nothing landed in pg_catalog or public
    assert (
        db.value(
            "select count(*) from pg_class"
            " where relname like 't\\_%%' and relnamespace <> 'teguh'::regnamespace"
        )
        == 0
    )
    assert (
        db.value(
            "select count(*) from pg_tables where schemaname = 'teguh' and tablename = %s", "t_" + "x" * 55
        )
        == 1
    )


@HOSTILE
@given(name=names)
@example(name="a" * 1024)
@example(name="a" * 1025)
@example(name="é" * 512)
@example(name="é" * 513)
@example(name="\u00a0")
@example(name="\u2028")  # regression: the engine's `\s` called it blank under glibc, the client did not
@example(name="\u3000\u0085")
@example(name="'); drop table teguh.queues; --")
def test_task_names_round_trip_or_are_refused(
    client: teguh.Client, db: Any, catalog: Callable[[], Any], name: str
) -> None:
    before = catalog()
    try:
        spawned = client.spawn_task(Q, name)
    except (teguh.InvalidArgument, TypeError) as exc:
        assert "task_name" in str(exc)
        with pytest.raises((teguh.InvalidArgument, TypeError), match="task_name"):
            client.spawn_tasks(Q, [{"task_name": "fine"}, {"task_name": name}])
        assert catalog() == before
        accepted = False
    else:
        accepted = True
        [run] = client.claim_task(Q, "w", 0)
        assert run.task_id == spawned.task_id and run.task_name == name
        [batch] = client.spawn_tasks(Q, [{"task_name": name, "params": 1}])
        [again] = client.claim_task(Q, "w", 0)
        assert again.task_id == batch.task_id and again.task_name == name
        client.complete_run(Q, again.run_id, None)
        client.complete_run(Q, run.run_id, name)
        assert client.get_task_result(Q, spawned.task_id).result == name
        assert db.value("select task_name from teguh.t_hostile where task_id = %s", spawned.task_id) == name
    assert accepted == client_accepts(name)
    if encodable(name):  # the engine draws the same line as the client
        before = catalog()
        code = pgcode_of(lambda: db.run("select teguh.spawn_task(%s, %s, '1')", Q, name))
        assert (code is None) == accepted, (code, name)
        if code is not None:
            assert code == "TG004"
            assert catalog() == before
        else:
            db.run("delete from teguh.p_hostile")


_steps = itertools.count()


@pytest.fixture
def held_run(client: teguh.Client) -> teguh.ClaimedRun:
    """A claimed run whose lease never expires, shared by every example."""
    client.spawn_task(Q, "holder")
    [run] = client.claim_task(Q, "w", 0)
    return run


@HOSTILE
@given(name=names)
@example(name="x" * 1025)
@example(name="$teguh_sleep_until")
def test_step_names_round_trip_or_are_refused(
    client: teguh.Client, db: Any, catalog: Callable[[], Any], held_run: teguh.ClaimedRun, name: str
) -> None:
    before = catalog()
    state = {"step": name if encodable(name) else None}
    try:
        client.set_checkpoint(Q, held_run.task_id, name, state, held_run.run_id)
    except (teguh.InvalidArgument, TypeError) as exc:
        assert "step_name" in str(exc)
        assert catalog() == before
        assert not client_accepts(name)
        return
    assert client_accepts(name)
    assert client.get_checkpoints(Q, held_run.task_id, held_run.run_id)[name] == state
    code = pgcode_of(
        lambda: db.run(
            "select teguh.set_task_checkpoint_state(%s, %s::uuid, %s, '2', %s::uuid)",
            Q, held_run.task_id, name + "!", held_run.run_id,
        )
    )  # fmt: skip
    assert code == ("TG004" if len((name + "!").encode()) > 1024 else None)


@HOSTILE
# payloads jsonb can store (NUL and the like are test_payloads.py's): an error here is about the name
@given(
    name=names,
    payload=st.one_of(
        st.none(), st.text(st.characters(exclude_characters="\x00"), max_size=20), st.integers()
    ),
)
@example(name="e" * 1025, payload=None)
@example(name="teguh_hostile", payload="x")
def test_event_names_round_trip_or_are_refused(
    client: teguh.Client,
    db: Any,
    catalog: Callable[[], Any],
    held_run: teguh.ClaimedRun,
    name: str,
    payload: Any,
) -> None:
    before = catalog()
    try:
        client.emit_event(Q, name, payload)
    except (teguh.InvalidArgument, TypeError) as exc:
        assert "event_name" in str(exc)
        assert catalog() == before
        assert not client_accepts(name)
        if encodable(name):
            assert pgcode_of(lambda: db.run("select teguh.emit_event(%s, %s, '1')", Q, name)) == "TG004"
            assert catalog() == before
        return
    assert client_accepts(name)
    stored = db.value("select payload from teguh.e_hostile where event_name = %s", name)
    step = f"await-{next(_steps)}"
    suspend, got = client.await_event(Q, held_run.task_id, held_run.run_id, step, name)
    assert not suspend
    assert got == stored  # first write wins: an earlier example may have emitted the same name
    if stored == payload:
        assert got == payload


def test_a_name_that_is_not_a_string_is_a_type_error(
    client: teguh.Client, catalog: Callable[[], Any]
) -> None:
    before = catalog()
    for bad in (None, 1, b"bytes", ["t"]):
        with pytest.raises(TypeError, match="task_name"):
            client.spawn_task(Q, bad)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="event_name"):
            client.emit_event(Q, bad)  # type: ignore[arg-type]
    assert catalog() == before


def test_sql_name_checks_refuse_null_and_blank(db: Any, catalog: Callable[[], Any]) -> None:
    db.run("select teguh.create_queue(%s)", Q)
    before = catalog()
    for name in (None, "", " ", "\t\n"):
        assert pgcode_of(lambda name=name: db.run("select teguh.spawn_task(%s, %s, '1')", Q, name)) == "TG004"
        assert pgcode_of(lambda name=name: db.run("select teguh.emit_event(%s, %s, '1')", Q, name)) == "TG004"
    assert catalog() == before


def test_psycopg2_refuses_nul_before_sending(db: Any) -> None:
    with pytest.raises(ValueError):
        db.run("select teguh.spawn_task(%s, %s, '1')", Q, "a\x00b")
    assert isinstance(psycopg2.__version__, str)


def test_cli_refuses_hostile_queue_names(dsn: str, catalog: Callable[[], Any]) -> None:
    from click.testing import CliRunner

    from teguh.cli import main

    runner = CliRunner()
    before = catalog()
    for name in ["jobs; drop schema teguh cascade; --", 'a"b', "Jobs", "x" * 56, "\t"]:
        for args in (
            ["queue", "create", name],
            ["queue", "drop", name],
            ["spawn", name, "t", "{}"],
            ["worker", "--queue", name, "--app", "teguh.demo:app"],
        ):
            result = runner.invoke(main, ["--dsn", dsn, *args])
            assert result.exit_code == 1, (args, result.output)
            assert "invalid queue name" in result.output.lower(), (args, result.output)
            assert "Traceback" not in result.output
    assert catalog() == before
