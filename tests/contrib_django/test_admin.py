"""The read-only admin over teguh tasks, with its retry and cancel actions, through real requests."""

from __future__ import annotations

import html as html_module

import pytest
from django.contrib.auth.models import User
from django.test import Client

from teguh.contrib.django import get_app

from .testapp.tasks import process_note

CHANGELIST = "/admin/teguh/task/"


@pytest.fixture
def admin_client(django_db: str) -> Client:
    User.objects.create_superuser("admin", "admin@example.com", "secret")
    client = Client()
    assert client.login(username="admin", password="secret")
    return client


def test_changelist_and_detail_show_tasks(admin_client: Client) -> None:
    spawned = process_note.spawn({"note_id": 42})
    page = admin_client.get(CHANGELIST)
    assert page.status_code == 200
    html = page.content.decode()
    assert spawned.task_id in html and "process-note" in html and "pending" in html

    detail = admin_client.get(f"{CHANGELIST}{spawned.task_id}/change/")
    assert detail.status_code == 200
    assert '"note_id": 42' in html_module.unescape(detail.content.decode())
    # read-only: no add page, and a POST to the detail page changes nothing
    assert admin_client.get(f"{CHANGELIST}add/").status_code == 403
    filtered = admin_client.get(CHANGELIST, {"state__exact": "completed"})
    assert spawned.task_id not in filtered.content.decode()


def _action(client: Client, action: str, *task_ids: str) -> str:
    response = client.post(
        CHANGELIST, {"action": action, "_selected_action": list(task_ids), "index": "0"}, follow=True
    )
    assert response.status_code == 200
    return response.content.decode()


def test_cancel_then_retry_actions(admin_client: Client) -> None:
    first = process_note.spawn({"note_id": 1})
    second = process_note.spawn({"note_id": 2})
    client = get_app().client

    html = _action(admin_client, "cancel_tasks", first.task_id)
    assert "1 task(s) cancelled." in html
    assert client.get_task_result("default", first.task_id).state == "cancelled"
    assert client.get_task_result("default", second.task_id).state == "pending"

    html = _action(admin_client, "retry_tasks", first.task_id, second.task_id)
    assert "1 task(s) retried." in html
    assert f"{second.task_id}: " in html_module.unescape(html)  # the refusal of the pending one, reported
    assert client.get_task_result("default", second.task_id).state == "pending"
    assert client.get_task_result("default", first.task_id).state == "pending"


def test_staff_without_permission_cannot_act(django_db: str) -> None:
    spawned = process_note.spawn({"note_id": 1})
    user = User.objects.create_user("viewer", password="secret", is_staff=True)
    from django.contrib.auth.models import Permission

    user.user_permissions.add(Permission.objects.get(codename="view_task"))
    client = Client()
    assert client.login(username="viewer", password="secret")
    assert client.get(CHANGELIST).status_code == 200
    client.post(CHANGELIST, {"action": "cancel_tasks", "_selected_action": [spawned.task_id], "index": "0"})
    assert get_app().client.get_task_result("default", spawned.task_id).state == "pending"


def test_cancel_counts_only_the_tasks_it_changed(admin_client: Client) -> None:
    client = get_app().client
    done = process_note.spawn({"note_id": 1})
    pending = process_note.spawn({"note_id": 2})
    (run,) = client.claim_task("default", "w", qty=1)
    assert run.task_id == done.task_id  # claimed in spawn order
    client.complete_run("default", run.run_id, {"ok": True})

    html = html_module.unescape(_action(admin_client, "cancel_tasks", done.task_id, pending.task_id))
    assert "1 task(s) cancelled; 1 already finished (left as they were)." in html
    assert client.get_task_result("default", done.task_id).state == "completed"
    assert client.get_task_result("default", pending.task_id).state == "cancelled"

    html = html_module.unescape(_action(admin_client, "cancel_tasks", done.task_id))
    assert "task(s) cancelled" not in html and "1 already finished (left as they were)." in html


def test_every_queue_is_listed_with_a_queue_filter(admin_client: Client) -> None:
    client = get_app().client
    mine = process_note.spawn({"note_id": 7})  # queue "default"
    other = get_app().spawn_task("echo", {"hello": 1})  # queue "other"
    html = admin_client.get(CHANGELIST).content.decode()
    assert mine.task_id in html and other.task_id in html
    assert "?queue=other" in html and "?queue=default" in html  # the filter's choices

    only_other = admin_client.get(CHANGELIST, {"queue": "other"}).content.decode()
    assert other.task_id in only_other and mine.task_id not in only_other
    detail = admin_client.get(f"{CHANGELIST}{other.task_id}/change/")
    assert detail.status_code == 200 and "other" in detail.content.decode()

    # actions reach each task in its own queue
    html = html_module.unescape(_action(admin_client, "cancel_tasks", mine.task_id, other.task_id))
    assert "2 task(s) cancelled." in html
    assert client.get_task_result("other", other.task_id).state == "cancelled"
    assert "2 task(s) retried." in _action(admin_client, "retry_tasks", mine.task_id, other.task_id)
    assert client.get_task_result("other", other.task_id).state == "pending"
