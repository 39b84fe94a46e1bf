"""The dashboard over real HTTP: pages, 404s, the token, CSRF, no action by GET, escaping."""

from __future__ import annotations

import re

import pytest

from teguh.app import App

from .conftest import TOKEN, Browserless, Q, flash_of

HOSTILE = "<script>alert(1)</script>\"'&\x1b[31m\x07\x7f"


def failed_task(app: App, name: str = "boom", params: object = None, reason: object = None) -> str:
    """A task that failed for good, made without a worker: claim it and fail its one attempt."""
    spawned = app.client.spawn_task(Q, name, params, max_attempts=1)
    (run,) = app.client.claim_task(Q, "test-worker")
    app.client.fail_run(
        Q, run.run_id, reason or {"type": "ValueError", "message": "nope", "traceback": "Trace"}
    )
    assert app.client.get_task_result(Q, spawned.task_id).state == "failed"
    return spawned.task_id


def paused(app: App) -> bool:
    return bool(app.client.get_queue_options(Q)["paused"])


def test_pages_render_and_unknown_things_are_404(app: App, serve_dashboard) -> None:
    web = Browserless(serve_dashboard().url)
    task_id = failed_task(app)
    home = web.get("/")
    assert home.status == 200
    assert f'href="/queues/{Q}"' in home.body
    assert "Content-Security-Policy" in dict(home.headers)
    assert "script-src 'self'" in (home.header("Content-Security-Policy") or "")
    assert web.get(f"/queues/{Q}").status == 200
    page = web.get(f"/queues/{Q}/tasks/{task_id}")
    assert page.status == 200
    assert "ValueError" in page.body and "Trace" in page.body
    assert web.get("/static/dashboard.js").header("Content-Type").startswith("text/javascript")
    assert web.get("/static/dashboard.css").status == 200
    assert web.get("/login").status == 200
    for path in (
        "/queues/nope",
        "/queues/Bad-Name",
        f"/queues/{Q}/tasks/not-a-uuid",
        f"/queues/{Q}/tasks/00000000-0000-0000-0000-000000000000",
        "/static/../../setup.cfg",
        "/nothing-here",
    ):
        assert web.get(path).status == 404, path


def test_without_a_token_every_action_is_refused_and_pages_say_read_only(app: App, serve_dashboard) -> None:
    web = Browserless(serve_dashboard(token=None).url)
    task_id = failed_task(app)
    page = web.get("/")
    assert "read-only" in page.body and "TEGUH_DASHBOARD_TOKEN" in page.body
    assert "/pause" not in page.body  # no action buttons are offered
    for path in (f"/queues/{Q}/pause", f"/queues/{Q}/tasks/{task_id}/retry", "/schedules/trigger"):
        refused = web.act(path, name="x")
        assert refused.status == 403, path
        assert "TEGUH_DASHBOARD_TOKEN" in refused.body
    assert web.login().status == 403  # no token: nothing to log in with
    assert not paused(app)
    assert app.client.get_task_result(Q, task_id).state == "failed"


def test_token_login_enables_actions(app: App, serve_dashboard) -> None:
    web = Browserless(serve_dashboard(token=TOKEN).url)
    assert web.act(f"/queues/{Q}/pause").status == 403  # not logged in yet
    assert not paused(app)
    wrong = web.login("wrong")
    assert wrong.status == 403 and "Wrong token" in wrong.body
    ok = web.login()
    assert ok.status == 303
    cookie = next(v for k, v in ok.headers if k.lower() == "set-cookie" and "teguh_dashboard_auth" in v)
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and TOKEN not in cookie

    assert web.act(f"/queues/{Q}/pause").status == 303
    assert paused(app)
    done = web.act(f"/queues/{Q}/resume")
    assert done.status == 303 and done.header("Location") == "/"
    assert not paused(app)
    assert "resumed" in flash_of(web.get("/"))

    failed = failed_task(app)
    assert web.act(f"/queues/{Q}/tasks/{failed}/retry").status == 303
    assert app.client.get_task_result(Q, failed).state == "pending"
    assert web.act(f"/queues/{Q}/tasks/{failed}/cancel").status == 303
    assert app.client.get_task_result(Q, failed).state == "cancelled"
    # an engine refusal comes back as a message, not an error page
    again = web.act(f"/queues/{Q}/tasks/{failed}/cancel")
    assert again.status == 303

    assert web.post("/logout", {"csrf_token": web.csrf()}).status == 303
    assert web.act(f"/queues/{Q}/pause").status == 403
    assert not paused(app)


