"""Who may act on the dashboard, and CSRF protection of its forms.

Reading pages needs nothing (the server binds 127.0.0.1 by default, and a
host app that mounts the dashboard puts its own login in front). Actions
(retry, cancel, pause, resume, trigger) need one of:

- the token (`TEGUH_DASHBOARD_TOKEN`, or `make_app(token=...)`), typed once
  into the login form; the server then sets an HttpOnly, SameSite=Strict
  cookie holding an HMAC of the token (never the token itself), so changing
  the token logs everybody out;
- or the host app's verdict: `make_app(authorize=callable)`, called with the
  WSGI environ, e.g. "is the logged-in user staff" (docs/dashboard.md).

Without either, every action is refused with 403 and the pages say how to
enable them. Every POST, the login form's too, carries a CSRF token checked
against a cookie (double submit: a random value in a SameSite=Strict cookie
and the same value in the form), and a cross-site Origin header is refused
as well.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable, Mapping
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import urlsplit

TOKEN_ENV = "TEGUH_DASHBOARD_TOKEN"
AUTH_COOKIE = "teguh_dashboard_auth"
CSRF_COOKIE = "teguh_dashboard_csrf"
CSRF_FIELD = "csrf_token"

Authorize = Callable[[Mapping[str, Any]], bool]


def cookies(environ: Mapping[str, Any]) -> dict[str, str]:
    """The request's cookies by name (a malformed header gives none)."""
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(environ.get("HTTP_COOKIE", ""))
    except Exception:  # http.cookies raises CookieError and others on garbage
        return {}
    return {name: morsel.value for name, morsel in jar.items()}


def cookie_header(
    name: str, value: str, path: str, *, http_only: bool = True, max_age: int | None = None
) -> str:
    """A Set-Cookie value: SameSite=Strict always, HttpOnly unless asked otherwise."""
    parts = [f"{name}={value}", f"Path={path or '/'}", "SameSite=Strict"]
    if http_only:
        parts.append("HttpOnly")
    if max_age is not None:
        parts.append(f"Max-Age={max_age}")
    return "; ".join(parts)


class Guard:
    """The dashboard's decisions: may this request act, is this POST same-site and carrying its CSRF token."""

    def __init__(self, token: str | None, authorize: Authorize | None) -> None:
        self.token = token or None
        self.authorize = authorize

    @property
    def actions_possible(self) -> bool:
        """Whether any request could ever act (a token or an authorize callable is configured)."""
        return self.token is not None or self.authorize is not None

    def auth_value(self) -> str:
        """What the login cookie holds: an HMAC of the token, so the cookie never reveals it."""
        assert self.token is not None
        return hmac.new(self.token.encode(), b"teguh-dashboard-login", hashlib.sha256).hexdigest()

    def token_matches(self, given: str) -> bool:
        """Whether a typed token is the configured one (constant time)."""
        return self.token is not None and hmac.compare_digest(given.encode(), self.token.encode())

    def logged_in(self, environ: Mapping[str, Any]) -> bool:
        """Whether the request carries the login cookie of the current token."""
        if self.token is None:
            return False
        return hmac.compare_digest(cookies(environ).get(AUTH_COOKIE, ""), self.auth_value())

    def may_act(self, environ: Mapping[str, Any]) -> bool:
        """Whether the request may run actions: the host app says so, or it logged in with the token."""
        if self.authorize is not None:
            try:
                if self.authorize(environ):
                    return True
            except Exception:  # a failing host check refuses, it does not crash the page
                return False
        return self.logged_in(environ)

    @staticmethod
    def csrf_cookie(environ: Mapping[str, Any]) -> str | None:
        """The request's CSRF cookie, when it has a well-formed one."""
        value = cookies(environ).get(CSRF_COOKIE, "")
        return value if 20 <= len(value) <= 100 and value.isalnum() else None

    @staticmethod
    def new_csrf() -> str:
        return secrets.token_hex(24)

    @staticmethod
    def same_origin(environ: Mapping[str, Any]) -> bool:
        """False when the browser says the POST comes from another site (Origin, else Referer)."""
        origin = environ.get("HTTP_ORIGIN") or environ.get("HTTP_REFERER")
        if not origin or origin == "null":
            return origin != "null"
        host = environ.get("HTTP_HOST") or environ.get("SERVER_NAME", "")
        return urlsplit(origin).netloc == host

    def csrf_ok(self, environ: Mapping[str, Any], form: Mapping[str, str]) -> bool:
        """Whether a POST is same-site and its form field matches its cookie."""
        expected = self.csrf_cookie(environ)
        given = form.get(CSRF_FIELD, "")
        return (
            expected is not None
            and hmac.compare_digest(given.encode(), expected.encode())
            and self.same_origin(environ)
        )
