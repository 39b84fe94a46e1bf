"""The teguh dashboard in a Django project: the project's staff users may act.

In the project's `wsgi.py`:

```python
from django.core.wsgi import get_wsgi_application
from teguh.contrib.django.dashboard import with_dashboard

application = with_dashboard(get_wsgi_application(), prefix="/teguh")
```

`staff_only(environ)` reads the request's Django session (the session and
authentication middleware, run on a request built from the environ) and
allows actions to active staff users. Pages stay readable by whoever reaches
them: put the prefix behind your own access rules if they must not be.
Needs the `dashboard` extra (Jinja2). See docs/dashboard.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def staff_only(environ: Mapping[str, Any]) -> bool:
    """Whether the request's Django user is an active staff member (the dashboard's `authorize`)."""
    from django.contrib.auth.middleware import AuthenticationMiddleware
    from django.contrib.sessions.middleware import SessionMiddleware
    from django.core.handlers.wsgi import WSGIRequest
    from django.db import close_old_connections

    request = WSGIRequest(dict(environ))  # a copy: the dashboard still reads the body itself
    try:
        SessionMiddleware(lambda r: None).process_request(request)
        AuthenticationMiddleware(lambda r: None).process_request(request)
        user = request.user
        return bool(user.is_active and user.is_staff)
    finally:
        close_old_connections()  # this thread may be a dashboard thread Django never sees finish


def with_dashboard(django_app: Any, prefix: str = "/teguh", **options: Any) -> Any:
    """`django_app` with the dashboard under `prefix`, on the project's teguh app, staff acting.

    `options` go to `teguh.dashboard.make_app` (e.g. `title=`); `authorize`
    defaults to `staff_only`.
    """
    from ...dashboard import make_app, mount
    from ._app import get_app

    options.setdefault("authorize", staff_only)
    return mount(django_app, make_app(get_app().client, **options), prefix)
