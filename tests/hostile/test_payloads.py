"""Hostile params, results, step states and event payloads.

Each value is either refused in the client before anything is written, or
stored and read back equal through every path: spawn -> claim params, step
checkpoint -> get_checkpoints, emit_event -> await_event, complete_run ->
get_task_result. The only documented coercions are JSON's own: tuples come
back as lists, non-string dict keys as strings, and a float written in
exponent form may come back as an int of the same value (jsonb stores numbers
as exact decimals).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

import teguh
from teguh import _json

from .conftest import HOSTILE, Q, pgcode_of

ODD_STRINGS = [
    "\x00",
    "a\x00",
    "a\ud800b",
    "\udfff",
    "\\u0000",
    "$$",
    "'; drop table x; --",
    "%I%s",
    "\u202e",
    "",
]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(),
    st.text(max_size=20),
    st.sampled_from(ODD_STRINGS),
    st.binary(max_size=3),
)
keys = st.one_of(
    st.text(max_size=6), st.sampled_from(["\x00k", "k\ud800", "1"]), st.integers(-2, 2), st.none()
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.lists(inner, max_size=3).map(tuple),
        st.dictionaries(keys, inner, max_size=4),
        st.frozensets(st.integers(0, 3), max_size=2),
    ),
    max_leaves=12,
)


def _key_kind(key: Any) -> str:
    return "number" if isinstance(key, (int, float)) else type(key).__name__


def storable(value: Any, depth: int = 1) -> bool:
    """An independent oracle: can teguh store this value without losing anything?"""
    if depth > _json.MAX_JSON_DEPTH:
        return False
    if value is None or isinstance(value, (bool, int)):
        return True
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, str):
        return "\x00" not in value and not any(0xD800 <= ord(c) <= 0xDFFF for c in value)
    if isinstance(value, (list, tuple)):
        return all(storable(item, depth + 1) for item in value)
    if isinstance(value, dict):
        if len({_key_kind(k) for k in value}) > 1:
            return False  # mixed key types could collide once they are strings
        return all(storable(k) and storable(v, depth + 1) for k, v in value.items())
    return False  # bytes, sets, objects


def _json_key(key: Any) -> str:
    if isinstance(key, str):
        return key
    if key is None:
        return "null"
    if isinstance(key, bool):
        return "true" if key else "false"
    return repr(key) if isinstance(key, float) else str(key)


def same(got: Any, sent: Any) -> bool:
    """`got` is `sent` after a JSON round trip (see the module docstring for the coercions)."""
    if isinstance(sent, bool) or sent is None or isinstance(sent, str):
        return got == sent and type(got) is type(sent)
    if isinstance(sent, int):
        return isinstance(got, int) and not isinstance(got, bool) and got == sent
    if isinstance(sent, float):
        return isinstance(got, (int, float)) and not isinstance(got, bool) and float(got) == sent
    if isinstance(sent, (list, tuple)):
        return isinstance(got, list) and len(got) == len(sent) and all(map(same, got, sent))
    if isinstance(sent, dict):
        expected = {_json_key(k): v for k, v in sent.items()}
        return (
            isinstance(got, dict)
            and got.keys() == expected.keys()
            and all(same(got[k], expected[k]) for k in got)
        )
    raise AssertionError(f"not a JSON value: {sent!r}")


_n = itertools.count()


@HOSTILE
@given(value=values)
@example(value={1: "a", "1": "b"})  # regression: jsonb kept one of two colliding keys
@example(value={None: 1, "null": 2})
@example(value={1: "a", 2: "b"})
@example(value=(1, (2, 3)))
@example(value=1e300)
@example(value=-0.0)
@example(value=2**70)
@example(value=float("nan"))
@example(value={"k": "\x00"})
@example(value={"\x00": 1})
@example(value=["a\ud800"])
@example(value=b"bytes")
@example(value={1, 2})
def test_values_round_trip_through_every_path_or_are_refused(
    client: teguh.Client, catalog: Callable[[], Any], value: Any
) -> None:
    before = catalog()
    try:
        spawned = client.spawn_task(Q, "p", value)
    except (TypeError, teguh.InvalidArgument) as exc:
        assert "params" in str(exc)
        assert catalog() == before
        assert not storable(value), value
        for call in (
            lambda: client.emit_event(Q, "refused", value),
            lambda: client.spawn_task(Q, "p", None, headers={"h": value}),
        ):
            with pytest.raises((TypeError, teguh.InvalidArgument)):
                call()
        assert catalog() == before
        return
    assert storable(value), value
    [run] = client.claim_task(Q, "w", 0)
    assert run.task_id == spawned.task_id
    assert same(run.params, value), (run.params, value)
    client.set_checkpoint(Q, run.task_id, "step", value, run.run_id)
    assert same(client.get_checkpoints(Q, run.task_id, run.run_id)["step"], value)
    event = f"event-{next(_n)}"
    client.emit_event(Q, event, value)
    suspend, payload = client.await_event(Q, run.task_id, run.run_id, "wait", event)
    assert not suspend and same(payload, value)
    client.complete_run(Q, run.run_id, value)
    result = client.get_task_result(Q, spawned.task_id)
    assert result.state == "completed" and same(result.result, value)


def nested(depth: int) -> list[Any]:
    """A list nested `depth` levels deep: [[[...]]]."""
    value: list[Any] = []
    for _ in range(depth - 1):
        value = [value]
    return value


def test_nesting_limit(client: teguh.Client, catalog: Callable[[], Any]) -> None:
    limit = _json.MAX_JSON_DEPTH
    task = client.spawn_task(Q, "deep", nested(limit))
    [run] = client.claim_task(Q, "w", 0)
    assert run.params == nested(limit)
    client.complete_run(Q, run.run_id, nested(limit))
    assert client.get_task_result(Q, task.task_id).result == nested(limit)
    before = catalog()
    for depth in (limit + 1, 5_000, 100_000):  # regression: RecursionError escaped the client
        with pytest.raises(teguh.InvalidArgument, match=f"nested too deeply .at most {limit} levels"):
            client.spawn_task(Q, "deep", nested(depth))
        with pytest.raises(teguh.InvalidArgument, match="nested too deeply"):
            client.emit_event(Q, "deep", {"a": nested(depth)})
    assert catalog() == before


def test_circular_values_are_refused(client: teguh.Client, catalog: Callable[[], Any]) -> None:
    loop: list[Any] = []
    loop.append(loop)
    before = catalog()
    with pytest.raises(teguh.InvalidArgument, match="params"):
        client.spawn_task(Q, "loop", loop)
    assert catalog() == before


@pytest.mark.parametrize("field", ["params", "headers", "result", "state", "payload"])
def test_size_limit_applies_to_every_json_value(
    client: teguh.Client, catalog: Callable[[], Any], field: str
) -> None:
    limit = client.max_payload_bytes
    task = client.spawn_task(Q, "big")
    [run] = client.claim_task(Q, "w", 0)

    def sized(n: int) -> str:
        """A string whose JSON (with its quotes) is `n` UTF-8 bytes, mostly 2-byte characters."""
        return "é" * ((n - 2) // 2) + "x" * ((n - 2) % 2)

    calls: dict[str, Callable[[int], Any]] = {
        "params": lambda n: client.spawn_task(Q, "big", sized(n)),
        "headers": lambda n: client.spawn_task(Q, "big", None, headers={"h": sized(n - 6)}),  # {"h":}
        "result": lambda n: client.complete_run(Q, run.run_id, sized(n)),
        "state": lambda n: client.set_checkpoint(Q, task.task_id, "s", sized(n), run.run_id),
        "payload": lambda n: client.emit_event(Q, "big", sized(n)),
    }
    before = catalog()
    with pytest.raises(
        teguh.PayloadTooLarge, match=f"{limit + 1} bytes of JSON, above the limit of {limit}"
    ) as info:
        calls[field](limit + 1)
    assert isinstance(info.value, teguh.InvalidArgument)
    assert field in str(info.value)
    assert catalog() == before
    calls[field](limit)  # exactly at the limit is fine
    assert catalog() != before


def test_the_size_limit_is_configurable(client: teguh.Client) -> None:
    client.max_payload_bytes = 3 * 1024 * 1024
    big = "x" * (2 * 1024 * 1024)
    task = client.spawn_task(Q, "big", big)
    [run] = client.claim_task(Q, "w", 0)
    assert run.params == big
    client.max_payload_bytes = 1024
    with pytest.raises(teguh.PayloadTooLarge):
        client.complete_run(Q, run.run_id, big)
    client.max_payload_bytes = None  # type: ignore[assignment]  # None: no client-side limit
    client.complete_run(Q, run.run_id, big)
    assert client.get_task_result(Q, task.task_id).result == big


def test_sql_refuses_values_jsonb_cannot_hold(db: Any, catalog: Callable[[], Any]) -> None:
    """Direct SQL callers get jsonb's own errors for NUL escapes and NaN; nothing is written."""
    db.run("select teguh.create_queue(%s)", Q)
    before = catalog()
    assert pgcode_of(lambda: db.run("select teguh.spawn_task(%s, 't', %s::jsonb)", Q, '"\\u0000"')) == "22P05"
    assert pgcode_of(lambda: db.run("select teguh.spawn_task(%s, 't', %s::jsonb)", Q, "NaN")) == "22P02"
    assert pgcode_of(lambda: db.run("select teguh.emit_event(%s, 'e', %s::jsonb)", Q, "[1,")) == "22P02"
    assert catalog() == before


