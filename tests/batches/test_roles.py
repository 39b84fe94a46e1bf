"""Batches under privilege separation: a producer spawns, a worker role ends items (docs/roles.md).

The counting runs in a trigger at commit, after the entry point that queued
it returned: it must run as the schema's owner, not as the worker role.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import teguh

try:
    from hostile.test_roles import Roles
except ImportError:  # pragma: no cover
    from tests.hostile.test_roles import Roles  # type: ignore[no-redef]


@pytest.fixture
def roles(empty_dsn: str) -> Iterator[Roles]:
    r = Roles(empty_dsn)
    try:
        yield r
    finally:
        r.drop()


def test_producer_spawns_and_worker_role_finishes_a_batch(roles: Roles) -> None:
    owner_name = roles.create("owner")
    roles.sql(f'create schema teguh authorization "{owner_name}"')
    teguh.install(roles.dsn_of("owner"))
    clients = []
    try:
        owner = teguh.Client(roles.dsn_of("owner"), max_connections=2)
        clients.append(owner)
        for kind in ("producer", "worker"):
            roles.create(kind)
            owner._run("grant", lambda cur, kind=kind: cur.execute(
                f"select teguh.grant_{kind}(%s)", (roles.names[kind],)))
        owner.create_queue("jobs")
        producer = teguh.Client(roles.dsn_of("producer"), max_connections=2)
        worker = teguh.Client(roles.dsn_of("worker"), max_connections=2)
        clients += [producer, worker]
        batch = producer.spawn_batch("jobs", "echo", [1, 2], on_failure="fail_fast", on_complete="done")
        runs = worker.claim_task("jobs", "w", qty=2)
        worker.complete_run("jobs", runs[0].run_id, 1)
        worker._fail_run_non_retryable("jobs", runs[1].run_id, '"no"')
        info = producer.get_batch(batch.id)
        assert (info.completed, info.failed, info.state) == (1, 1, "failed")
        assert info.on_complete_task_id is not None
        assert [i.state for i in producer.batch_results(batch.id)] == ["completed", "failed"]
    finally:
        for client in clients:
            client.close()
