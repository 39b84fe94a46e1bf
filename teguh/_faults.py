"""Named crash points for fault-injection tests (private; never set in production).

`TEGUH_FAULT=<point>[:<n>]` in a worker's environment makes the process call
`os._exit(137)` the n-th time (default: the first) it passes `<point>`, so a
test can aim at the exact window it wants to prove safe instead of hoping a
random SIGKILL lands there. Points: `after_claim`, `after_step_fn`,
`after_checkpoint_commit`, `before_complete`, `after_complete_commit`,
`before_fire_schedule`, `after_fire_schedule`.

Unset, call sites cost one `is None` test: they read `ARMED` before calling.
"""

from __future__ import annotations

import logging
import os
import sys
import threading

POINTS = frozenset(
    {"after_claim", "after_step_fn", "after_checkpoint_commit", "before_complete", "after_complete_commit"}
    | {"before_fire_schedule", "after_fire_schedule"}  # schedules: around one fire_schedule call
)

EXIT_CODE = 137
"""What a SIGKILLed process reports (128 + 9), so a supervisor treats both alike."""


def _parse(spec: str | None) -> tuple[str, int] | None:
    if not spec:
        return None
    point, _, count = spec.partition(":")
    if point not in POINTS:
        raise ValueError(f"TEGUH_FAULT: unknown point {point!r} (one of {', '.join(sorted(POINTS))})")
    return point, int(count) if count else 1


ARMED: tuple[str, int] | None = _parse(os.environ.get("TEGUH_FAULT"))
"""The armed (point, n), or None: call sites test this before calling `hit`."""

_hits = 0
_lock = threading.Lock()


def hit(point: str) -> None:
    """Count a pass through `point`; on the armed pass, end the process at once."""
    global _hits
    if ARMED is None or ARMED[0] != point:
        return
    with _lock:
        _hits += 1
        fire = _hits == ARMED[1]
    if fire:
        logging.getLogger("teguh.faults").critical("fault point %s reached: exiting now", point)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(EXIT_CODE)
