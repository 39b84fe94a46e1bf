"""Fixtures for the hostile-input tests: one database per test, reused by every example.

Hypothesis runs many examples inside one test function, so these fixtures are
function-scoped and the examples share them (`HOSTILE` suppresses the health
check that warns about exactly that). Nothing here mocks PostgreSQL.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import psycopg2
import pytest
from hypothesis import HealthCheck, settings

import teguh

Q = "hostile"

settings.register_profile(
    "hostile",
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,
    # The same examples on every run, so CI cannot fail by luck; set
    # FUZZ_RANDOM=1 to explore new ones (and more with max_examples).
    derandomize=not os.environ.get("FUZZ_RANDOM"),
)
HOSTILE = settings.get_profile("hostile")
"""The settings of every property test here: few examples, no deadline, one database."""


@pytest.fixture
def client(dsn: str) -> Iterator[teguh.Client]:
    """A client on the test's database, with queue `Q` created."""
    with teguh.Client(dsn, application_name="teguh-hostile") as c:
        c.create_queue(Q)
        yield c


@pytest.fixture
def catalog(db: Any) -> Callable[[], dict[str, Any]]:
    """Snapshots the catalog (schemas, relations, functions) and every queue's row counts.

    Two equal snapshots prove a rejected call wrote nothing: no table, no
    function, no row.
    """

    def take() -> dict[str, Any]:
        state: dict[str, Any] = {
            "namespaces": db.all("select nspname from pg_namespace order by 1"),
            "relations": db.all(
                "select n.nspname, c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace"
                " where n.nspname not in ('pg_catalog', 'information_schema', 'pg_toast') order by 1, 2"
            ),
            "functions": db.all(
                "select p.oid::regprocedure::text from pg_proc p"
                " where p.pronamespace = 'teguh'::regnamespace order by 1"
            ),
            "queues": db.all("select queue_name from teguh.queues order by 1"),
        }
        for (name,) in state["queues"]:
            for prefix in ("t", "p", "r", "c", "e", "w"):
                state[f"{prefix}_{name}"] = db.value(f"select count(*) from teguh.{prefix}_{name}")
        return state

    return take


def pgcode_of(call: Callable[[], Any]) -> str | None:
    """Run a SQL call; return the SQLSTATE it failed with, or None when it succeeded."""
    try:
        call()
    except psycopg2.Error as exc:
        return exc.pgcode
    return None
