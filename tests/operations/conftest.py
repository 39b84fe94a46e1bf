"""Fixtures of the operations tests: a client with queue `Q` on the test's own database."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import teguh

Q = "ops"


@pytest.fixture
def client(dsn: str) -> Iterator[teguh.Client]:
    """A client of the test's database, with queue `Q` created."""
    with teguh.Client(dsn) as c:
        c.create_queue(Q)
        yield c


@pytest.fixture
def app(dsn: str) -> Iterator[teguh.App]:
    """An app whose default queue is `Q` (created), with version "7.1"."""
    application = teguh.App(dsn, queue=Q, version="7.1")
    application.client.create_queue(Q)
    try:
        yield application
    finally:
        application.client.close()


def claim_one(client: teguh.Client, worker_id: str = "w1", claim_timeout: int = 30) -> teguh.ClaimedRun:
    """Claim the next task of `Q` (there must be one)."""
    (run,) = client.claim_task(Q, worker_id, claim_timeout=claim_timeout)
    return run
