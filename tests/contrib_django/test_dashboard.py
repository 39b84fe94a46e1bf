"""The dashboard mounted in the Django project: staff users act, others only read (real HTTP)."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.core.wsgi import get_wsgi_application
from django.test import Client

from teguh.contrib.django import get_app

pytest.importorskip("jinja2", reason="the dashboard needs the dashboard extra (jinja2)")

from _support.browserless import Browserless

from teguh.contrib.django.dashboard import with_dashboard
from teguh.dashboard import serve

Q = "djdash"


def session_of(username: str, *, staff: bool) -> str:
    User.objects.create_user(username, password="secret", is_staff=staff)
    client = Client()
    assert client.login(username=username, password="secret")
    return client.cookies["sessionid"].value


def test_staff_act_and_others_are_refused(django_db: str) -> None:
    teguh_app = get_app()
    teguh_app.client.create_queue(Q)
    application = with_dashboard(get_wsgi_application(), prefix="/teguh")
    server = serve(application, "127.0.0.1", 0).start()
    try:
        staff = Browserless(server.url)
        staff.cookies["sessionid"] = session_of("ops", staff=True)
        viewer = Browserless(server.url)
        viewer.cookies["sessionid"] = session_of("viewer", staff=False)
        anonymous = Browserless(server.url)

        page = viewer.get("/teguh/")
        assert page.status == 200 and f'href="/teguh/queues/{Q}"' in page.body
        for who in (viewer, anonymous):
            csrf = who.csrf_for("/teguh/")
            assert who.post(f"/teguh/queues/{Q}/pause", {"csrf_token": csrf}).status == 403
        assert not teguh_app.client.get_queue_options(Q)["paused"]

        csrf = staff.csrf_for("/teguh/")
        done = staff.post(f"/teguh/queues/{Q}/pause", {"csrf_token": csrf, "next": "/teguh/"})
        assert done.status == 303 and done.header("Location") == "/teguh/"
        assert teguh_app.client.get_queue_options(Q)["paused"]
        assert anonymous.get("/admin/login/").status == 200  # the host app still answers outside the prefix
    finally:
        server.stop()
