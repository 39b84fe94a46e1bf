"""Schedules (periodic tasks): definitions, their validation, and the arithmetic of ticks.

Why it exists: `app.schedule(...)` and `Client.create_schedule(...)` must refuse
a bad definition before anything is written, and every worker must compute
the same ticks for a schedule row, so that the engine's per-tick idempotency
key makes racing workers agree. Ticks are computed here, in Python, with
`cronsim` (see docs/schedules.md for why that library) and `zoneinfo`; the
engine (`teguh.fire_schedule`) checks what it is given and spawns. This
module touches no database: the `Client` calls it.

Import cost: `cronsim` and `zoneinfo` are imported inside the functions that
parse cron expressions and zones, not at the top, because `import teguh`
(every client, every web process that only spawns) imports this module for
`ScheduleInfo` and most programs declare no schedule; the first schedule
pays for them once.

DST: cron expressions are evaluated in the schedule's time zone with cronsim's
rules: a wall time that does not exist that day (the spring gap) fires once,
at the next valid instant; a wall time that occurs twice (the autumn repeat)
fires once, at its first occurrence. Expressions with a wildcard hour field
fire every hour that happens, both repeated hours included.
"""

from __future__ import annotations

import hashlib
import math
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from . import _json, _validate
from ._options import SPAWN_OPTIONS, spawn_options
from ._time import require_aware, to_seconds
from .errors import InvalidArgument

if TYPE_CHECKING:
    from zoneinfo import ZoneInfo

__all__ = ["OVERLAP", "CATCH_UP", "Schedule", "ScheduleInfo", "define"]

OVERLAP = ("allow", "skip")
CATCH_UP = ("skip", "one", "all")

ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
"""The `@hourly`-style aliases, as the 5-field expressions they stand for (cronsim has no aliases)."""

ENGINE_OPTIONS = frozenset({"idempotency_key", "available_at"})
"""Spawn options a schedule sets itself per tick: a schedule may not give them."""

MIN_EVERY = 1.0
"""The shortest `every=` interval, in seconds."""

MAX_GRACE = 60.0
"""A tick fired later than min(MAX_GRACE, half its period) is missed (see `plan`)."""

SCAN_LIMIT = 100_000
"""Ticks looked at when walking a long missed window of a cron schedule before skipping ahead."""

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
"""Where `every=` ticks are anchored without `start_at`: every worker computes the same instants."""


@dataclass(frozen=True)
class ScheduleInfo:
    """One schedule as `Client.list_schedules` returns it.

    `spec` is the cron expression as given, or `every <n>s`; `next_run_at`
    is None once `end_at` has passed; `last_run_at` is when the last tick's
    task (or a trigger's) was spawned, and `last_task_id` that task.
    """

    name: str
    task_name: str
    queue: str
    spec: str
    timezone: str
    next_run_at: datetime | None
    last_run_at: datetime | None
    last_task_id: str | None
    paused: bool


@dataclass(frozen=True)
class Schedule:
    """A validated schedule definition (what `app.schedule` records and workers upsert).

    `queue` None means "the task's queue", resolved by the app when its worker
    starts (the handler may be registered after the schedule).
    """

    name: str
    task_name: str
    cron: str | None
    every: float | None
    params: Any
    timezone: str
    overlap: str
    catch_up: str
    max_catch_up: int
    jitter: float
    start_at: datetime | None
    end_at: datetime | None
    queue: str | None
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def spec(self) -> str:
        """The cron expression, or `every <seconds>s`."""
        return self.cron if self.cron is not None else f"every {self.every:g}s"

    def item(self, queue: str, now: datetime, max_bytes: int | None) -> dict[str, Any]:
        """The JSON object `teguh.put_schedules` takes, with the first tick after `now`."""
        first = next_tick(self, now)
        return {
            "name": self.name,
            "task_name": self.task_name,
            "queue_name": queue,
            "params": self.params,
            "options": self.options,
            "cron": self.cron,
            "every_seconds": self.every,
            "spec": self.spec,
            "timezone": self.timezone,
            "overlap": self.overlap,
            "catch_up": self.catch_up,
            "max_catch_up": self.max_catch_up,
            "jitter": self.jitter,
            "start_at": None if self.start_at is None else self.start_at.isoformat(),
            "end_at": None if self.end_at is None else self.end_at.isoformat(),
            "next_run_at": None if first is None else first.isoformat(),
        }


