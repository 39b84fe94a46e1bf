"""The task page lists the task's children, on any queue, each linked to its own page (HTTP, no browser)."""

from __future__ import annotations

import re

from teguh.app import App

from .conftest import Browserless, Q

SIDE = "web_side"
ODD_NAME = "<b>odd</b>&\"name'"


def parent_with_children(app: App, names: list[tuple[str, str]]) -> tuple[str, list[str]]:
    """(parent id, child ids): a running parent in Q that spawned one child per (queue, name)."""
    app.client.create_queue(SIDE)
    parent = app.client.spawn_task(Q, "parent", None).task_id
    (run,) = app.client.claim_task(Q, "w1")
    ids = []
    for queue, name in names:
        (child,) = app.client._spawn_children(queue, Q, parent, run.run_id, [{"task_name": name}])
        ids.append(child.task_id)
    return parent, ids


def test_task_page_lists_children_of_every_queue_with_links(app: App, serve_dashboard) -> None:
    parent, (here, there) = parent_with_children(app, [(Q, ODD_NAME), (SIDE, "resize")])
    web = Browserless(serve_dashboard().url)
    page = web.get(f"/queues/{Q}/tasks/{parent}")
    assert page.status == 200
    section = page.body.split('<section id="children">')[1].split("</section>")[0]
    links = re.findall(r'<a class="mono" href="([^"]+)">', section)
    assert links == [f"/queues/{Q}/tasks/{here}", f"/queues/{SIDE}/tasks/{there}"]
    assert "&lt;b&gt;odd&lt;/b&gt;&amp;" in section and "<b>odd" not in page.body  # escaped
    assert "resize" in section and "pending" in section
    assert 'id="children-more"' not in section
    for link in links:
        child = web.get(link)
        assert child.status == 200 and f'id="parent-link" href="/queues/{Q}/tasks/{parent}"' in child.body
    assert '<section id="children">' not in web.get(links[1]).body  # a leaf lists none


def test_a_page_of_children_says_when_more_exist(app: App, serve_dashboard, monkeypatch) -> None:
    from teguh.dashboard import _app

    monkeypatch.setattr(_app, "CHILDREN_SHOWN", 2)
    parent, ids = parent_with_children(app, [(Q, "a"), (SIDE, "b"), (Q, "c")])
    body = Browserless(serve_dashboard().url).get(f"/queues/{Q}/tasks/{parent}").body
    section = body.split('<section id="children">')[1].split("</section>")[0]
    assert [m for m in ids if f"/tasks/{m}" in section] == ids[:2]
    assert "The first 2 children." in section