def test_an_oversized_failure_reason_is_cut_not_refused(client: teguh.Client) -> None:
    """Regression: Client.fail_run stored reasons of any size (100 MB would have gone in whole)."""
    task = client.spawn_task(Q, "fails", max_attempts=1)
    [run] = client.claim_task(Q, "w", 0)
    huge = {"type": "BigError", "message": "m" * (3 * client.max_payload_bytes), "traceback": "t" * 1000}
    client.fail_run(Q, run.run_id, huge)
    result = client.get_task_result(Q, task.task_id)
    assert result.state == "failed"
    assert result.failure["type"] == "BigError" and result.failure["truncated"] is True
    assert result.failure["original_bytes"] > 3 * client.max_payload_bytes
    assert len(result.failure["message"]) < client.max_payload_bytes
    assert "bytes cut]" in result.failure["message"]


def test_the_server_refuses_oversized_values_from_direct_sql_callers(
    client: teguh.Client, db: Any, catalog: Callable[[], Any]
) -> None:
    db.run("select teguh.set_max_payload_bytes(100000)")
    big = '"' + "x" * 200_000 + '"'
    before = catalog()
    headers = "jsonb_build_object('headers', jsonb_build_object('h', %s::jsonb))"
    item = "jsonb_build_object('task_name', 't', 'params', %s::jsonb)"
    for query, args in (
        ("select teguh.spawn_task(%s, 't', %s::jsonb)", (Q, big)),
        ("select teguh.spawn_plain(%s, 't', %s::jsonb)", (Q, big)),
        (f"select teguh.spawn_task(%s, 't', '1', {headers})", (Q, big)),
        (f"select teguh.spawn_tasks(%s, jsonb_build_array({item}))", (Q, big)),
        ("select teguh.emit_event(%s, 'e', %s::jsonb)", (Q, big)),
    ):  # fmt: skip
        assert pgcode_of(lambda query=query, args=args: db.run(query, *args)) == "TG005", query
    assert catalog() == before
    # the client maps it to PayloadTooLarge when its own limit lets the value through
    client.max_payload_bytes = None  # type: ignore[assignment]
    with pytest.raises(teguh.PayloadTooLarge, match="above the server limit of 100000 bytes"):
        client.spawn_task(Q, "t", "x" * 200_000)
    assert catalog() == before
    # a batch is measured item by item, not as a whole
    client.spawn_tasks(Q, [{"task_name": "t", "params": "y" * 50_000} for _ in range(4)])
    client.spawn_task(Q, "t", "x" * 90_000)
    assert pgcode_of(lambda: db.run("select teguh.set_max_payload_bytes(1000)")) == "TG004"
    db.run("select teguh.set_max_payload_bytes(null)")  # back to the default, 4 MiB
    client.spawn_task(Q, "t", "x" * 200_000)
