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