def define(
    name: str,
    task_name: str,
    *,
    cron: str | None = None,
    every: Any = None,
    params: Any = None,
    timezone: str = "UTC",
    overlap: str = "allow",
    catch_up: str = "one",
    max_catch_up: int = 100,
    jitter: Any = 0,
    start_at: datetime | None = None,
    end_at: datetime | None = None,
    queue: str | None = None,
    max_bytes: int | None = None,
    **options: Any,
) -> Schedule:
    """Validate a schedule definition; raises `InvalidArgument` (a ValueError) naming the problem.

    `options` are spawn options applied to every tick's task (`max_attempts`,
    `priority`, `headers`, ...), except `idempotency_key` and `available_at`,
    which the schedule sets per tick.
    """
    name = _validate.name(name, "schedule name")
    what = f"schedule {name!r}"
    task_name = _validate.name(task_name, f"{what}: task_name")
    if (cron is None) == (every is None):
        raise InvalidArgument(f"{what}: give exactly one of cron= and every=")
    tz = _zone(timezone, what)
    if cron is not None:
        cron = _cron(cron, what, tz)
        every_s = None
    else:
        every_s = to_seconds(every, f"{what}: every")
        if not every_s >= MIN_EVERY or math.isinf(every_s):
            raise InvalidArgument(f"{what}: every must be at least {MIN_EVERY:g} second, not {every!r}")
    if overlap not in OVERLAP:
        raise InvalidArgument(f"{what}: overlap must be one of {', '.join(OVERLAP)}, not {overlap!r}")
    if catch_up not in CATCH_UP:
        raise InvalidArgument(f"{what}: catch_up must be one of {', '.join(CATCH_UP)}, not {catch_up!r}")
    max_catch_up = _validate.integer(max_catch_up, f"{what}: max_catch_up", minimum=1)
    jitter_s = to_seconds(jitter, f"{what}: jitter")
    if jitter_s < 0 or math.isinf(jitter_s):
        raise InvalidArgument(f"{what}: jitter must be >= 0 seconds, not {jitter!r}")
    if start_at is not None:
        start_at = require_aware(start_at, f"{what}: start_at")
    if end_at is not None:
        end_at = require_aware(end_at, f"{what}: end_at")
    if start_at is not None and end_at is not None and end_at <= start_at:
        raise InvalidArgument(f"{what}: end_at must be after start_at")
    if queue is not None:
        queue = _validate.queue_name(queue)
    unknown = sorted(set(options) - SPAWN_OPTIONS)
    if unknown:
        raise InvalidArgument(f"{what}: unknown spawn options: {', '.join(unknown)}")
    fixed = sorted(set(options) & ENGINE_OPTIONS)
    if fixed:
        raise InvalidArgument(f"{what}: {', '.join(fixed)} is set per tick by the schedule; remove it")
    _json.dumps(params, f"{what}: params", max_bytes=max_bytes)
    spawn = spawn_options(f"{what}: ", max_bytes, **options)
    return Schedule(
        name=name,
        task_name=task_name,
        cron=cron,
        every=every_s,
        params=params,
        timezone=timezone,
        overlap=overlap,
        catch_up=catch_up,
        max_catch_up=max_catch_up,
        jitter=jitter_s,
        start_at=start_at,
        end_at=end_at,
        queue=queue,
        options=spawn,
    )


def _zone(name: Any, what: str) -> ZoneInfo:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError  # lazy: see the module docstring

    if not isinstance(name, str) or not name:
        raise InvalidArgument(
            f"{what}: timezone must be an IANA zone name such as 'Europe/Berlin', not {name!r}"
        )
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidArgument(f"{what}: unknown time zone {name!r}") from None


def _cron(expr: Any, what: str, tz: ZoneInfo) -> str:
    from cronsim import CronSim, CronSimError  # lazy: see the module docstring

    if not isinstance(expr, str) or not expr.strip():
        raise InvalidArgument(f"{what}: cron must be a cron expression string, not {expr!r}")
    expr = " ".join(expr.split())
    try:
        CronSim(ALIASES.get(expr.lower(), expr), datetime(2026, 1, 1, tzinfo=tz))
    except CronSimError as exc:
        raise InvalidArgument(f"{what}: invalid cron expression {expr!r} ({exc})") from None
    return expr


# -- ticks ---------------------------------------------------------------------


def ticks_after(
    cron: str | None,
    every: float | None,
    tz_name: str,
    start_at: datetime | None,
    end_at: datetime | None,
    after: datetime,
) -> Iterator[datetime]:
    """The schedule's ticks strictly after `after`, in order, within `start_at`..`end_at` (aware, UTC)."""
    if start_at is not None and after < start_at:
        after = start_at - timedelta(microseconds=1)
    if every is not None:
        ticks = _every_ticks(every, start_at or EPOCH, after)
    else:
        assert cron is not None
        from zoneinfo import ZoneInfo  # lazy: see the module docstring

        from cronsim import CronSim

        tz = ZoneInfo(tz_name)
        ticks = (
            t.astimezone(timezone.utc) for t in CronSim(ALIASES.get(cron.lower(), cron), after.astimezone(tz))
        )
    for tick in ticks:
        if end_at is not None and tick > end_at:
            return
        yield tick


