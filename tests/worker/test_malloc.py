"""`teguh worker` caps glibc's malloc arenas in its own process, unless the operator set them."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

PROBE = """
import os, sys
from teguh import _malloc
print(_malloc.cap_arenas())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_cap_arenas_applies_once_and_defers_to_malloc_arena_max() -> None:
    env_free = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    capped = subprocess.run([sys.executable, "-c", PROBE], env=env_free, capture_output=True, text=True)
    assert capped.stdout.strip() == "True", capped.stderr
    env = {**env_free, "MALLOC_ARENA_MAX": "4"}
    operator = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True)
    assert operator.stdout.strip() == "False", operator.stderr


TRIM_PROBE = """
import threading, time
from teguh import _malloc
assert _malloc.tune_worker_process(trim_interval=0.01)
names = [t.name for t in threading.enumerate()]
time.sleep(0.1)  # let the trimmer run a few times: it must not crash the process
print("teguh-malloc-trim" in names, threading.active_count())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_tune_worker_process_starts_a_trimmer_that_runs_harmlessly() -> None:
    done = subprocess.run([sys.executable, "-c", TRIM_PROBE], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "2"], done.stdout
