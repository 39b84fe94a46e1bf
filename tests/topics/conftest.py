"""Fixtures for the topic tests: a client per test on its own database, with two queues."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import teguh


@pytest.fixture
def client(dsn: str) -> Iterator[teguh.Client]:
    """A client on the test's database, with queues `jobs` and `audit`."""
    with teguh.Client(dsn, application_name="teguh-tests") as c:
        c.create_queue("jobs")
        c.create_queue("audit")
        yield c
