"""The wait-event aggregation of bench/scale.py (the run itself takes minutes: not for CI)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SCALE = Path(__file__).resolve().parent.parent / "bench" / "scale.py"


@pytest.fixture(scope="module")
def scale():
    spec = importlib.util.spec_from_file_location("bench_scale_under_test", SCALE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_wait_class_tells_cpu_from_idle_and_waits(scale):
    assert scale.wait_class("active", None) == "CPU"
    assert scale.wait_class("idle", "Client") == "Client"
    assert scale.wait_class("idle in transaction", "Client") == "Client"
    assert scale.wait_class("active", "LWLock") == "LWLock"
    assert scale.wait_class("active", "Lock") == "Lock"
    assert scale.wait_class("active", "IO") == "IO"
    assert scale.wait_class("active", "IPC") == "other"
    # a backend between states reports no event and is not running a statement
    assert scale.wait_class("idle", None) == "Client"


def test_aggregate_waits_shares_busy_backends_and_top_events(scale):
    samples = [
        [("active", None, None), ("idle", "Client", "ClientRead"), ("active", "IO", "WALSync")],
        [("active", None, None), ("active", "LWLock", "WALWrite"), ("active", "IO", "WALSync")],
    ]
    out = scale.aggregate_waits(samples)
    assert out["samples"] == 2
    assert out["shares"] == pytest.approx(
        {"CPU": 2 / 6, "LWLock": 1 / 6, "Lock": 0.0, "IO": 2 / 6, "Client": 1 / 6, "other": 0.0}
    )
    assert sum(out["shares"].values()) == pytest.approx(1.0)
    # 5 of 6 backend samples were not waiting on the client, over 2 instants
    assert out["busy"] == pytest.approx(2.5)
    assert out["events"][0] == ("IO:WALSync", pytest.approx(2 / 6))
    assert ("LWLock:WALWrite", pytest.approx(1 / 6)) in out["events"]
    assert all(not event.startswith("Client") for event, _ in out["events"])


def test_aggregate_waits_of_no_samples_is_all_zero(scale):
    out = scale.aggregate_waits([])
    assert out["busy"] == 0.0
    assert set(out["shares"].values()) == {0.0}
    assert out["events"] == []
