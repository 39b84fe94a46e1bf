"""Take the screenshots of docs/dashboard.md: a demo database, a worker, the dashboard, headless chromium.

    python docs/_screenshots.py            # writes docs/img/dashboard-*.png

Needs the test extra (Playwright, Jinja2) and Debian's chromium
(/usr/bin/chromium, or TEGUH_TEST_CHROMIUM). The database is a temporary one
on TEGUH_DSN's server, else on the embedded PostgreSQL; it is dropped at the end.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from playwright.sync_api import sync_playwright

from teguh import App
from teguh.dashboard import make_app, serve
from teguh.testing import WorkerThread, temporary_database

OUT = Path(__file__).resolve().parent / "img"
CHROMIUM = os.environ.get("TEGUH_TEST_CHROMIUM", "/usr/bin/chromium")
TOKEN = "demo-token"


def build_demo(app: App) -> dict[str, str]:
    """Queues and tasks in every state; returns ids worth a screenshot."""
    client = app.client
    for q in ("emails", "reports", "billing"):
        client.create_queue(q)
    release = threading.Event()

    @app.task("send-welcome-email", queue="emails")
    def send_email(params: dict) -> dict:
        return {"sent_to": params["to"]}

    @app.task("build-report", queue="reports", max_attempts=2, retry_strategy={"kind": "fixed", "base_seconds": 0})
    def build_report(params: dict, ctx) -> dict:
        rows = ctx.step("load rows", lambda: list(range(params["rows"])))
        total = ctx.step("sum", lambda: sum(rows))
        if params.get("region") == "apac":
            prices = {"idr": 15_000}
            return {"total": total * prices[params["currency"]]}
        return {"total": total}

    @app.task("slow-export", queue="reports")
    def slow_export(params: dict, ctx) -> str:
        ctx.report_progress(3, 8, message="exporting March")
        release.wait(60)
        return "exported"

    @app.task("make-thumbnail", queue="reports", max_attempts=1)
    def make_thumbnail(params: dict) -> dict:
        if params["image"].endswith(".tiff"):
            raise ValueError(f"unsupported format: {params['image']}")
        return {"thumbnail": params["image"].replace(".", "-small.")}

    ids: dict[str, str] = {}
    for i in range(12):
        send_email.spawn({"to": f"user{i}@example.com", "template": "welcome"})
    for region in ("emea", "amer"):
        build_report.spawn({"rows": 8, "region": region, "currency": "eur"})
    ids["failed"] = build_report.spawn(
        {"rows": 5, "region": "apac", "currency": "sgd"}, headers={"requested_by": "ops@example.com"}
    ).task_id
    client.pause_queue("billing")
    for i in range(5):
        client.spawn_task("billing", "charge-invoice", {"invoice": 1000 + i, "amount_cents": 4999})
    worker = WorkerThread(app.worker(queues=["emails", "reports"], install_signal_handlers=False, concurrency=4)).start()
    deadline = time.monotonic() + 30
    while client.get_task_result("reports", ids["failed"]).state != "failed" and time.monotonic() < deadline:
        time.sleep(0.1)
    images = [{"image": f"photo-{i}.jpg"} for i in range(9)] + [{"image": "scan-7.tiff"}]
    ids["batch"] = client.spawn_batch("reports", "make-thumbnail", images).id
    client.spawn_batch("emails", "send-welcome-email", [{"to": f"team{i}@example.com"} for i in range(4)])
    client.spawn_batch("billing", "charge-invoice", [{"invoice": 2000 + i} for i in range(6)])
    while client.get_batch(ids["batch"]).finished_at is None and time.monotonic() < deadline:
        time.sleep(0.1)
    ids["running"] = slow_export.spawn({"format": "csv"}).task_id
    app._demo_release = release  # type: ignore[attr-defined]
    app._demo_worker = worker  # type: ignore[attr-defined]
    create = getattr(client, "create_schedule", None)
    if create is not None:
        try:
            create("nightly-report", "build-report", cron="0 3 * * *", timezone="Asia/Jakarta",
                   params={"rows": 10, "region": "emea", "currency": "eur"}, queue="reports")
        except TypeError:
            pass
    return ids


def main() -> None:
    OUT.mkdir(exist_ok=True)
    with temporary_database() as dsn:
        app = App(dsn, queue="emails")
        ids = build_demo(app)
        dashboard = make_app(app.client, token=TOKEN, title="teguh · demo")
        with serve(dashboard, "127.0.0.1", 0).start() as server, sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1280, "height": 760})
            base = server.url

            def shot(path: str, name: str, full: bool = False) -> None:
                page.goto(base + path)
                page.wait_for_timeout(300)  # fonts and layout; the event stream never goes idle
                page.screenshot(path=str(OUT / f"dashboard-{name}.png"), full_page=full)
                print("wrote", OUT / f"dashboard-{name}.png")

            shot("/", "read-only")
            page.goto(base + "/login")
            page.fill("input[name=token]", TOKEN)
            page.click("form.login button")
            shot("/", "queues")
            if hasattr(app.client, "list_tasks"):
                shot("/queues/reports", "tasks")
                shot("/queues/emails?state=completed", "tasks-filtered")
            shot(f"/queues/reports/tasks/{ids['failed']}", "task", full=True)
            if hasattr(app.client, "list_workers"):
                shot("/workers", "workers")
            if hasattr(app.client, "list_schedules"):
                shot("/schedules", "schedules")
            if hasattr(app.client, "list_batches"):
                shot("/batches", "batches")
                shot(f"/batches/{ids['batch']}", "batch", full=True)
            browser.close()
        app._demo_release.set()  # type: ignore[attr-defined]
        app._demo_worker.stop()  # type: ignore[attr-defined]
        app.client.close()


if __name__ == "__main__":
    main()
