"""The pure-Python parts: errors, retry strategies, JSON and time helpers (no database)."""

from __future__ import annotations

import logging
import math
from datetime import datetime, timedelta, timezone
from typing import Any

import psycopg2
import pytest

import teguh
from teguh import _json, _time
from teguh.errors import error_message, is_connection_lost, map_db_error
from teguh.retry import normalize_retry_strategy

# -- errors -------------------------------------------------------------------------


def test_error_hierarchy() -> None:
    for cls in (
        teguh.TaskNotFound,
        teguh.QueueNotFound,
        teguh.InvalidQueueName,
        teguh.InvalidArgument,
        teguh.PayloadTooLarge,
        teguh.EventTimeout,
        teguh.SchemaNotInstalled,
        teguh.ConnectionLost,
    ):
        assert issubclass(cls, teguh.TeguhError)
    assert issubclass(teguh.InvalidQueueName, ValueError)
    assert issubclass(teguh.InvalidArgument, ValueError)
    assert issubclass(teguh.PayloadTooLarge, teguh.InvalidArgument)
    assert issubclass(teguh.EventTimeout, TimeoutError)
    for signal in (teguh.Suspended, teguh.Cancelled, teguh.LeaseLost):
        assert issubclass(signal, BaseException)
        assert not issubclass(signal, Exception)


def test_errors_carry_data_and_default_messages() -> None:
    err = teguh.TaskNotFound(queue="jobs", task_id="abc")
    assert (err.queue, err.task_id, err.run_id) == ("jobs", "abc", None)
    assert str(err).startswith("No task with this id")
    assert "teguh install" in str(teguh.SchemaNotInstalled())
    timeout = teguh.EventTimeout("late", queue="q", run_id="r")
    assert (str(timeout), timeout.run_id) == ("late", "r")
    signal = teguh.Cancelled(task_id="t")
    assert signal.task_id == "t" and "cancelled" in str(signal)


class FakePgError(psycopg2.DatabaseError):
    """A psycopg2 error carrying a chosen SQLSTATE (psycopg2's own pgcode is read-only)."""

    def __init__(self, message: str, code: str | None) -> None:
        super().__init__(message)
        self._code = code

    @property
    def pgcode(self) -> str | None:  # type: ignore[override]
        return self._code


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("AB001", teguh.Cancelled),
        ("AB002", teguh.LeaseLost),
        ("TG001", teguh.InvalidQueueName),
        ("TG002", teguh.QueueNotFound),
        ("TG003", teguh.TaskNotFound),
        ("TG004", teguh.InvalidArgument),
        ("42P01", teguh.SchemaNotInstalled),
        ("3F000", teguh.SchemaNotInstalled),
    ],
)
def test_sqlstate_mapping(code: str, expected: type) -> None:
    exc = FakePgError("ERROR:  something happened\nCONTEXT:  PL/pgSQL function teguh.x() line 3\n", code)
    mapped = map_db_error(exc, queue="jobs", run_id="r1")
    assert type(mapped) is expected
    assert (mapped.queue, mapped.run_id, mapped.pgcode) == ("jobs", "r1", code)  # type: ignore[attr-defined]
    assert "CONTEXT" not in str(mapped)
    assert "something happened" in str(mapped)


def test_unknown_sqlstates_pass_through() -> None:
    exc = FakePgError("ERROR:  division by zero", "22012")
    assert map_db_error(exc) is exc


def test_lost_connection_classification() -> None:
    assert is_connection_lost(psycopg2.InterfaceError("connection already closed"))
    assert is_connection_lost(psycopg2.OperationalError("server closed the connection unexpectedly"))
    assert isinstance(map_db_error(psycopg2.OperationalError("gone")), teguh.ConnectionLost)
    assert not is_connection_lost(psycopg2.DataError("bad"))
    assert not is_connection_lost(ValueError("no"))


def test_error_message_strips_context() -> None:
    exc = FakePgError('ERROR:  queue "x" not found\nCONTEXT:  SQL statement ...\nPL/pgSQL function', "TG002")
    assert error_message(exc) == 'queue "x" not found'


# -- retry strategies -------------------------------------------------------------


def test_strategies_to_dict() -> None:
    assert teguh.Fixed(60).to_dict() == {"kind": "fixed", "base_seconds": 60}
    assert teguh.Fixed(timedelta(seconds=1.5)).to_dict() == {"kind": "fixed", "base_seconds": 1.5}
    assert teguh.Exponential().to_dict() == {
        "kind": "exponential",
        "base_seconds": 30,
        "factor": 2,
        "max_seconds": None,
        "jitter": 0.1,
    }
    assert teguh.Exponential(10, 1.5, timedelta(hours=1)).to_dict()["max_seconds"] == 3600
    assert teguh.NoRetry().to_dict() == {"kind": "none"}


def test_strategies_are_frozen_and_comparable() -> None:
    assert teguh.Fixed(5) == teguh.Fixed(5.0)
    with pytest.raises(AttributeError):
        teguh.Fixed(5).seconds = 6  # type: ignore[misc]