def test_csrf_and_cross_site_posts_are_refused(app: App, serve_dashboard) -> None:
    web = Browserless(serve_dashboard(token=TOKEN).url)
    assert web.login().status == 303
    assert web.post(f"/queues/{Q}/pause", {"next": "/"}).status == 403  # no CSRF field
    assert web.post(f"/queues/{Q}/pause", {"csrf_token": "0" * 48}).status == 403  # wrong value
    evil = {"Origin": "http://evil.example"}
    assert web.post(f"/queues/{Q}/pause", {"csrf_token": web.csrf()}, headers=evil).status == 403
    stranger = Browserless(web.base)  # logged out, another session's CSRF value
    stranger.cookies["teguh_dashboard_auth"] = web.cookies["teguh_dashboard_auth"]
    assert stranger.post(f"/queues/{Q}/pause", {"csrf_token": web.csrf()}).status == 403
    assert not paused(app)
    assert web.act(f"/queues/{Q}/pause").status == 303
    assert paused(app)


def test_get_never_acts(app: App, serve_dashboard) -> None:
    web = Browserless(serve_dashboard(token=TOKEN).url)
    web.login()
    task_id = failed_task(app)
    for path in (
        f"/queues/{Q}/pause",
        f"/queues/{Q}/tasks/{task_id}/retry",
        f"/queues/{Q}/tasks/{task_id}/cancel",
    ):
        response = web.get(path)
        assert response.status == 405, path
        assert response.header("Allow") == "POST"
    assert web.get("/logout").status == 405
    assert not paused(app)
    assert app.client.get_task_result(Q, task_id).state == "failed"


def test_a_host_apps_authorize_callable_enables_actions(app: App, serve_dashboard) -> None:
    seen = []

    def authorize(environ) -> bool:
        seen.append(environ.get("PATH_INFO"))
        return environ.get("HTTP_X_STAFF") == "yes"

    web = Browserless(serve_dashboard(authorize=authorize).url)
    assert web.act(f"/queues/{Q}/pause").status == 403
    assert not paused(app)
    assert (
        web.post(f"/queues/{Q}/pause", {"csrf_token": web.csrf()}, headers={"X-Staff": "yes"}).status == 303
    )
    assert paused(app)
    assert f"/queues/{Q}/pause" in seen


def test_redirects_stay_on_the_dashboard(app: App, serve_dashboard) -> None:
    web = Browserless(serve_dashboard(token=TOKEN).url)
    web.login()
    for target in ("https://evil.example/", "//evil.example/", "/\\evil.example"):
        response = web.post(f"/queues/{Q}/pause", {"csrf_token": web.csrf(), "next": target})
        assert response.header("Location") == "/", target


def test_hostile_values_are_escaped(app: App, serve_dashboard) -> None:
    long_text = "x" * 200_000
    reason = {"type": HOSTILE, "message": HOSTILE + long_text, "traceback": HOSTILE}
    task_id = failed_task(app, name=HOSTILE, params={HOSTILE: [HOSTILE, long_text]}, reason=reason)
    web = Browserless(serve_dashboard(token=TOKEN).url)
    web.login()
    page = web.get(f"/queues/{Q}/tasks/{task_id}")
    assert page.status == 200
    assert "<script>alert" not in page.body
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.body
    assert not re.search(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]", page.body), (
        "a raw control character reached the page"
    )
    assert "Cut at" in page.body  # the 200 kB value is cut, the page still renders
    assert len(page.body) < 200_000
    # an action's flash message quotes nothing hostile raw either
    done = web.act(f"/queues/{Q}/tasks/{task_id}/retry")
    assert done.status == 303
    assert "<script>" not in web.get("/").body


@pytest.mark.parametrize("path", ["/events", f"/api/queues/{Q}/tasks/00000000-0000-0000-0000-000000000000"])
def test_json_and_stream_endpoints_refuse_unknown_things(app: App, serve_dashboard, path: str) -> None:
    web = Browserless(serve_dashboard().url)
    if path == "/events":
        assert web.get("/events?queue=Not-A-Queue").status == 404
    else:
        assert web.get(path).status == 404
        assert web.get(path + "/events").status == 404


def test_task_json(app: App, serve_dashboard) -> None:
    web = Browserless(serve_dashboard().url)
    task_id = failed_task(app, params={"n": 1})
    import json

    body = json.loads(web.get(f"/api/queues/{Q}/tasks/{task_id}").body)
    assert body["state"] == "failed" and body["params"] == {"n": 1}


