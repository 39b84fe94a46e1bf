"""The dashboard in a real headless browser (Debian's chromium driven by Playwright).

Each page is loaded, the filters used, every action run through its button,
and a live update watched: a task's row changes state without a reload
while a worker thread completes it. Skipped, saying why, only where
chromium (or Playwright) is not installed: .ci/run installs chromium.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from _support.polling import eventually

from teguh.app import App
from teguh.client import Client
from teguh.testing import WorkerThread

from .conftest import TOKEN, Q

CHROMIUM = os.environ.get("TEGUH_TEST_CHROMIUM", "/usr/bin/chromium")

if not os.path.exists(CHROMIUM):
    pytest.skip(
        f"no chromium at {CHROMIUM} (apt-get install chromium; .ci/run does)", allow_module_level=True
    )
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is in the test extra")

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context()
    tab = context.new_page()
    tab.set_default_timeout(15_000)
    tab.on("dialog", lambda dialog: dialog.accept())  # the confirm() of pause and cancel
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        yield tab
    finally:
        context.close()
    assert not errors, errors


def failed_task(app: App, name: str = "boom", **fail: Any) -> str:
    spawned = app.client.spawn_task(Q, name, {"n": 1}, max_attempts=1)
    (run,) = app.client.claim_task(Q, "test-worker")
    app.client.fail_run(
        Q, run.run_id, fail or {"type": "KeyError", "message": "'sku'", "traceback": "Traceback..."}
    )
    return spawned.task_id


def watched(app: App) -> bool:
    return bool(
        app.client._run(
            "watched",
            lambda cur: (
                cur.execute("select count(*) from teguh.watched_queues where watched_until > now()"),
                cur.fetchone()[0],
            )[1],
        )
    )


def login(page: Any, base: str) -> None:
    page.goto(base + "/login")
    page.fill("input[name=token]", TOKEN)
    page.click("form.login button")
    page.wait_for_selector("#flash")


def test_read_only_dashboard_says_so_and_offers_no_actions(app: App, serve_dashboard, page: Any) -> None:
    server = serve_dashboard()
    task_id = failed_task(app)
    page.goto(server.url + "/")
    assert "read-only" in page.inner_text("#read-only")
    assert "TEGUH_DASHBOARD_TOKEN" in page.inner_text("#read-only")
    assert page.locator("form[action$='/pause']").count() == 0
    page.goto(f"{server.url}/queues/{Q}/tasks/{task_id}")
    assert page.locator("form[action$='/retry']").count() == 0
    assert "KeyError" in page.inner_text("#failure")


def test_actions_through_their_buttons(app: App, serve_dashboard, page: Any) -> None:
    server = serve_dashboard(token=TOKEN)
    login(page, server.url)
    page.goto(server.url + "/")
    page.click(f"#queue-{Q} form[action$='/pause'] button")
    page.wait_for_selector(f"#queue-{Q} .state-paused")
    assert app.client.get_queue_options(Q)["paused"]
    page.click(f"#queue-{Q} form[action$='/resume'] button")
    page.wait_for_selector(f"#queue-{Q} .state-active")
    assert not app.client.get_queue_options(Q)["paused"]

    task_id = failed_task(app)
    page.goto(f"{server.url}/queues/{Q}/tasks/{task_id}")
    page.click("form[action$='/retry'] button")
    page.wait_for_selector("#task .state-pending")
    assert app.client.get_task_result(Q, task_id).state == "pending"
    page.click("form[action$='/cancel'] button")
    page.wait_for_selector("#task .state-cancelled")
    assert app.client.get_task_result(Q, task_id).state == "cancelled"
    assert "cancelled" in page.inner_text("#flash")


def test_a_task_page_changes_state_live_without_a_reload(app: App, serve_dashboard, page: Any) -> None:
    gate = threading.Event()

    @app.task("report", queue=Q)
    def report(params: dict) -> dict:
        assert gate.wait(30)
        return {"rows": 3}

    server = serve_dashboard()
    spawned = report.spawn({"day": "2026-12-05"})
    page.goto(f"{server.url}/queues/{Q}/tasks/{spawned.task_id}")
    page.wait_for_selector("#task .state-pending")
    page.evaluate("window.__notReloaded = true")
    page.wait_for_selector("body[data-live-ready]")
    eventually(lambda: watched(app))
    with WorkerThread(app.worker(Q, install_signal_handlers=False)):
        gate.set()
        page.wait_for_selector("#task .state-completed")
    assert page.evaluate("window.__notReloaded") is True
    assert '"rows": 3' in page.inner_text("#task")


def test_hostile_values_do_not_run_in_the_browser(app: App, serve_dashboard, page: Any) -> None:
    hostile = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>\x1b\x07'
    task_id = failed_task(app, name=hostile, type=hostile, message=hostile * 50, traceback=hostile)
    server = serve_dashboard(token=TOKEN)
    login(page, server.url)
    page.goto(f"{server.url}/queues/{Q}/tasks/{task_id}")
    assert "<script>" in page.inner_text("h1")  # shown as text
    assert page.evaluate("window.__pwned") is None
    assert page.locator("main img").count() == 0


needs_list_tasks = pytest.mark.skipif(
    not hasattr(Client, "list_tasks"),
    reason="Client.list_tasks arrives with issue 14's reads",
)


@needs_list_tasks
def test_tasks_page_filters_and_pages_and_rows_update_live(app: App, serve_dashboard, page: Any) -> None:
    gate = threading.Event()

    @app.task("wait-here", queue=Q)
    def wait_here(params: dict) -> int:
        assert gate.wait(30)
        return 1

    for i in range(3):
        app.client.spawn_task(Q, "other", {"i": i}, available_at=None, max_attempts=1)
    failed_task(app)
    server = serve_dashboard()
    page.goto(server.url + "/")
    page.click(f"#queue-{Q} a[href='/queues/{Q}']")
    page.wait_for_selector("#tasks table")
    page.select_option("select[name=state]", "failed")
    page.click("#filters button")
    page.wait_for_selector("#tasks tr[data-state=failed]")
    assert page.locator("#tasks tr[data-task]").count() == 1
    page.goto(f"{server.url}/queues/{Q}?task_name=other&limit=20")
    assert page.locator("#tasks tr[data-task]").count() == 3

    spawned = wait_here.spawn({})
    page.goto(f"{server.url}/queues/{Q}?task_name=wait-here")
    row = f"#task-{spawned.task_id}"
    page.wait_for_selector(f"{row}[data-state=pending]")
    page.evaluate("window.__notReloaded = true")
    page.wait_for_selector("body[data-live-ready]")
    eventually(lambda: watched(app))
    with WorkerThread(app.worker(Q, install_signal_handlers=False)):
        gate.set()
        page.wait_for_selector(f"{row}[data-state=completed]")
    assert page.evaluate("window.__notReloaded") is True


@pytest.mark.skipif(
    not (hasattr(Client, "list_workers") and hasattr(Client, "list_schedules")),
    reason="workers and schedules arrive with issues 13 and 14",
)
def test_workers_and_schedules_pages_and_schedule_actions(app: App, serve_dashboard, page: Any) -> None:
    app.client.create_schedule("nightly", "build-report", cron="0 3 * * *", queue=Q)
    server = serve_dashboard(token=TOKEN)
    login(page, server.url)
    with WorkerThread(app.worker(Q, install_signal_handlers=False)) as handle:
        worker_id = handle.worker.worker_id
        eventually(lambda: any(w.worker_id == worker_id for w in app.client.list_workers()))
        page.click("header nav >> text=Workers")
        page.wait_for_selector(f"#workers >> text={worker_id}")
    page.click("header nav >> text=Schedules")
    row = "#schedules tr[data-schedule=nightly]"
    page.click(f"{row} form[action$='/schedules/pause'] button")
    page.wait_for_selector(f"{row} .state-paused")
    assert app.client.list_schedules()[0].paused
    page.click(f"{row} form[action$='/schedules/resume'] button")
    page.wait_for_selector(f"{row} .state-active")
    assert not app.client.list_schedules()[0].paused
    page.click(f"{row} form[action$='/schedules/trigger'] button")
    page.wait_for_selector(f"{row} td a.mono")  # its last task, linked
    assert "triggered" in page.inner_text("#flash")
    page.click(f"{row} td a.mono")
    page.wait_for_selector("#task .state-pending")


def test_batches_pages_list_open_and_update_live(app: App, serve_dashboard, page: Any) -> None:
    older = app.client.spawn_batch(Q, "resize", [{"n": 1}])
    batch = app.client.spawn_batch(Q, "resize", [{"n": i} for i in range(3)])
    server = serve_dashboard()
    page.goto(server.url + "/")
    page.click("nav a[href='/batches']")
    page.wait_for_selector(f"#batch-{batch.id}[data-state=running]")
    assert page.locator("#batches tr[data-state]").count() == 2
    assert page.locator(f"#batch-{older.id}").count() == 1
    page.click(f"#batch-{batch.id} a[href='/batches/{batch.id}']")
    page.wait_for_selector("#items tr[data-state=pending]")
    assert page.locator("#items tr[data-state]").count() == 3
    assert page.get_attribute("#batch-progress progress", "value") == "0"
    page.evaluate("window.__notReloaded = true")
    page.wait_for_selector("body[data-live-ready]")
    eventually(lambda: watched(app))
    runs = app.client.claim_task(Q, "test-worker", 30, 4)  # the older batch's item too
    assert len(runs) == 4
    for run in runs:
        app.client.complete_run(Q, run.run_id, {"size": run.params["n"]})
    page.wait_for_selector("#batch[data-state=completed]")
    page.wait_for_selector("#items tr[data-state=completed]")
    assert page.get_attribute("#batch-progress progress", "value") == "3"
    assert page.evaluate("window.__notReloaded") is True
    first = sorted(batch.task_ids)[0]
    page.click(f"#item-{first} a")
    page.wait_for_selector("#task .state-completed")
    assert first in page.inner_text("#task")


def test_task_page_progress_moves_live(app: App, serve_dashboard, page: Any) -> None:
    spawned = app.client.spawn_task(Q, "crunch", None)
    (run,) = app.client.claim_task(Q, "test-worker")
    app.client._report_progress(Q, spawned.task_id, run.run_id, '{"done": 1, "total": 4, "message": "one"}')
    server = serve_dashboard()
    page.goto(f"{server.url}/queues/{Q}/tasks/{spawned.task_id}")
    assert page.get_attribute("#progress progress", "value") == "1"
    page.wait_for_selector("body[data-live-ready]")
    eventually(lambda: watched(app))
    app.client._report_progress(Q, spawned.task_id, run.run_id, '{"done": 3, "total": 4, "message": "three"}')
    page.wait_for_selector("#progress progress[value='3']")
    assert "three" in page.inner_text("#progress")


def test_task_page_lists_children_and_their_links_open_them(app: App, serve_dashboard, page: Any) -> None:
    app.client.create_queue("web_side")
    parent = app.client.spawn_task(Q, "parent", None).task_id
    (run,) = app.client.claim_task(Q, "test-worker")
    (here,) = app.client._spawn_children(Q, Q, parent, run.run_id, [{"task_name": "thumbnail"}])
    (there,) = app.client._spawn_children("web_side", Q, parent, run.run_id, [{"task_name": "resize"}])
    server = serve_dashboard()
    page.goto(f"{server.url}/queues/{Q}/tasks/{parent}")
    rows = page.locator("#children tbody tr")
    assert rows.count() == 2
    assert "thumbnail" in rows.nth(0).inner_text() and "resize" in rows.nth(1).inner_text()
    rows.nth(1).locator("a").click()
    page.wait_for_url(f"**/queues/web_side/tasks/{there.task_id}")
    assert "resize" in page.inner_text("h1")
    page.click("#parent-link")
    page.wait_for_url(f"**/queues/{Q}/tasks/{parent}")
    assert page.locator("#children tbody tr").nth(0).locator("a").get_attribute("href").endswith(here.task_id)
