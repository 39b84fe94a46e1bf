"""The dashboard's WSGI application: routes, pages, actions and event streams.

A plain WSGI callable (no web framework), so that `teguh dashboard` serves it
with the standard library's server and a Flask or Django project mounts it
under a prefix (`SCRIPT_NAME`) like any WSGI app. Pages are Jinja2 templates
with autoescaping on; scripts and styles are static files, and the Content
Security Policy allows no inline script, so a value that slipped past
escaping still could not run.

Rules every route keeps: GET never changes anything; actions are POSTs that
pass `_auth.Guard` (allowed to act, same site, CSRF token); a bad queue name
or task id is a 404, not an error page with a traceback.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlencode

import jinja2
from markupsafe import Markup

from .. import _validate
from ..batches import BATCH_STATES
from ..errors import TeguhError
from ._auth import AUTH_COOKIE, CSRF_COOKIE, CSRF_FIELD, TOKEN_ENV, Authorize, Guard, cookie_header, cookies
from ._data import STATES, Reader, age, jsonable, plain, to_json
from ._live import LiveHub

logger = logging.getLogger("teguh.dashboard")

HERE = Path(__file__).resolve().parent
FLASH_COOKIE = "teguh_dashboard_flash"
MAX_FORM_BYTES = 64 * 1024
PAGE_SIZES = (20, 50, 100, 200)
KEEPALIVE_SECONDS = 15.0
"""An idle event stream sends a comment this often: proxies keep it open, and a closed tab is noticed."""
CHILDREN_SHOWN = 100
"""How many child tasks a task page lists (oldest first; `teguh task show` lists as many)."""

TERMINAL = frozenset({"completed", "failed", "cancelled"})

SECURITY_HEADERS = [
    (
        "Content-Security-Policy",
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    ),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "same-origin"),
    ("Cache-Control", "no-store"),
]

STATIC_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8"}

StartResponse = Callable[..., Any]


class _Response:
    def __init__(
        self,
        body: bytes | Iterable[bytes] = b"",
        status: str = "200 OK",
        content_type: str = "text/html; charset=utf-8",
        headers: list[tuple[str, str]] | None = None,
    ) -> None:
        self.body = body
        self.status = status
        self.headers = [("Content-Type", content_type), *SECURITY_HEADERS, *(headers or [])]


class _NotFound(Exception):
    pass


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")


def _clean(value: Any) -> str:
    """A name or message for display: control characters shown as escapes, never sent raw."""
    text = "" if value is None else str(value)
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 256 else "\\u2028", text)


def _short(value: Any, limit: int = 120) -> str:
    text = _clean(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _timestamp(value: Any) -> str:
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(timezone.utc)
        return value.strftime("%Y-%m-%d %H:%M:%S UTC")
    return "" if value is None else _clean(value)


def _json_block(value: Any) -> Markup:
    text, cut = to_json(plain(value))
    html = Markup("<pre class='json'>{}</pre>").format(_clean(text))
    if cut:
        html += Markup("<p class='note'>Cut at {} characters.</p>").format(len(text))
    return html


def _compact(value: Any, limit: int = 100) -> str:
    """A value as one line of JSON, cut at `limit` characters (a cell of a table)."""
    try:
        text = json.dumps(plain(value), ensure_ascii=False, sort_keys=True, default=str)
    except (TypeError, ValueError):
        text = repr(value)
    return _short(text, limit)


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(HERE / "templates")),
        autoescape=True,
        undefined=jinja2.ChainableUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        clean=_clean,
        short=_short,
        compact=_compact,
        ts=_timestamp,
        age=age,
        json_block=_json_block,
        quote=quote,
    )
    env.globals.update(STATES=STATES, is_mapping=lambda v: isinstance(v, Mapping))
    return env


class Dashboard:
    """The dashboard as a WSGI callable; see `make_app`."""

    def __init__(
        self,
        client: Any,
        *,
        token: str | None = None,
        authorize: Authorize | None = None,
        title: str = "teguh",
        live: bool = True,
    ) -> None:
        self.client = client
        self.guard = Guard(token, authorize)
        self.reader = Reader(client)
        self.title = title
        self.hub = LiveHub(client) if live else None
        self._env = _environment()
        self._routes: list[tuple[str, re.Pattern[str], Callable[..., _Response]]] = [
            ("GET", re.compile(r"/"), self.queues_page),
            ("GET", re.compile(r"/queues/(?P<queue>[^/]+)"), self.tasks_page),
            ("GET", re.compile(r"/queues/(?P<queue>[^/]+)/tasks/(?P<task_id>[^/]+)"), self.task_page),
            ("GET", re.compile(r"/workers"), self.workers_page),
            ("GET", re.compile(r"/schedules"), self.schedules_page),
            ("GET", re.compile(r"/batches"), self.batches_page),
            ("GET", re.compile(r"/batches/(?P<batch_id>[^/]+)"), self.batch_page),
            ("GET", re.compile(r"/login"), self.login_page),
            ("GET", re.compile(r"/events"), self.events),
            ("GET", re.compile(r"/api/queues/(?P<queue>[^/]+)/tasks/(?P<task_id>[^/]+)"), self.task_json),
            (
                "GET",
                re.compile(r"/api/queues/(?P<queue>[^/]+)/tasks/(?P<task_id>[^/]+)/events"),
                self.task_events,
            ),
            ("GET", re.compile(r"/static/(?P<name>[a-z0-9_-]+\.(?:css|js))"), self.static),
            ("POST", re.compile(r"/login"), self.login),
            ("POST", re.compile(r"/logout"), self.logout),
            ("POST", re.compile(r"/queues/(?P<queue>[^/]+)/(?P<action>pause|resume)"), self.queue_action),
            (
                "POST",
                re.compile(r"/queues/(?P<queue>[^/]+)/tasks/(?P<task_id>[^/]+)/(?P<action>retry|cancel)"),
                self.task_action,
            ),
            ("POST", re.compile(r"/schedules/(?P<action>pause|resume|trigger)"), self.schedule_action),
        ]

    def close(self) -> None:
        """Stop the live-update thread and end open event streams (the client stays open)."""
        if self.hub is not None:
            self.hub.close()

    # -- WSGI ---------------------------------------------------------------------

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO") or "/"
        method = environ.get("REQUEST_METHOD", "GET").upper()
        try:
            response = self._dispatch(environ, method, path)
        except _NotFound:
            response = self._message(
                environ, "404 Not Found", "Not found", "There is nothing at this address."
            )
        except Exception:
            logger.exception("dashboard error on %s %s", method, _clean(path)[:200])
            response = self._message(
                environ, "500 Internal Server Error", "Error", "The dashboard failed; its log says why."
            )
        start_response(response.status, response.headers)
        body = response.body
        if method == "HEAD":  # headers only: an event stream must not start for a HEAD
            close = getattr(body, "close", None)
            if close is not None:
                close()
            return []
        return [body] if isinstance(body, bytes) else body

    def _dispatch(self, environ: dict[str, Any], method: str, path: str) -> _Response:
        allowed = []
        for route_method, pattern, handler in self._routes:
            match = pattern.fullmatch(path)
            if match is None:
                continue
            if route_method == method or (method == "HEAD" and route_method == "GET"):
                args = {k: unquote(v) for k, v in match.groupdict().items()}
                if method == "POST":
                    return self._post(environ, handler, args)
                return handler(environ, **args)
            allowed.append(route_method)
        if allowed:
            return self._message(
                environ,
                "405 Method Not Allowed",
                "Method not allowed",
                "Actions are POST forms; nothing changes on GET.",
                headers=[("Allow", ", ".join(sorted(set(allowed))))],
            )
        raise _NotFound

    # -- helpers ------------------------------------------------------------------

    @staticmethod
    def _prefix(environ: Mapping[str, Any]) -> str:
        return (environ.get("SCRIPT_NAME") or "").rstrip("/")

    @staticmethod
    def _query(environ: Mapping[str, Any]) -> dict[str, list[str]]:
        return parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=False)

    @staticmethod
    def _form(environ: Mapping[str, Any]) -> dict[str, str]:
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if length <= 0 or length > MAX_FORM_BYTES:
            return {}
        raw = environ["wsgi.input"].read(length).decode("utf-8", "replace")
        return {k: v[0] for k, v in parse_qs(raw).items()}

    @staticmethod
    def _queue(queue: str) -> str:
        try:
            return _validate.queue_name(queue)
        except TeguhError:
            raise _NotFound from None

    @staticmethod
    def _task_id(task_id: str) -> str:
        try:
            return _validate.task_uuid(task_id, "task_id")
        except TeguhError:
            raise _NotFound from None

    def _render(
        self,
        environ: dict[str, Any],
        template: str,
        status: str = "200 OK",
        headers: list[tuple[str, str]] | None = None,
        live_queues: Iterable[str] | None = (),
        **context: Any,
    ) -> _Response:
        prefix = self._prefix(environ)
        jar = cookies(environ)
        extra = list(headers or [])
        csrf = self.guard.csrf_cookie(environ)
        if csrf is None:
            csrf = self.guard.new_csrf()
            extra.append(("Set-Cookie", cookie_header(CSRF_COOKIE, csrf, prefix or "/")))
        flash = unquote(jar.get(FLASH_COOKIE, ""))[:500] if FLASH_COOKIE in jar else ""
        if flash:
            extra.append(("Set-Cookie", cookie_header(FLASH_COOKIE, "", prefix or "/", max_age=0)))
        events = None
        if self.hub is not None and live_queues is not None:
            names = sorted(set(live_queues))
            events = f"{prefix}/events" + (("?" + urlencode([("queue", q) for q in names])) if names else "")
        html = self._env.get_template(template).render(
            prefix=prefix,
            title=self.title,
            csrf_field=CSRF_FIELD,
            csrf=csrf,
            may_act=self.guard.may_act(environ),
            actions_possible=self.guard.actions_possible,
            token_login=self.guard.token is not None,
            authorize_mode=self.guard.authorize is not None,
            token_env=TOKEN_ENV,
            flash=flash,
            events=events,
            here=prefix
            + (environ.get("PATH_INFO") or "/")
            + (("?" + environ["QUERY_STRING"]) if environ.get("QUERY_STRING") else ""),
            has_schedules=self.reader.has("list_schedules"),
            has_batches=self.reader.has("get_batch"),
            has_workers=self.reader.has("list_workers"),
            **context,
        )
        return _Response(html.encode("utf-8"), status, headers=extra)

    def _message(
        self,
        environ: dict[str, Any],
        status: str,
        heading: str,
        text: str,
        headers: list[tuple[str, str]] | None = None,
    ) -> _Response:
        return self._render(
            environ, "message.html", status, headers, live_queues=None, heading=heading, text=text
        )

    def _redirect(self, environ: Mapping[str, Any], target: str, flash: str | None = None) -> _Response:
        prefix = self._prefix(environ)
        if not target.startswith(prefix + "/") or target.startswith("//") or "\\" in target:
            target = prefix + "/"
        headers = [("Location", target)]
        if flash:
            headers.append(("Set-Cookie", cookie_header(FLASH_COOKIE, quote(flash[:300]), prefix or "/")))
        return _Response(b"", "303 See Other", headers=headers)

    # -- pages --------------------------------------------------------------------

    def queues_page(self, environ: dict[str, Any]) -> _Response:
        queues = self.reader.queues()
        return self._render(
            environ,
            "queues.html",
            queues=queues,
            has_stats=self.reader.has("queue_stats"),
            live_queues=[q["name"] for q in queues],
        )

    def tasks_page(self, environ: dict[str, Any], queue: str) -> _Response:
        queue = self._queue(queue)
        if queue not in self.client.list_queues():
            raise _NotFound
        query = self._query(environ)
        state = (query.get("state") or [""])[0] or None
        if state is not None and state not in STATES:
            state = None
        task_name = (query.get("task_name") or [""])[0].strip() or None
        after = (query.get("after") or [""])[0] or None
        if after is not None:
            after = self._task_id(after)
        try:
            limit = int((query.get("limit") or ["50"])[0])
        except ValueError:
            limit = 50
        limit = limit if limit in PAGE_SIZES else 50
        options = self.client.get_queue_options(queue)
        tasks: list[dict[str, Any]] = []
        error = None
        if self.reader.has("list_tasks"):
            try:
                tasks = self.reader.tasks(queue, state=state, task_name=task_name, limit=limit, after=after)
            except TeguhError as exc:
                error = str(exc)
        filters = [(k, v) for k, v in (("state", state), ("task_name", task_name)) if v]
        if limit != 50:
            filters.append(("limit", str(limit)))
        next_link = None
        if len(tasks) >= limit and tasks:
            next_link = "?" + urlencode([*filters, ("after", str(tasks[-1].get("task_id")))])
        return self._render(
            environ,
            "tasks.html",
            queue=queue,
            paused=bool(options.get("paused")),
            tasks=tasks,
            state=state,
            task_name=task_name,
            limit=limit,
            page_sizes=PAGE_SIZES,
            after=after,
            next_link=next_link,
            first_link="?" + urlencode(filters) if after else None,
            has_list=self.reader.has("list_tasks"),
            error=error,
            live_queues=[queue],
        )

    def task_page(self, environ: dict[str, Any], queue: str, task_id: str) -> _Response:
        queue, task_id = self._queue(queue), self._task_id(task_id)
        task = self.reader.task(queue, task_id)
        if task is None:
            raise _NotFound
        children = task.get("children") if isinstance(task.get("children"), list) else []
        if not children and self.reader.has("list_children"):
            children = self.reader.children(queue, task_id, CHILDREN_SHOWN)
        if task.get("parent_task_id") and not task.get("parent_queue"):
            task["parent_queue"] = self.reader.parent_queue(queue, task_id) or queue
        return self._render(
            environ,
            "task.html",
            queue=queue,
            task=task,
            children=children,
            children_shown=CHILDREN_SHOWN,
            live_queues=[queue],
        )

    def workers_page(self, environ: dict[str, Any]) -> _Response:
        if not self.reader.has("list_workers"):
            raise _NotFound
        return self._render(environ, "workers.html", workers=self.reader.workers(), live_queues=None)

    def schedules_page(self, environ: dict[str, Any]) -> _Response:
        if not self.reader.has("list_schedules"):
            raise _NotFound
        schedules = self.reader.schedules()
        queues = {str(s.get("queue")) for s in schedules if s.get("queue")}
        return self._render(environ, "schedules.html", schedules=schedules, live_queues=sorted(queues))

    def _page_args(
        self, environ: dict[str, Any], states: Iterable[str]
    ) -> tuple[str | None, str | None, int]:
        """(state, after, limit) of a paged list: an unknown state is ignored, a bad `after` is a 404."""
        query = self._query(environ)
        state = (query.get("state") or [""])[0] or None
        if state is not None and state not in states:
            state = None
        after = (query.get("after") or [""])[0] or None
        if after is not None:
            after = self._task_id(after)
        try:
            limit = int((query.get("limit") or ["50"])[0])
        except ValueError:
            limit = 50
        return state, after, limit if limit in PAGE_SIZES else 50

    def batches_page(self, environ: dict[str, Any]) -> _Response:
        """Batches newest first (counts, state, a progress bar), by queue and state, keyset-paged."""
        if not self.reader.has("get_batch"):
            raise _NotFound
        query = self._query(environ)
        batch_id = (query.get("id") or [""])[0].strip()
        if batch_id:  # the "open by id" form
            return self._redirect(environ, f"{self._prefix(environ)}/batches/{quote(batch_id, safe='')}")
        state, after, limit = self._page_args(environ, BATCH_STATES)
        queue = (query.get("queue") or [""])[0].strip() or None
        if queue is not None:
            queue = self._queue(queue)
        has_list = self.reader.has("list_batches")
        batches: list[dict[str, Any]] = []
        error = None
        if has_list:
            try:
                batches = self.reader.batches(queue, state=state, limit=limit, after=after)
            except TeguhError as exc:
                error = str(exc)
        filters = [(k, v) for k, v in (("queue", queue), ("state", state)) if v]
        if limit != 50:
            filters.append(("limit", str(limit)))
        next_link = None
        if batches and len(batches) >= limit:
            next_link = "?" + urlencode([*filters, ("after", str(batches[-1].get("id")))])
        return self._render(
            environ,
            "batches.html",
            batches=batches,
            queue=queue,
            state=state,
            limit=limit,
            page_sizes=PAGE_SIZES,
            batch_states=BATCH_STATES,
            next_link=next_link,
            first_link="?" + urlencode(filters) if after else None,
            has_list=has_list,
            error=error,
            live_queues=sorted({str(b.get("queue")) for b in batches if b.get("queue")}),
        )

    def batch_page(self, environ: dict[str, Any], batch_id: str) -> _Response:
        """One batch: its counts and a page of its items (by state, keyset-paged), linking to tasks."""
        if not self.reader.has("get_batch"):
            raise _NotFound
        batch_id = self._task_id(batch_id)
        batch = self.reader.batch(batch_id)
        if batch is None:
            raise _NotFound
        state, after, limit = self._page_args(environ, STATES)
        items: list[dict[str, Any]] = []
        error = None
        has_items = self.reader.has("batch_results")
        if has_items:
            try:
                items = self.reader.batch_items(batch_id, state=state, limit=limit, after=after)
            except TeguhError as exc:
                error = str(exc)
        filters = [("state", state)] if state else []
        if limit != 50:
            filters.append(("limit", str(limit)))
        next_link = None
        if items and len(items) >= limit:
            next_link = "?" + urlencode([*filters, ("after", str(items[-1].get("task_id")))])
        queue = str(batch.get("queue") or "")
        return self._render(
            environ,
            "batch.html",
            batch=batch,
            queue=queue,
            items=items,
            state=state,
            limit=limit,
            page_sizes=PAGE_SIZES,
            next_link=next_link,
            first_link="?" + urlencode(filters) if after else None,
            has_items=has_items,
            error=error,
            live_queues=[queue] if queue else [],
        )

    def login_page(self, environ: dict[str, Any]) -> _Response:
        nxt = (self._query(environ).get("next") or [""])[0]
        return self._render(environ, "login.html", next=nxt, live_queues=None)

    def static(self, environ: dict[str, Any], name: str) -> _Response:
        path = HERE / "static" / name
        if not path.is_file():
            raise _NotFound
        return _Response(path.read_bytes(), content_type=STATIC_TYPES[path.suffix])

    # -- JSON and event streams -----------------------------------------------------

    def task_json(self, environ: dict[str, Any], queue: str, task_id: str) -> _Response:
        queue, task_id = self._queue(queue), self._task_id(task_id)
        task = self.reader.task(queue, task_id)
        if task is None:
            raise _NotFound
        return _Response(json.dumps(jsonable(task)).encode(), content_type="application/json")

    def _stream(self, body: Iterator[bytes]) -> _Response:
        return _Response(
            body,
            content_type="text/event-stream; charset=utf-8",
            headers=[("X-Accel-Buffering", "no")],
        )

    def events(self, environ: dict[str, Any]) -> _Response:
        """The pages' stream: `change` events naming the queues whose tasks changed."""
        if self.hub is None:
            raise _NotFound
        names = self._query(environ).get("queue") or []
        queues = [self._queue(q) for q in names] or None
        hub = self.hub

        def body() -> Iterator[bytes]:
            sub = hub.subscribe(queues)
            try:
                yield b"retry: 2000\n: live\n\n"
                while True:
                    change = sub.get(KEEPALIVE_SECONDS)
                    if change is None:
                        if sub.closed:
                            return
                        yield b": ping\n\n"
                        continue
                    data = {"queues": sorted(change.queues), "resync": change.resync}
                    yield f"event: change\ndata: {json.dumps(data)}\n\n".encode()
            finally:
                hub.unsubscribe(sub)

        return self._stream(body())

    def task_events(self, environ: dict[str, Any], queue: str, task_id: str) -> _Response:
        """One task's state and progress as `task` events, ending after its terminal state.

        For users' own pages (a progress bar without polling): each event's
        data is JSON with task_id, queue, state, attempts, progress, result
        and failure (the last two once terminal).
        """
        if self.hub is None:
            raise _NotFound
        queue, task_id = self._queue(queue), self._task_id(task_id)
        if self.reader.task(queue, task_id) is None:
            raise _NotFound
        hub = self.hub

        def snapshot() -> dict[str, Any] | None:
            task = self.reader.task(queue, task_id)
            if task is None:
                return None
            done = task.get("state") in TERMINAL
            return jsonable(
                {
                    "task_id": task_id,
                    "queue": queue,
                    "state": task.get("state"),
                    "attempts": task.get("attempts"),
                    "progress": task.get("progress"),
                    "result": task.get("result") if done else None,
                    "failure": task.get("failure") if done else None,
                }
            )

        def body() -> Iterator[bytes]:
            sub = hub.subscribe([queue])
            try:
                yield b"retry: 2000\n\n"
                last = None
                while True:
                    current = snapshot()
                    if current is None:
                        yield b"event: gone\ndata: {}\n\n"
                        return
                    if current != last:
                        yield f"event: task\ndata: {json.dumps(current)}\n\n".encode()
                        last = current
                    if current["state"] in TERMINAL:
                        return
                    while True:
                        change = sub.get(KEEPALIVE_SECONDS)
                        if change is not None:
                            break
                        if sub.closed:
                            return
                        yield b": ping\n\n"
            finally:
                hub.unsubscribe(sub)

        return self._stream(body())

    # -- actions ------------------------------------------------------------------

    def _post(
        self, environ: dict[str, Any], handler: Callable[..., _Response], args: dict[str, str]
    ) -> _Response:
        form = self._form(environ)
        if not self.guard.csrf_ok(environ, form):
            return self._message(
                environ,
                "403 Forbidden",
                "Refused",
                "This form is stale or came from another site (CSRF check). Reload the page and try again.",
            )
        if handler not in (self.login, self.logout) and not self.guard.may_act(environ):
            if not self.guard.actions_possible:
                text = (
                    f"The dashboard is read-only: set {TOKEN_ENV} (or make_app(token=...)) to enable actions."
                )
            else:
                text = "Log in with the dashboard token to run actions."
            return self._message(environ, "403 Forbidden", "Read-only", text)
        return handler(environ, form, **args)

    def login(self, environ: dict[str, Any], form: dict[str, str]) -> _Response:
        prefix = self._prefix(environ)
        if not self.guard.token_matches(form.get("token", "")):
            return self._render(
                environ,
                "login.html",
                "403 Forbidden",
                next=form.get("next", ""),
                error=True,
                live_queues=None,
            )
        cookie = cookie_header(AUTH_COOKIE, self.guard.auth_value(), prefix or "/")
        response = self._redirect(
            environ, form.get("next") or prefix + "/", "Logged in: actions are enabled."
        )
        response.headers.append(("Set-Cookie", cookie))
        return response

    def logout(self, environ: dict[str, Any], form: dict[str, str]) -> _Response:
        prefix = self._prefix(environ)
        response = self._redirect(environ, prefix + "/", "Logged out.")
        response.headers.append(("Set-Cookie", cookie_header(AUTH_COOKIE, "", prefix or "/", max_age=0)))
        return response

    def _act(
        self, environ: dict[str, Any], form: dict[str, str], done: str, call: Callable[[], Any]
    ) -> _Response:
        try:
            call()
        except TeguhError as exc:
            message = f"Failed: {_clean(exc)[:250]}"
        else:
            message = done
            logger.info("dashboard: %s", _clean(done))
        return self._redirect(environ, form.get("next", ""), message)

    def queue_action(
        self, environ: dict[str, Any], form: dict[str, str], queue: str, action: str
    ) -> _Response:
        queue = self._queue(queue)
        call = self.client.pause_queue if action == "pause" else self.client.resume_queue
        return self._act(environ, form, f"Queue {queue} {action}d.", lambda: call(queue))

    def task_action(
        self, environ: dict[str, Any], form: dict[str, str], queue: str, task_id: str, action: str
    ) -> _Response:
        queue, task_id = self._queue(queue), self._task_id(task_id)
        if action == "retry":
            return self._act(
                environ, form, f"Task {task_id} retried.", lambda: self.client.retry_task(queue, task_id)
            )
        return self._act(
            environ, form, f"Task {task_id} cancelled.", lambda: self.client.cancel_task(queue, task_id)
        )

    def schedule_action(self, environ: dict[str, Any], form: dict[str, str], action: str) -> _Response:
        name = form.get("name", "")
        call = getattr(self.client, f"{action}_schedule", None)
        if call is None or not name:
            raise _NotFound
        verb = {"pause": "paused", "resume": "resumed", "trigger": "triggered"}[action]
        return self._act(environ, form, f"Schedule {_short(name, 80)} {verb}.", lambda: call(name))


def make_app(
    client: Any,
    *,
    token: str | None = None,
    authorize: Authorize | None = None,
    title: str = "teguh",
    live: bool = True,
) -> Dashboard:
    """The dashboard as a WSGI application over `client`.

    Args:
        client: the `teguh.Client` whose database the dashboard shows.
        token: the secret that enables actions once typed into the login
            form; default `TEGUH_DASHBOARD_TOKEN`. Without a token (and
            without `authorize`) the dashboard is read-only: every action
            is refused with 403.
        authorize: when mounted in a host app, `authorize(environ) -> bool`
            says whether the request may run actions (e.g. its user is staff).
        title: shown in the header and the page titles.
        live: push updates to open pages over Server-Sent Events (one LISTEN
            connection for the whole app, opened while a page is open).

    Mount it under a prefix (Flask's `DispatcherMiddleware`, Django's WSGI
    file) or serve it with `teguh.dashboard.serve`; call `close()` to end the
    live updates. See docs/dashboard.md.
    """
    if token is None:
        token = os.environ.get(TOKEN_ENV) or None
    return Dashboard(client, token=token, authorize=authorize, title=title, live=live)


__all__ = ["Dashboard", "make_app"]