def test_queue_counts_task_lists_and_hostile_names_in_lists(app: App, serve_dashboard) -> None:
    if not hasattr(app.client, "list_tasks"):
        pytest.skip("Client.list_tasks arrives with issue 14's reads")
    failed_task(app, name=HOSTILE, params={"x": HOSTILE})
    app.client.spawn_task(Q, "plain", {}, headers={HOSTILE: HOSTILE})
    web = Browserless(serve_dashboard().url)
    home = web.get("/")
    assert re.search(r'class="num count-failed"><a href="/queues/web\?state=failed">1</a>', home.body)
    listing = web.get(f"/queues/{Q}")
    assert listing.status == 200
    assert listing.body.count('data-task="') == 2
    assert "<script>alert" not in listing.body
    assert not re.search(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]", listing.body)
    only_failed = web.get(f"/queues/{Q}?state=failed")
    assert only_failed.body.count('data-task="') == 1
    by_name = web.get(f"/queues/{Q}?task_name=plain")
    assert by_name.body.count('data-task="') == 1
    plain_id = re.search(r'data-task="([0-9a-f-]+)"', by_name.body).group(1)
    shown = web.get(f"/queues/{Q}/tasks/{plain_id}")
    assert "Headers" in shown.body and "<script>alert" not in shown.body
    # keyset paging: the smallest page is 20 rows, so 21 tasks make two pages
    for i in range(21):
        app.client.spawn_task(Q, "many", {"i": i})
    first = web.get(f"/queues/{Q}?task_name=many&limit=20")
    assert first.body.count('data-task="') == 20
    older = re.search(r'href="(\?[^"]*after=[^"]+)" id="next-page"', first.body)
    assert older, "no link to the next page"
    second = web.get(f"/queues/{Q}" + older.group(1).replace("&amp;", "&"))
    assert second.body.count('data-task="') == 1  # the oldest of the 21
    assert 'id="first-page"' in second.body


def test_workers_page_lists_a_running_worker(app: App, serve_dashboard) -> None:
    if not hasattr(app.client, "list_workers"):
        pytest.skip("Client.list_workers arrives with issue 14's reads")
    from _support.polling import eventually

    from teguh.testing import WorkerThread

    web = Browserless(serve_dashboard().url)
    assert 'id="no-workers"' in web.get("/workers").body
    with WorkerThread(app.worker(Q, install_signal_handlers=False)) as handle:
        page = eventually(
            lambda: (lambda p: p if handle.worker.worker_id in p.body else None)(web.get("/workers"))
        )
        assert page.status == 200 and f'href="/queues/{Q}"' in page.body


def test_schedules_page_and_its_actions_when_the_client_has_schedules(app: App, serve_dashboard) -> None:
    if not hasattr(app.client, "list_schedules"):
        pytest.skip("schedules arrive with issue 13")
    web = Browserless(serve_dashboard().url)
    assert 'href="/schedules"' in web.get("/").body
    app.client.create_schedule("nightly <b>report</b>", "build-report", cron="0 3 * * *", queue=Q)
    page = web.get("/schedules")
    assert page.status == 200
    assert "nightly &lt;b&gt;report&lt;/b&gt;" in page.body
    assert web.act("/schedules/pause", name="nightly <b>report</b>").status == 403  # read-only
    web = Browserless(serve_dashboard(token=TOKEN).url)
    web.login()
    name = "nightly <b>report</b>"

    def info():
        return next(s for s in app.client.list_schedules() if s.name == name)

    assert web.act("/schedules/pause", name=name).status == 303
    assert info().paused
    assert web.act("/schedules/resume", name=name).status == 303
    assert not info().paused
    assert web.act("/schedules/trigger", name=name).status == 303
    assert info().last_task_id is not None or app.client.list_tasks(Q, task_name="build-report")
    missing = web.act("/schedules/pause", name="no such schedule")
    assert missing.status == 303 and "Failed" in flash_of(web.get("/"))


def test_mounted_under_a_prefix_links_and_redirects_stay_under_it(app: App) -> None:
    from teguh.dashboard import make_app, serve

    dashboard = make_app(app.client, token=TOKEN)

    def host(environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path == "/ops" or path.startswith("/ops/"):
            environ["SCRIPT_NAME"] = "/ops"
            environ["PATH_INFO"] = path[len("/ops") :] or "/"
            return dashboard(environ, start_response)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"host app"]

    server = serve(host, "127.0.0.1", 0).start()
    try:
        web = Browserless(server.url)
        assert web.get("/").body == "host app"
        page = web.get("/ops/")
        assert f'href="/ops/queues/{Q}"' in page.body and 'src="/ops/static/dashboard.js"' in page.body
        csrf = next(v for k, v in page.headers if k.lower() == "set-cookie" and "csrf" in v)
        assert "Path=/ops" in csrf
        assert (
            web.post("/ops/login", {"csrf_token": web.csrf_for("/ops/"), "token": TOKEN, "next": "/"}).header(
                "Location"
            )
            == "/ops/"
        )
        done = web.post(
            f"/ops/queues/{Q}/pause",
            {"csrf_token": web.cookies["teguh_dashboard_csrf"], "next": "/ops/queues/web"},
        )
        assert done.status == 303 and done.header("Location") == "/ops/queues/web"
        assert app.client.get_queue_options(Q)["paused"]
    finally:
        server.stop()
        dashboard.close()
