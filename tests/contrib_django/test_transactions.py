"""Transactional spawn: a task spawned on Django's connection lives and dies with the transaction."""

from __future__ import annotations

import pytest
from django.db import connections, transaction
from django.test import Client

from teguh import QueueNotFound
from teguh.contrib.django import get_app, spawn_task

from .helpers import eventually, query
from .testapp.models import Note
from .testapp.tasks import process_note, process_note_async


def test_view_that_raises_leaves_neither_row_nor_task(django_db: str) -> None:
    response = Client(raise_request_exception=False).post("/notes/?fail=1", {"text": "lost"})
    assert response.status_code == 500
    assert query(django_db, "select count(*) from testapp_note") == [(0,)]
    assert query(django_db, "select count(*) from teguh.t_default") == [(0,)]


def test_view_that_commits_leaves_both_and_a_worker_runs_the_task(django_db: str, django_worker) -> None:
    response = Client().post("/notes/", {"text": "kept"})
    assert response.status_code == 200, response.content
    body = response.json()
    assert query(django_db, "select text from testapp_note") == [("kept",)]
    assert query(django_db, "select task_name, state from teguh.t_default") == [("process-note", "pending")]

    django_worker()
    done = get_app().client.wait_for_result("default", body["task_id"], timeout=15)
    assert (done.state, done.result) == ("completed", {"upper": "KEPT"}), done.failure
    assert Note.objects.get(pk=body["note_id"]).processed_by_task == body["task_id"]


def test_spawn_outside_atomic_commits_at_once(django_db: str) -> None:
    spawned = process_note.spawn({"note_id": 1})
    # another connection sees it: Django's autocommit mode was respected
    assert query(django_db, "select task_id::text from teguh.t_default") == [(spawned.task_id,)]
    assert connections["default"].get_autocommit()


def test_spawn_rolled_back_with_set_rollback(django_db: str) -> None:
    with transaction.atomic():
        Note.objects.create(text="gone")
        spawn_task("process-note", {"note_id": 1})
        assert query(django_db, "select count(*) from teguh.t_default") == [(0,)]  # not committed yet
        transaction.set_rollback(True)
    assert query(django_db, "select count(*) from teguh.t_default") == [(0,)]
    assert Note.objects.count() == 0


def test_psycopg3_backend_spawns_emits_and_reads_in_the_transaction(django_db: str) -> None:
    """Django picks psycopg 3 when it is installed (as here): spawns, emits and reads join atomic()."""
    import psycopg

    client = get_app().client
    with transaction.atomic():
        Note.objects.create(text="gone")
        raw = connections["default"].connection
        assert isinstance(raw, psycopg.Connection)
        lost = spawn_task("process-note", {"note_id": 1})
        client.emit_event("default", "note-1-seen", {"gone": True}, conn=raw)
        transaction.set_rollback(True)
    assert query(django_db, "select count(*) from teguh.e_default") == [(0,)]
    with transaction.atomic():
        Note.objects.create(text="kept")
        spawned = spawn_task("process-note", {"note_id": 2})
        raw = connections["default"].connection
        client.emit_event("default", "note-2-seen", {"kept": True}, conn=raw)
        result = client.get_task_result("default", spawned.task_id, conn=raw)
        assert (result.task_id, result.state) == (spawned.task_id, "pending")
        assert query(django_db, "select count(*) from teguh.t_default") == [(0,)]  # not committed yet
    assert query(django_db, "select task_id::text from teguh.t_default") == [(spawned.task_id,)]
    assert query(django_db, "select event_name, payload from teguh.e_default") == [
        ("note-2-seen", {"kept": True})
    ]
    assert list(Note.objects.values_list("text", flat=True)) == ["kept"]
    assert lost.task_id != spawned.task_id


def test_failed_spawn_caught_inside_atomic_keeps_the_transaction_usable(django_db: str) -> None:
    with transaction.atomic():
        Note.objects.create(text="first")
        with pytest.raises(QueueNotFound):
            spawn_task("echo", {}, queue="no_such_queue")
        Note.objects.create(text="second")
        spawned = spawn_task("echo", {"x": 1})  # the registered queue "other"
    assert sorted(Note.objects.values_list("text", flat=True)) == ["first", "second"]
    assert query(django_db, "select task_id::text, params from teguh.t_other") == [
        (spawned.task_id, {"x": 1})
    ]


def test_worker_threads_do_not_keep_django_connections(django_db: str, django_worker) -> None:
    """close_old_connections() runs after each task (CONN_MAX_AGE = 0 here): no connection is left open."""
    note = Note.objects.create(text="x")
    spawned = process_note.spawn({"note_id": note.pk})
    connections.close_all()
    django_worker()
    done = get_app().client.wait_for_result("default", spawned.task_id, timeout=15)
    assert done.state == "completed", done.failure
    dbname = connections["default"].settings_dict["NAME"]
    # Django connects without an application_name; teguh's own connections set one
    eventually(
        lambda: (
            query(
                django_db,
                "select count(*) from pg_stat_activity where datname = %s and application_name = ''"
                " and pid <> pg_backend_pid()",
                dbname,
            )
            == [(0,)]
        )
    )


