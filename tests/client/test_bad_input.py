"""Bad input raises the right error and writes nothing."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import psycopg2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import teguh
from teguh import _validate
from teguh.errors import map_db_error

from .conftest import Q

UNKNOWN_ID = "00000000-0000-7000-8000-000000000000"
BAD_QUEUE_NAMES = ["Jobs", "1abc", "a-b", 'a"b', "a b", "a;b", "a" * 56, "", "_x", "jobs\n", "jöbs"]


@pytest.fixture
def unchanged(snapshot: Callable[[], dict[str, Any]]) -> Any:
    """Asserts at teardown that the database holds exactly what it held when the test body started."""

    class Guard:
        def __enter__(self) -> None:
            self.before = snapshot()

        def __exit__(self, *exc: object) -> None:
            assert snapshot() == self.before

    return Guard()


@pytest.mark.parametrize("name", BAD_QUEUE_NAMES)
def test_bad_queue_names_are_rejected_before_sql(
    client: teguh.Client, queue: str, name: str, unchanged: Any
) -> None:
    calls: list[Callable[[], Any]] = [
        lambda: client.create_queue(name),
        lambda: client.drop_queue(name),
        lambda: client.spawn_task(name, "t"),
        lambda: client.spawn_tasks(name, [{"task_name": "t"}]),
        lambda: client.claim_task(name, "w"),
        lambda: client.emit_event(name, "e"),
        lambda: client.get_task_result(name, UNKNOWN_ID),
        lambda: client.next_due(name),
        lambda: client.ticker(name),
    ]
    with unchanged:
        for call in calls:
            with pytest.raises(teguh.InvalidQueueName) as info:
                call()
            assert isinstance(info.value, ValueError)
            assert "^[a-z][a-z0-9_]*$" in str(info.value) or "55 bytes" in str(info.value)
    assert client.list_queues() == [Q]


def test_queue_name_must_be_a_string(client: teguh.Client) -> None:
    with pytest.raises(teguh.InvalidQueueName):
        client.create_queue(None)  # type: ignore[arg-type]


def test_unknown_queue(client: teguh.Client, unchanged: Any) -> None:
    with unchanged:
        for call in (
            lambda: client.spawn_task("nope", "t", {"a": 1}),
            lambda: client.spawn_tasks("nope", [{"task_name": "t"}]),
            lambda: client.claim_task("nope", "w"),
            lambda: client.emit_event("nope", "e", 1),
            lambda: client.cancel_task("nope", UNKNOWN_ID),
            lambda: client.next_due("nope"),
            lambda: client.ticker("nope"),
        ):
            with pytest.raises(teguh.QueueNotFound) as info:
                call()
            assert info.value.queue == "nope" and info.value.pgcode == "TG002"
            assert "CONTEXT" not in str(info.value)


def test_unknown_task_id(client: teguh.Client, queue: str, unchanged: Any) -> None:
    with unchanged:
        for call in (
            lambda: client.get_task_result(queue, UNKNOWN_ID),
            lambda: client.cancel_task(queue, UNKNOWN_ID),
            lambda: client.retry_task(queue, UNKNOWN_ID),
            lambda: client.wait_for_result(queue, UNKNOWN_ID, timeout=1),
        ):
            with pytest.raises(teguh.TaskNotFound) as info:
                call()
            assert info.value.task_id == UNKNOWN_ID


def test_malformed_ids(client: teguh.Client, queue: str, unchanged: Any) -> None:
    with unchanged:
        with pytest.raises(teguh.InvalidArgument, match="not a UUID"):
            client.get_task_result(queue, "not-a-uuid")
        with pytest.raises(teguh.InvalidArgument):
            client.complete_run(queue, "123")
        with pytest.raises(TypeError):
            client.cancel_task(queue, 42)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("params", "error"),
    [
        ({1, 2}, TypeError),
        ({"when": datetime(2024, 1, 1)}, TypeError),
        (object(), TypeError),
        (math.nan, ValueError),
        ({"x": [math.inf]}, ValueError),
        ({"text": "a\u0000b"}, teguh.InvalidArgument),
        ({"k\u0000": 1}, teguh.InvalidArgument),
        ("\ud800", teguh.InvalidArgument),
    ],
)
def test_params_that_are_not_json(
    client: teguh.Client, queue: str, params: Any, error: type, unchanged: Any
) -> None:
    with unchanged:
        with pytest.raises(error, match="params"):
            client.spawn_task(queue, "t", params)
        with pytest.raises(error, match=r"items\[1\]\.params"):
            client.spawn_tasks(queue, [{"task_name": "ok"}, {"task_name": "t", "params": params}])


def test_a_backslash_u0000_text_is_fine(client: teguh.Client, queue: str) -> None:
    spawned = client.spawn_task(queue, "t", {"text": "\\u0000"})
    (run,) = client.claim_task(queue, "w")
    assert run.task_id == spawned.task_id and run.params == {"text": "\\u0000"}


def test_payload_size_limit(client: teguh.Client, queue: str, claimed: Any, unchanged: Any) -> None:
    run = claimed()
    big = "x" * (1024 * 1024)
    with unchanged:
        with pytest.raises(teguh.PayloadTooLarge) as info:
            client.spawn_task(queue, "t", big)
        assert isinstance(info.value, teguh.InvalidArgument)
        with pytest.raises(teguh.PayloadTooLarge):
            client.complete_run(queue, run.run_id, [big])
        with pytest.raises(teguh.PayloadTooLarge):
            client.emit_event(queue, "e", big)
        with pytest.raises(teguh.PayloadTooLarge):
            client.set_checkpoint(queue, run.task_id, "s", big, run.run_id)
    client.max_payload_bytes = 16
    with pytest.raises(teguh.PayloadTooLarge):
        client.spawn_task(queue, "t", {"a": "0123456789abcdef"})


def test_naive_datetimes_are_rejected(client: teguh.Client, queue: str, claimed: Any, unchanged: Any) -> None:
    run = claimed()
    naive = datetime.now() + timedelta(hours=1)
    with unchanged:
        for call in (
            lambda: client.spawn_task(queue, "t", available_at=naive),
            lambda: client.spawn_tasks(queue, [{"task_name": "t", "available_at": naive}]),
            lambda: client.schedule_run(queue, run.run_id, naive),
            lambda: client.fail_run(queue, run.run_id, {"type": "E"}, retry_at=naive),
            lambda: client.sleep_run(queue, run.run_id, "s", wake_at=naive),
        ):
            with pytest.raises(ValueError, match="timezone-aware"):
                call()


@pytest.mark.parametrize("max_attempts", [-1, -5])  # 0 is valid: unlimited
def test_max_attempts_below_zero(client: teguh.Client, queue: str, max_attempts: int, unchanged: Any) -> None:
    with unchanged:
        with pytest.raises(teguh.InvalidArgument, match="max_attempts"):
            client.spawn_task(queue, "t", max_attempts=max_attempts)
        with pytest.raises(teguh.InvalidArgument, match="max_attempts"):
            client.spawn_tasks(queue, [{"task_name": "t", "max_attempts": max_attempts}])
    with pytest.raises(TypeError):
        client.spawn_task(queue, "t", max_attempts=True)  # type: ignore[arg-type]


@pytest.mark.parametrize("extend_by", [0, -5, 0.0, timedelta(0)])
def test_extend_by_not_positive(
    client: teguh.Client, claimed: Any, db: Any, extend_by: Any, unchanged: Any
) -> None:
    run = claimed()
    with unchanged:
        with pytest.raises(teguh.InvalidArgument, match="extend_by"):
            client.extend_claim(Q, run.run_id, extend_by)
        with pytest.raises(teguh.InvalidArgument, match="extend_by"):
            client.extend_claims(Q, [run.run_id], extend_by)


@pytest.mark.parametrize("name", ["", "   ", "\t\n", "x" * 1025, "é" * 513, "a\u0000b"])
def test_blank_or_long_names(client: teguh.Client, claimed: Any, name: str, unchanged: Any) -> None:
    run = claimed()
    with unchanged:
        for call in (
            lambda: client.spawn_task(Q, name),
            lambda: client.spawn_tasks(Q, [{"task_name": name}]),
            lambda: client.spawn_task(Q, "t", idempotency_key=name),
            lambda: client.claim_task(Q, name),
            lambda: client.set_checkpoint(Q, run.task_id, name, 1, run.run_id),
            lambda: client.sleep_run(Q, run.run_id, name, duration=10),
            lambda: client.await_event(Q, run.task_id, run.run_id, name, "e"),
            lambda: client.await_event(Q, run.task_id, run.run_id, "s", name),
            lambda: client.emit_event(Q, name, 1),
        ):
            with pytest.raises(teguh.InvalidArgument):
                call()


def test_2000_byte_event_name(client: teguh.Client, claimed: Any, unchanged: Any) -> None:
    run = claimed()
    name = "e" * 2000
    with unchanged:
        with pytest.raises(teguh.InvalidArgument, match="1024"):
            client.emit_event(Q, name, {"a": 1})
        with pytest.raises(teguh.InvalidArgument, match="1024"):
            client.await_event(Q, run.task_id, run.run_id, "s", name)


def test_1024_byte_names_are_accepted(client: teguh.Client, claimed: Any) -> None:
    run = claimed()
    name = "n" * 1024
    client.set_checkpoint(Q, run.task_id, name, 1, run.run_id)
    client.emit_event(Q, name, 2)
    assert client.await_event(Q, run.task_id, run.run_id, "é" * 512, name) == (False, 2)


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"retry_strategy": "fixed"}, TypeError),
        ({"retry_strategy": {"kind": "linear"}}, teguh.InvalidArgument),
        ({"retry_strategy": {"kind": "fixed", "seconds": 1}}, teguh.InvalidArgument),
        ({"retry_strategy": {"kind": "exponential", "factor": 0}}, teguh.InvalidArgument),
        ({"cancellation": {"max_wait": 5}}, teguh.InvalidArgument),
        ({"cancellation": {"max_delay": -1}}, teguh.InvalidArgument),
        ({"cancellation": {"max_delay": 0}}, teguh.InvalidArgument),
        ({"cancellation": 5}, TypeError),
        ({"headers": ["not", "a", "dict"]}, TypeError),
        ({"headers": {"s": {1, 2}}}, TypeError),
        ({"priority": 40000}, teguh.InvalidArgument),
        ({"priority": 1.5}, TypeError),
        ({"notify_done": "yes"}, TypeError),
        ({"available_at": "2030-01-01T00:00:00Z"}, TypeError),
    ],
)
def test_bad_spawn_options(
    client: teguh.Client, queue: str, options: dict, error: type, unchanged: Any
) -> None:
    with unchanged:
        with pytest.raises(error):
            client.spawn_task(queue, "t", **options)
        with pytest.raises(error):
            client.spawn_tasks(queue, [{"task_name": "t", **options}])


def test_bad_spawn_items(client: teguh.Client, queue: str, unchanged: Any) -> None:
    with unchanged:
        with pytest.raises(teguh.InvalidArgument, match="unknown"):
            client.spawn_tasks(queue, [{"task_name": "t", "bogus": 1}])
        with pytest.raises(teguh.InvalidArgument, match="task_name"):
            client.spawn_tasks(queue, [{"params": 1}])
        with pytest.raises(TypeError):
            client.spawn_tasks(queue, [["t"]])  # type: ignore[list-item]
        with pytest.raises(TypeError):
            client.spawn_tasks(queue, {"task_name": "t"})  # type: ignore[arg-type]


def test_bad_claim_arguments(client: teguh.Client, queue: str, unchanged: Any) -> None:
    client.spawn_task(queue, "t")
    with unchanged:
        with pytest.raises(teguh.InvalidArgument, match="qty"):
            client.claim_task(queue, "w", 30, 0)
        with pytest.raises(teguh.InvalidArgument, match="qty"):
            client.claim_task(queue, "w", 30, 10001)
        with pytest.raises(teguh.InvalidArgument, match="claim_timeout"):
            client.claim_task(queue, "w", -1)
        with pytest.raises(TypeError):
            client.claim_task(queue, "w", "30")  # type: ignore[arg-type]


def test_bad_sleep_and_await_arguments(client: teguh.Client, claimed: Any, unchanged: Any) -> None:
    run = claimed()
    aware = datetime.now().astimezone()
    with unchanged:
        with pytest.raises(teguh.InvalidArgument, match="exactly one"):
            client.sleep_run(Q, run.run_id, "s")
        with pytest.raises(teguh.InvalidArgument, match="exactly one"):
            client.sleep_run(Q, run.run_id, "s", duration=1, wake_at=aware)
        with pytest.raises(teguh.InvalidArgument):
            client.sleep_run(Q, run.run_id, "s", duration=math.nan)
        with pytest.raises(teguh.InvalidArgument):
            client.sleep_run(Q, run.run_id, "s", duration=-1)
        with pytest.raises(teguh.InvalidArgument):
            client.await_event(Q, run.task_id, run.run_id, "s", "e", timeout=-1)
        with pytest.raises(teguh.InvalidArgument):
            client.set_checkpoint(Q, run.task_id, "s", 1, run.run_id, extend_claim_by=-1)


def test_engine_errors_map_to_python_errors(db: Any) -> None:
    """The SQL-side checks raise SQLSTATEs that map onto the same exceptions."""
    cases = [
        ("select teguh.create_queue('Bad')", teguh.InvalidQueueName),
        ("select teguh.next_due('nope')", teguh.QueueNotFound),
    ]
    db.run("select teguh.create_queue('jobs')")
    cases += [
        ("select teguh.cancel_task('jobs', '00000000-0000-7000-8000-000000000000')", teguh.TaskNotFound),
        ("select teguh.emit_event('jobs', '   ')", teguh.InvalidArgument),
    ]
    for query, expected in cases:
        with pytest.raises(psycopg2.Error) as info:
            db.run(query)
        mapped = map_db_error(info.value, queue="jobs")
        assert type(mapped) is expected, query
        assert "CONTEXT" not in str(mapped) and str(mapped)


_QUEUE_CHARS = st.sampled_from([*"abcxyz019_-; \"'AZéß.$", "\n", "\u00e0"])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    name=st.one_of(
        st.text(_QUEUE_CHARS, max_size=60), st.text(st.sampled_from("abz09_"), min_size=50, max_size=60)
    )
)
def test_queue_name_rule_matches_the_engine(db: Any, name: str) -> None:
    try:
        _validate.queue_name(name)
        client_ok = True
    except teguh.InvalidQueueName:
        client_ok = False
    try:
        db.run("select teguh._check_queue_name(%s)", name)
        engine_ok = True
    except psycopg2.Error as exc:
        assert exc.pgcode == "TG001"
        engine_ok = False
    assert client_ok == engine_ok, name