@pytest.mark.parametrize(
    "make",
    [
        lambda: teguh.Fixed(-1),
        lambda: teguh.Fixed(math.inf),
        lambda: teguh.Fixed("5"),
        lambda: teguh.Fixed(True),
        lambda: teguh.Exponential(factor=0),
        lambda: teguh.Exponential(factor=1001),
        lambda: teguh.Exponential(factor=math.nan),
        lambda: teguh.Exponential(max_seconds=-1),
    ],
)
def test_invalid_strategies(make: Any) -> None:
    with pytest.raises(teguh.InvalidArgument):
        make()


def test_normalize_retry_strategy() -> None:
    assert normalize_retry_strategy(None) is None
    assert normalize_retry_strategy(teguh.Fixed(3)) == {"kind": "fixed", "base_seconds": 3}
    assert normalize_retry_strategy({"kind": "none"}) == {"kind": "none"}
    assert normalize_retry_strategy({"kind": "fixed"}) == {"kind": "fixed", "base_seconds": 60}
    with pytest.raises(teguh.InvalidArgument, match="kind"):
        normalize_retry_strategy({"base_seconds": 3})
    with pytest.raises(teguh.InvalidArgument, match="unknown"):
        normalize_retry_strategy({"kind": "none", "base_seconds": 3})
    with pytest.raises(TypeError):
        normalize_retry_strategy("exponential")


# -- JSON ---------------------------------------------------------------------------


def test_dumps_is_compact_and_keeps_unicode() -> None:
    assert _json.dumps({"a": [1, "é"]}, "f") == '{"a":[1,"é"]}'
    assert _json.dumps(None, "f") == "null"


def test_dumps_rejects_what_jsonb_cannot_hold() -> None:
    with pytest.raises(TypeError, match="params"):
        _json.dumps({"s": {1}}, "params")
    with pytest.raises(teguh.InvalidArgument, match="params"):
        _json.dumps(math.nan, "params")
    circular: list[Any] = []
    circular.append(circular)
    with pytest.raises(teguh.InvalidArgument):
        _json.dumps(circular, "params")
    with pytest.raises(teguh.InvalidArgument, match=r"params\[0\]\['x'\]"):
        _json.dumps([{"x": "\x00"}], "params")


def test_dumps_size_limit() -> None:
    assert _json.DEFAULT_MAX_PAYLOAD_BYTES == 1024 * 1024
    _json.dumps("x" * 100, "f", max_bytes=102)
    with pytest.raises(teguh.PayloadTooLarge, match="103 bytes"):
        _json.dumps("x" * 101, "f", max_bytes=102)
    with pytest.raises(teguh.PayloadTooLarge):  # the limit counts UTF-8 bytes
        _json.dumps("é" * 60, "f", max_bytes=102)
    _json.dumps("x" * 2_000_000, "f", max_bytes=None)


# -- time ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "whole"),
    [(0, 0), (0.001, 1), (0.999, 1), (1, 1), (1.2, 2), (timedelta(milliseconds=1500), 2), (30, 30)],
)
def test_whole_seconds_round_up(value: Any, whole: int) -> None:
    assert _time.to_whole_seconds(value, "x") == whole


def test_duration_validation() -> None:
    with pytest.raises(teguh.InvalidArgument):
        _time.to_whole_seconds(0, "extend_by", positive=True)
    with pytest.raises(teguh.InvalidArgument):
        _time.to_seconds(-1, "d")
    with pytest.raises(teguh.InvalidArgument):
        _time.to_seconds(math.inf, "d")
    with pytest.raises(TypeError):
        _time.to_seconds("5", "d")
    with pytest.raises(TypeError):
        _time.to_seconds(True, "d")
    assert _time.to_seconds(timedelta(seconds=-2), "d", allow_negative=True) == -2


def test_aware_datetimes_only() -> None:
    aware = datetime(2030, 1, 1, tzinfo=timezone.utc)
    assert _time.require_aware(aware, "t") is aware
    with pytest.raises(ValueError, match="timezone-aware"):
        _time.require_aware(datetime(2030, 1, 1), "t")
    with pytest.raises(TypeError):
        _time.require_aware("2030-01-01", "t")


# -- the package ----------------------------------------------------------------------


def test_public_names() -> None:
    for name in teguh.__all__:
        assert hasattr(teguh, name), name
    assert teguh.__version__ == "0.1.0"
    assert any(isinstance(h, logging.NullHandler) for h in logging.getLogger("teguh").handlers)


def test_depth_check_ignores_brackets_in_strings_and_escapes() -> None:
    import json

    from teguh import _json

    tricky = ['\\"[[[[', "]]]]\\", '"{{{{"', "\\\\[", "[", "é[ü{"]
    shallow = [{"k": s, "n": [s, {"x": s}]} for s in tricky] * 100  # many brackets, depth 4
    assert not _json._too_deep(json.dumps(shallow, ensure_ascii=False), 4)
    assert _json._too_deep(json.dumps(shallow, ensure_ascii=False), 3)
    deep: list = []
    inner = deep
    for _ in range(300):
        inner.append("]]]}")
        nxt: list = []
        inner.append(nxt)
        inner = nxt
    text = json.dumps(deep)
    assert _json._too_deep(text, 256)
    assert not _json._too_deep(text, 301)
