"""Group commit of step checkpoints written at the same time by different threads.

A durable step costs one commit: its checkpoint must be on disk before the
next step runs. A worker runs many tasks at once, and their steps arrive
together; written one by one, each pays a round trip, a statement and a
commit (an fsync, shared at best by PostgreSQL's own group commit), which is
most of what a step costs. This module merges them, the way the worker's
completion flush merges completions: while one checkpoint write is in
flight, the steps that arrive queue up, and when it returns they are written
together by `set_task_checkpoint_states` in one statement and one commit.

Nothing waits on purpose: a step that finds no write in flight writes at
once, alone (the single statement of old), so a lone task pays no delay and
a busy worker batches as much as its concurrency gives. Each caller still
returns only once its own checkpoint has committed (or raises), so the
guarantees of `TaskContext.step` are those of a single write. What the batch
cannot write (a run that lost its lease, a lease row another transaction
holds, any error of the batch statement) is written again alone through the
single statement, which raises exactly what it always raised; the batch never
waits for a row lock, so it cannot join a deadlock.

Leadership passes from thread to thread (the first queued step writes the
batch it heads), so no thread of its own is needed and a caller is never held
to write other threads' steps after its own is done.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

from .errors import TeguhError

Item = tuple[str, str, str, str]
"""(task_id, step_name, state_json, owner_run_id) of one checkpoint."""

WriteOne = Callable[[str, str, str, str, str, "int | None"], None]
"""Writes one checkpoint: (queue, task_id, step_name, state_json, owner_run_id, extend); raises its errors."""

WriteMany = Callable[[str, Sequence[Item], "int | None"], list[bool]]
"""Writes many checkpoints of one queue: per item, True when written under its lease."""


class _Pending:
    """One caller's checkpoint, waiting for a batch (or for the lead of one)."""

    __slots__ = ("done", "error", "item", "lead")

    def __init__(self, item: Item) -> None:
        self.item = item
        self.done = threading.Event()
        self.error: BaseException | None = None
        self.lead: list[_Pending] | None = None  # set when this caller must write this batch


class _Lane:
    """The writes of one (queue, extend): how many are in flight, and who waits."""

    __slots__ = ("in_flight", "waiting")

    def __init__(self) -> None:
        self.in_flight = 0
        self.waiting: list[_Pending] = []


class CheckpointBatcher:
    """Writes checkpoints for concurrent callers, merging those that arrive during a write."""

    def __init__(self, write_one: WriteOne, write_many: WriteMany) -> None:
        self._write_one = write_one
        self._write_many = write_many
        self._lock = threading.Lock()
        self._lanes: dict[tuple[str, int | None], _Lane] = {}

    def write(self, queue: str, item: Item, extend: int | None) -> None:
        """Store one checkpoint; returns once it committed, raises what the single write raises."""
        key = (queue, extend)
        with self._lock:
            lane = self._lanes.get(key)
            if lane is None:
                lane = self._lanes[key] = _Lane()
            # one write of a lane in flight at a time (two measured slower: more commits, more CPU)
            if lane.in_flight == 0:
                lane.in_flight += 1
                me = None
            else:
                me = _Pending(item)
                lane.waiting.append(me)
        if me is None:
            # nothing in flight: write alone, at once
            try:
                self._write_one(queue, *item, extend)
            finally:
                self._pass_on(lane)
            return
        me.done.wait()
        if me.lead is not None:
            try:
                self._write_batch(queue, me.lead, extend)
            finally:
                self._pass_on(lane)
        if me.error is not None:
            raise me.error

    def _pass_on(self, lane: _Lane) -> None:
        """Hand the lane to the first waiting caller, with everyone queued behind it, or free it."""
        with self._lock:
            batch, lane.waiting = lane.waiting, []
            if not batch:
                lane.in_flight -= 1
                return
        head = batch[0]
        head.lead = batch
        head.done.set()

    def _write_batch(self, queue: str, batch: list[_Pending], extend: int | None) -> None:
        """Write `batch` (its head is the calling thread), releasing each other member once it is settled."""
        head = batch[0]
        settled: set[int] = set()

        def release(p: _Pending) -> None:
            settled.add(id(p))
            if p is not head:
                p.done.set()

        try:
            redo = batch
            if len(batch) > 1:
                try:
                    oks = self._write_many(queue, [p.item for p in batch], extend)
                except Exception:  # any failure of the batch: each item alone says what it is
                    oks = [False] * len(batch)
                redo = []
                for p, ok in zip(batch, oks, strict=True):
                    if ok:
                        release(p)  # stored: its caller goes on at once
                    else:
                        redo.append(p)
            for p in redo:
                try:
                    self._write_one(queue, *p.item, extend)
                except BaseException as exc:  # to its own caller (LeaseLost, Cancelled: BaseExceptions)
                    p.error = exc
                release(p)
        finally:
            for p in batch:
                if id(p) not in settled:  # interrupted before its write: it must not pass as stored
                    p.error = TeguhError("the checkpoint write was interrupted; the step is not stored")
                    release(p)