def _every_ticks(every: float, anchor: datetime, after: datetime) -> Iterator[datetime]:
    # integer microseconds: every worker gets the same instants, with no float drift
    period = max(1, round(every * 1_000_000))
    elapsed = (after - anchor) // timedelta(microseconds=1)
    k = 0 if elapsed < 0 else elapsed // period + 1
    while True:
        yield (anchor + timedelta(microseconds=k * period)).astimezone(timezone.utc)
        k += 1


def next_tick(schedule: Schedule, after: datetime) -> datetime | None:
    """The first tick of `schedule` strictly after `after`, or None when `end_at` has passed."""
    return next(
        ticks_after(
            schedule.cron, schedule.every, schedule.timezone, schedule.start_at, schedule.end_at, after
        ),
        None,
    )


def jitter_offset(name: str, tick: datetime, jitter: float) -> float:
    """A delay in [0, jitter) seconds for one tick, the same in every worker (a hash, not a random draw)."""
    if jitter <= 0:
        return 0.0
    digest = hashlib.sha256(f"{name}|{tick.isoformat()}".encode()).digest()
    return jitter * int.from_bytes(digest[:8], "big") / 2**64


def plan(row: Mapping[str, Any], now: datetime) -> tuple[list[dict[str, str]], datetime | None]:
    """What a due schedule row fires at `now`: the ticks to spawn (JSON objects) and the next tick.

    `row` holds the columns of `teguh.due_schedules`. The due ticks are those
    in [next_run_at, now]. The latest is *on time* when it is at most
    min(60 s, half the gap to the following tick) late; the others (and a
    late latest one) are *missed*, a window like a downtime, and `catch_up`
    decides: "skip" fires only the on-time tick, "one" fires one task (the
    latest tick) for the whole window, "all" fires every missed tick (the
    latest `max_catch_up` of them) plus the on-time one.
    """
    first: datetime = row["next_run_at"]
    every = row["every_seconds"]
    start = first - timedelta(microseconds=1)
    if every is not None:
        # only the last max_catch_up + 1 ticks can fire: start there, not at a week-old tick
        start = max(start, now - timedelta(seconds=every * (row["max_catch_up"] + 2)))
    window = (row["cron"], every, row["timezone"], row["start_at"], row["end_at"])
    ticks = ticks_after(*window, start)
    keep: deque[datetime] = deque(maxlen=row["max_catch_up"] + 1)
    following: datetime | None = None
    scanned = 0
    while True:
        tick = next(ticks, None)
        if tick is None or tick > now:
            following = tick
            break
        keep.append(tick)
        scanned += 1
        if scanned == SCAN_LIMIT:
            # a long window of a fine-grained cron: only its last ticks can fire, so skip ahead
            ticks = ticks_after(*window, max(tick, now - timedelta(days=1)))
    due = list(keep)
    if not due:
        return [], following
    latest = due[-1]
    gap = (following - latest).total_seconds() if following is not None else MAX_GRACE * 2
    on_time = (now - latest).total_seconds() <= min(MAX_GRACE, gap / 2)
    missed = due[:-1] if on_time else due
    catch_up = row["catch_up"]
    if catch_up == "skip":
        fire = [latest] if on_time else []
    elif catch_up == "one":
        fire = [latest]
    else:
        fire = missed[-row["max_catch_up"] :] + ([latest] if on_time else [])
    name, jitter = row["name"], float(row["jitter"] or 0)
    items = []
    for tick in fire:
        item = {"scheduled_for": tick.isoformat()}
        delay = jitter_offset(name, tick, jitter)
        if delay > 0:
            item["available_at"] = (tick + timedelta(seconds=delay)).isoformat()
        items.append(item)
    return items, following


def info(row: Mapping[str, Any]) -> ScheduleInfo:
    """A `teguh.list_schedules` row as a `ScheduleInfo`."""
    last = row["last_task_id"]
    return ScheduleInfo(
        name=row["name"],
        task_name=row["task_name"],
        queue=row["queue_name"],
        spec=row["spec"],
        timezone=row["timezone"],
        next_run_at=row["next_run_at"],
        last_run_at=row["last_run_at"],
        last_task_id=None if last is None else str(last),
        paused=bool(row["paused"]),
    )
