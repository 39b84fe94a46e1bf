"""`manage.py teguh ...`: the teguh CLI on the project's database and app."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db import connections

from teguh.contrib.django import get_app

from .helpers import eventually
from .testapp.tasks import process_note

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent


def test_queue_list_and_task_show(django_db: str, capsys: pytest.CaptureFixture[str]) -> None:
    call_command("teguh", "queue", "list")
    assert capsys.readouterr().out.split() == ["default", "other"]

    spawned = process_note.spawn({"note_id": 7})
    call_command("teguh", "task", "show", "default", spawned.task_id)
    shown = json.loads(capsys.readouterr().out)
    assert (shown["task_id"], shown["state"]) == (spawned.task_id, "pending")

    call_command("teguh", "spawn", "other", "echo", '{"a": 1}')
    task_id = capsys.readouterr().out.strip()
    assert get_app().client.get_task_result("other", task_id).state == "pending"


def test_errors_become_command_errors(django_db: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(CommandError) as info:
        call_command("teguh", "task", "show", "default", "0190f7c4-0000-7000-8000-000000000000")
    assert info.value.returncode == 1
    assert "not found" in capsys.readouterr().err


def test_manage_py_teguh_worker_processes_a_task_and_stops_on_sigterm(django_db: str, tmp_path: Path) -> None:
    spawned = process_note.spawn({"note_id": 0})  # no such note: the task fails after reading
    echo = get_app().spawn_task("echo", {"hello": "django"})  # queue "other"
    settings = connections["default"].settings_dict
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(HERE.parent), str(REPO)]),
        "DJANGO_SETTINGS_MODULE": "contrib_django.djproject.settings",
        "DJTEST_DB_NAME": settings["NAME"],
        "DJTEST_DB_HOST": settings["HOST"],
        "DJTEST_DB_PORT": str(settings["PORT"]),
        "DJTEST_DB_USER": settings["USER"],
    }
    log = tmp_path / "worker.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, str(HERE / "manage.py"), "teguh", "worker", "--queue", "other"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=str(tmp_path),
        )
    try:
        client = get_app().client
        done = eventually(lambda: (r := client.get_task_result("other", echo.task_id)).done and r, 30)
        assert (done.state, done.result) == ("completed", {"hello": "django"}), log.read_text()
        # the worker ran queue "other" only
        assert client.get_task_result("default", spawned.task_id).state == "pending"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
    # TEGUH["WORKER"] applied
    started = next(line for line in log.read_text().splitlines() if "serving queue" in line)
    assert "serving queue 'other' on db " in started and "(concurrency 2)" in started


@pytest.mark.parametrize(
    ("worker", "expected"),
    [
        ({"CONCURRENCY": 2}, ()),  # no queue: the app's queues
        ({"QUEUE": "other"}, ("other",)),
        ({"QUEUES": ["default", "other"]}, ("default", "other")),
    ],
    ids=["none", "queue", "queues"],
)
def test_manage_py_teguh_worker_takes_its_queues_from_teguh_worker(
    django_db: str, monkeypatch: pytest.MonkeyPatch, worker: dict, expected: tuple
) -> None:
    # --queue takes several values (issue 12): TEGUH["WORKER"] may give one name or a list
    from django.conf import settings
    from django.test import override_settings

    from teguh import cli
    from teguh.contrib.django.management.commands.teguh import run_cli

    seen: dict = {}
    monkeypatch.setattr(cli, "run_worker", lambda app, queue, *args, **options: seen.update(queue=queue))
    with override_settings(TEGUH={**settings.TEGUH, "WORKER": worker}):
        assert run_cli(["worker"]) == 0
    assert seen["queue"] == expected
