"""The flow-control options in Python: spawn keys, `@app.task` limits, the CLI, bad input."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from click.testing import CliRunner

import teguh
from teguh._options import task_type
from teguh.app import App
from teguh.cli import main as cli

from .conftest import Q


def _row(db: Any, task_id: str) -> tuple[str | None, str | None]:
    return db.all(f'select concurrency_key, rate_limit_key from teguh."t_{Q}" where task_id = %s', task_id)[0]


def test_spawn_keys_are_stored_on_the_task(client: teguh.Client, queue: str, db: Any) -> None:
    one = client.spawn_task(Q, "sync", concurrency_key="customer:42", rate_limit_key="partner:acme")
    many = client.spawn_tasks(
        Q, [{"task_name": "sync", "concurrency_key": "c1"}, {"task_name": "sync", "rate_limit_key": "r1"}]
    )
    assert _row(db, one.task_id) == ("customer:42", "partner:acme")
    assert [_row(db, r.task_id) for r in many] == [("c1", None), (None, "r1")]
    (run,) = client.claim_task(Q, "w", qty=5)[:1]
    assert run.task_id == one.task_id


@pytest.mark.parametrize(
    ("options", "names"),
    [
        ({"concurrency_key": "k" * 1025}, "concurrency_key"),
        ({"rate_limit_key": "k" * 1025}, "rate_limit_key"),
        ({"concurrency_key": "  "}, "concurrency_key"),
    ],
)
def test_bad_spawn_keys_raise_one_clear_error_and_write_nothing(
    client: teguh.Client, queue: str, snapshot: Callable[[], dict[str, Any]], options: dict, names: str
) -> None:
    before = snapshot()
    with pytest.raises(teguh.InvalidArgument, match=names):
        client.spawn_task(Q, "t", **options)
    with pytest.raises(teguh.InvalidArgument, match=names):
        client.spawn_tasks(Q, [{"task_name": "t"}, {"task_name": "t", **options}])
    assert snapshot() == before


@pytest.mark.parametrize(
    ("limits", "message"),
    [
        ({"concurrency": 0}, "concurrency must be >= 1"),
        ({"concurrency": -2}, "concurrency must be >= 1"),
        ({"key_concurrency": 0}, "key_concurrency must be >= 1"),
        ({"rate_limit": "20/x"}, "rate_limit must look like"),
        ({"rate_limit": "0/s"}, "rate_limit must look like"),
        ({"rate_limit": "20 per second"}, "rate_limit must look like"),
    ],
)
def test_bad_limits_are_refused_at_the_decorator(limits: dict, message: str) -> None:
    app = App("postgresql:///unused")
    with pytest.raises(teguh.InvalidArgument, match=message):
        app.task("t", **limits)
    assert app.tasks == {}


def test_limits_are_registered_with_the_type_and_not_sent_as_spawn_options(
    client: teguh.Client, queue: str
) -> None:
    app = App(client=client, queue=Q)

    @app.task("call", rate_limit="100/m", concurrency=3, key_concurrency=2, max_attempts=4)
    def call(params: Any) -> None:
        return None

    assert call.limits == {"concurrency": 3, "key_concurrency": 2, "rate_limit": "100/m"}
    client._register_task_types(Q, [task_type("call", {**call.defaults, **call.limits}, None)], None)
    (registered,) = client.list_task_types(Q)
    assert (registered.concurrency, registered.key_concurrency, registered.rate_limit) == (3, 2, "100/m")
    assert registered.max_attempts == 4
    spawned = call.spawn(None, concurrency_key="k")
    assert client.get_task_result(Q, spawned.task_id).state == "pending"


def test_cli_spawn_takes_the_keys(client: teguh.Client, queue: str, db: Any) -> None:
    keys = ["--concurrency-key", "c:1", "--rate-limit-key", "r:1"]
    out = CliRunner().invoke(cli, ["--dsn", client.dsn, "spawn", Q, "sync", "{}", *keys])
    assert out.exit_code == 0, out.output
    task_id = out.output.split()[0]
    assert _row(db, task_id) == ("c:1", "r:1")
    bad = CliRunner().invoke(cli, ["--dsn", client.dsn, "spawn", Q, "sync", "{}", "--concurrency-key", " "])
    assert bad.exit_code == 1
    assert "concurrency_key" in bad.output
