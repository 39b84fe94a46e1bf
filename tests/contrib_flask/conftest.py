"""Fixtures for the Flask tests: a real Flask app per test on the test's database."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from . import flask_app as fa


@pytest.fixture
def teguh_dsn(dsn: str) -> str:
    """The plugin's database fixture, pointed at the suite's per-test database."""
    return dsn


@pytest.fixture
def flask_app(request: pytest.FixtureRequest, dsn: str) -> Iterator[Any]:
    """The test Flask app, its tables and teguh queue created.

    On psycopg2 unless a test parametrizes it (indirectly) with a driver of `fa.DRIVERS`.
    """
    fa.create_tables(dsn)
    app = fa.create_app(dsn, driver=getattr(request, "param", "psycopg2"))
    fa.ext.client.create_queue(fa.Q)
    try:
        yield app
    finally:
        fa.ext.client.close()
        with app.app_context():
            for engine in fa.db.engines.values():
                engine.dispose()  # psycopg 3 warns about connections left to the garbage collector
