"""The django.tasks backend: enqueue through teguh, run in a teguh worker, read results back."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from teguh.contrib.django import TeguhBackend, get_app

from .helpers import eventually, query
from .testapp.tasks import add, async_add, durable_double, explode

try:
    from django.tasks import TaskResultStatus, default_task_backend
    from django.tasks.exceptions import TaskResultDoesNotExist
    from django.tasks.signals import task_enqueued, task_finished, task_started
except ImportError:
    from django_tasks import TaskResultStatus, default_task_backend
    from django_tasks.exceptions import TaskResultDoesNotExist
    from django_tasks.signals import task_enqueued, task_finished, task_started


def _finished(result):
    def check():
        result.refresh()
        return result.is_finished

    eventually(check, 15)
    return result


def test_round_trip_with_a_result(django_db: str, django_worker) -> None:
    result = add.enqueue(2, 3)
    assert result.status == TaskResultStatus.READY
    assert isinstance(add.get_backend(), TeguhBackend)
    assert query(django_db, "select task_name, params from teguh.t_default") == [
        ("django.tasks:contrib_django.testapp.tasks.add", {"args": [2, 3], "kwargs": {}})
    ]
    django_worker()
    _finished(result)
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.return_value == 5
    assert result.attempts == 1 and result.started_at is not None and result.finished_at is not None

    fetched = add.get_result(result.id)
    assert (fetched.status, fetched.return_value, fetched.args) == (TaskResultStatus.SUCCESSFUL, 5, [2, 3])


def test_async_task_function_runs(django_db: str, django_worker) -> None:
    result = async_add.enqueue(20, 22)
    django_worker()
    assert _finished(result).return_value == 42


def test_context_carries_teguh_durable_context(django_db: str, django_worker) -> None:
    result = durable_double.enqueue(x=4)
    django_worker()
    _finished(result)
    assert result.return_value == {"doubled": 8, "attempt": 1}
    assert query(django_db, "select checkpoint_name, state from teguh.c_default") == [("double", 8)]


def test_failure_maps_to_failed_with_the_exception_class(django_db: str, django_worker) -> None:
    result = explode.enqueue("boom")  # MAX_ATTEMPTS is 1 in the test settings
    django_worker()
    _finished(result)
    assert result.status == TaskResultStatus.FAILED
    assert result.errors[0].exception_class is KeyError
    assert "boom" in result.errors[0].traceback
    with pytest.raises(ValueError):
        result.return_value  # noqa: B018 (the property raises)


def test_priority_and_run_after_map_to_spawn_options(django_db: str) -> None:
    later = timezone.now() + timedelta(hours=1)
    result = add.using(priority=7, run_after=later).enqueue(1, 1)
    rows = query(django_db, "select priority, available_at, max_attempts from teguh.t_default")
    assert rows == [(7, later, 1)]
    assert add.get_result(result.id).status == TaskResultStatus.READY


def test_enqueue_rolls_back_with_the_transaction(django_db: str) -> None:
    with transaction.atomic():
        result = add.enqueue(1, 2)
        transaction.set_rollback(True)
    with pytest.raises(TaskResultDoesNotExist):
        default_task_backend.get_result(result.id)
    with pytest.raises(TaskResultDoesNotExist):
        default_task_backend.get_result("not-a-uuid")
    plain = get_app().spawn_task("process-note", {"note_id": 1})  # a teguh task, not a django.tasks one
    with pytest.raises(TaskResultDoesNotExist, match=r"not a django\.tasks task"):
        default_task_backend.get_result(plain.task_id)


def test_cancelled_task_reads_as_failed(django_db: str) -> None:
    result = add.enqueue(1, 2)
    get_app().client.cancel_task("default", result.id)
    result.refresh()
    assert result.status == TaskResultStatus.FAILED
    assert result.errors[0].exception_class_path == "teguh.errors.Cancelled"


def test_django_task_signals_are_sent(django_db: str, django_worker) -> None:
    seen: list[tuple[str, str, str]] = []

    def record(signal_name):
        def receiver(sender, task_result, **kwargs):
            seen.append((signal_name, task_result.id, str(task_result.status)))

        return receiver

    receivers = [
        (sig, record(name)) for sig, name in ((task_enqueued, "enqueued"), (task_started, "started"))
    ]
    receivers.append((task_finished, record("finished")))
    for sig, receiver in receivers:
        sig.connect(receiver)
    try:
        ok = add.enqueue(1, 1)
        bad = explode.enqueue("x")
        django_worker(concurrency=1)
        _finished(ok)
        _finished(bad)
        eventually(lambda: len(seen) == 6)
    finally:
        for sig, receiver in receivers:
            sig.disconnect(receiver)
    assert sorted(e for e in seen if e[1] == ok.id) == [
        ("enqueued", ok.id, "READY"),
        ("finished", ok.id, "SUCCESSFUL"),
        ("started", ok.id, "RUNNING"),
    ]
    assert ("finished", bad.id, "FAILED") in seen