def test_psycopg2_backend_spawns_in_the_transaction_too(django_db: str) -> None:
    """The same guarantees with Django on psycopg2 (here psycopg 3 is installed, so a subprocess hides it)."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    here = Path(__file__).resolve().parent
    settings = connections["default"].settings_dict
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(here.parent), str(here.parent.parent)]),
        "DJANGO_SETTINGS_MODULE": "contrib_django.djproject.settings",
        "DJTEST_DB_NAME": settings["NAME"],
        "DJTEST_DB_HOST": settings["HOST"],
        "DJTEST_DB_PORT": str(settings["PORT"]),
        "DJTEST_DB_USER": settings["USER"],
    }
    proc = subprocess.run(
        [sys.executable, str(here / "psycopg2_spawn.py"), django_db],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert seen == {
        "driver": "psycopg2.extensions",
        "after_rollback": 0,
        "after_autocommit": 1,
        "mapped": True,
        "after_atomic": 2,
    }


def test_worker_recovers_from_killed_persistent_connections(django_db: str, django_worker) -> None:
    """With persistent connections (CONN_MAX_AGE=None) and health checks, a database restart
    (here: every Django backend terminated) does not break later tasks: close_old_connections()
    before each run lets Django check and replace the dead connection."""
    from django.conf import settings

    db = settings.DATABASES["default"]
    saved = {key: db.get(key) for key in ("CONN_MAX_AGE", "CONN_HEALTH_CHECKS")}
    db.update(CONN_MAX_AGE=None, CONN_HEALTH_CHECKS=True)
    try:
        client = get_app().client
        note = Note.objects.create(text="persist")
        first = process_note.spawn({"note_id": note.pk})
        connections.close_all()  # only the worker's connection stays open
        django_worker(concurrency=1)  # one thread: the second task reuses its connection
        assert client.wait_for_result("default", first.task_id, timeout=15).state == "completed"
        killed = query(
            django_db,
            "select pg_terminate_backend(pid) from pg_stat_activity"
            " where datname = current_database() and application_name = '' and pid <> pg_backend_pid()",
        )
        assert killed == [(True,)]  # the worker thread's persistent connection
        second = process_note.spawn({"note_id": note.pk})
        done = client.wait_for_result("default", second.task_id, timeout=15)
        assert (done.state, done.attempts) == ("completed", 1), done.failure
    finally:
        db.update(saved)


def test_eager_mode_runs_the_task_inline_inside_the_view_transaction(django_db: str) -> None:
    """teguh.testing.eager with the Django app: the handler runs in the view's atomic block,
    and the connection housekeeping must not close the connection under the transaction."""
    from teguh.testing import eager

    with eager(get_app()) as runner:
        response = Client().post("/notes/", {"text": "inline"})
        assert response.status_code == 200, response.content
        body = response.json()
        done = runner.result(body["task_id"])
    assert (done.state, done.result) == ("completed", {"upper": "INLINE"})
    assert Note.objects.get(pk=body["note_id"]).processed_by_task == body["task_id"]
    assert query(django_db, "select count(*) from teguh.t_default") == [(0,)]  # nothing written


def test_async_handler_uses_the_handler_threads_connection_which_is_closed_after(
    django_db: str, django_worker
) -> None:
    """An async handler's ORM calls come back to the handler thread, where close_old_connections() runs."""
    note = Note.objects.create(text="async")
    spawned = process_note_async.spawn({"note_id": note.pk})
    connections.close_all()
    django_worker()
    done = get_app().client.wait_for_result("default", spawned.task_id, timeout=15)
    assert (done.state, done.result) == ("completed", {"upper": "ASYNC"}), done.failure
    assert Note.objects.get(pk=note.pk).processed_by_task == spawned.task_id
    connections.close_all()
    dbname = connections["default"].settings_dict["NAME"]
    eventually(
        lambda: (
            query(
                django_db,
                "select count(*) from pg_stat_activity where datname = %s and application_name = ''"
                " and pid <> pg_backend_pid()",
                dbname,
            )
            == [(0,)]
        )
    )


def test_eager_async_handler_sees_the_callers_transaction(django_db: str) -> None:
    from teguh.testing import eager

    with transaction.atomic(), eager(get_app()) as runner:
        note = Note.objects.create(text="uncommitted")
        spawned = process_note_async.spawn({"note_id": note.pk})
        done = runner.result(spawned.task_id)
        assert (done.state, done.result) == ("completed", {"upper": "UNCOMMITTED"}), done.failure
        assert Note.objects.get(pk=note.pk).processed_by_task == spawned.task_id
