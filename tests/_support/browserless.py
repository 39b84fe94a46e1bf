"""A cookie-keeping HTTP client for tests of the dashboard over a real socket (no browser)."""

from __future__ import annotations

import http.client
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import urlencode, urlsplit

TOKEN = "s3cret-dashboard-token"


class Response:
    def __init__(self, status: int, headers: list[tuple[str, str]], body: str) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None


class Browserless:
    """Real HTTP requests to a dashboard, keeping its cookies like a browser."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.cookies: dict[str, str] = {}

    def request(
        self,
        method: str,
        path: str,
        form: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Response:
        parts = urlsplit(self.base)
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
        body = urlencode(form) if form is not None else None
        sent = {"Host": parts.netloc, **(headers or {})}
        if body is not None:
            sent["Content-Type"] = "application/x-www-form-urlencoded"
        if self.cookies:
            sent["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        try:
            conn.request(method, path, body=body, headers=sent)
            raw = conn.getresponse()
            text = raw.read().decode("utf-8", "replace")
            got = raw.getheaders()
        finally:
            conn.close()
        for key, value in got:
            if key.lower() == "set-cookie":
                jar: SimpleCookie = SimpleCookie()
                jar.load(value)
                for name, morsel in jar.items():
                    if morsel["max-age"] == "0":
                        self.cookies.pop(name, None)
                    else:
                        self.cookies[name] = morsel.value
        return Response(raw.status, got, text)

    def get(self, path: str, **kw: Any) -> Response:
        return self.request("GET", path, **kw)

    def post(self, path: str, form: dict[str, str] | None = None, **kw: Any) -> Response:
        return self.request("POST", path, form or {}, **kw)

    def csrf(self) -> str:
        """The CSRF token of the session (loading a page first when there is none yet)."""
        if "teguh_dashboard_csrf" not in self.cookies:
            self.get("/")
        return self.cookies["teguh_dashboard_csrf"]

    def csrf_for(self, page: str) -> str:
        """The CSRF token, loading `page` first when there is none yet."""
        if "teguh_dashboard_csrf" not in self.cookies:
            self.get(page)
        return self.cookies["teguh_dashboard_csrf"]

    def login(self, token: str = TOKEN) -> Response:
        return self.post("/login", {"csrf_token": self.csrf(), "token": token, "next": "/"})

    def act(self, path: str, **fields: str) -> Response:
        return self.post(path, {"csrf_token": self.csrf(), "next": "/", **fields})
