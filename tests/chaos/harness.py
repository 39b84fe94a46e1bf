"""The fault-injection harness: ledger, invariants and a worker supervisor.

* `install_ledger(dsn)` creates `executions` (every handler and step
  execution, written by `chaos_app.record` over its own autocommit
  connection), `effects` (one row per checkpoint insert into `c_jobs`, written
  by a trigger inside the checkpoint's own transaction: committed effects
  only) and `completions` (one row per transition of a task to `completed`,
  written by a trigger inside the completion's transaction).
* `invariants(dsn)` counts every violation; a healthy run has all zeros.
* `Supervisor` runs N `chaos_app.py` worker processes and restarts any that
  exits, as systemd or Kubernetes would.

Used by the tests here and by bench/soak.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg2
from _support.polling import eventually

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
Q = "jobs"
TERMINAL = ("completed", "failed", "cancelled")

LEDGER_SQL = """
create table if not exists executions (
    id bigserial primary key,
    task_id uuid not null,
    step text not null,
    run_id uuid not null,
    attempt int not null,
    pid int not null,
    at timestamptz not null default clock_timestamp()
);
create table if not exists effects (
    id bigserial primary key,
    task_id uuid not null,
    step text not null,
    run_id uuid,
    state jsonb,
    at timestamptz not null default clock_timestamp()
);
create table if not exists completions (
    id bigserial primary key,
    task_id uuid not null,
    run_id uuid,
    result jsonb,
    at timestamptz not null default clock_timestamp()
);
-- the triggers fire inside teguh's functions, whose search_path is pinned to teguh
create or replace function chaos_effect() returns trigger language plpgsql
  set search_path = public, pg_catalog as $$
begin
  insert into effects (task_id, step, run_id, state)
  values (new.task_id, new.checkpoint_name, new.owner_run_id, new.state);
  return null;
end $$;
create or replace function chaos_completion() returns trigger language plpgsql
  set search_path = public, pg_catalog as $$
begin
  insert into completions (task_id, run_id, result) values (new.task_id, new.last_run_id, new.result);
  return null;
end $$;
drop trigger if exists chaos_effect on teguh.c_jobs;
create trigger chaos_effect after insert on teguh.c_jobs
  for each row execute function chaos_effect();
drop trigger if exists chaos_completion on teguh.t_jobs;
create trigger chaos_completion after update of state on teguh.t_jobs
  for each row when (new.state = 'completed' and old.state is distinct from 'completed')
  execute function chaos_completion();
"""

INVARIANTS = {
    # a task is completed at most once
    "duplicate_completions": "select count(*) from (select task_id from completions"
    " group by task_id having count(*) > 1) x",
    # a checkpoint is committed at most once per (task, step)
    "duplicate_effects": "select count(*) from (select task_id, step from effects"
    " group by task_id, step having count(*) > 1) x",
    # a step body that ran after its checkpoint committed (its ledger id is later
    # than the committed execution's) re-ran a committed step
    "reexecuted_committed_steps": "select count(*) from executions e join effects f"
    " on f.task_id = e.task_id and f.step = e.step and e.step not like '$%'"
    " where jsonb_typeof(f.state) = 'number' and e.id > (f.state)::bigint",
    # the stored result is exactly the committed step executions
    "result_not_committed_steps": "select count(*) from teguh.t_jobs t where t.state = 'completed'"
    " and t.task_name = 'steps' and t.result->'steps' is distinct from (select coalesce(jsonb_agg(f.state"
    " order by f.step), '[]') from effects f where f.task_id = t.task_id)",
    "live_lease_on_terminal_task": "select count(*) from teguh.r_jobs r join teguh.t_jobs t"
    " using (task_id) where t.state in ('completed', 'failed', 'cancelled')",
    "ready_row_of_terminal_task": "select count(*) from teguh.p_jobs p join teguh.t_jobs t"
    " using (task_id) where t.state in ('completed', 'failed', 'cancelled')",
    "completed_without_completion_row": "select count(*) from teguh.t_jobs t where t.state = 'completed'"
    " and not exists (select 1 from completions c where c.task_id = t.task_id)",
}


def connect(dsn: str) -> Any:
    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    return conn


def query(dsn: str, sql: str, *args: Any) -> list[tuple]:
    """Run one statement on a short-lived connection and return its rows."""
    conn = connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute(sql, args or None)
            return cur.fetchall() if cur.description else []
    finally:
        conn.close()


def value(dsn: str, sql: str, *args: Any) -> Any:
    rows = query(dsn, sql, *args)
    return rows[0][0] if rows else None


def install_ledger(dsn: str) -> None:
    """Create queue `jobs`, the ledger tables and their triggers."""
    query(dsn, "select teguh.create_queue(%s)", Q)
    query(dsn, LEDGER_SQL)


def invariants(dsn: str) -> dict[str, int]:
    """Violations of each invariant (all zero when nothing was lost or duplicated)."""
    return {name: value(dsn, sql) for name, sql in INVARIANTS.items()}


def states(dsn: str) -> dict[str, int]:
    return dict(query(dsn, "select state, count(*) from teguh.t_jobs group by state"))


def not_terminal(dsn: str) -> int:
    return value(dsn, "select count(*) from teguh.t_jobs where state not in %s", TERMINAL)


def executions(dsn: str, task_id: str | None = None) -> list[tuple[str, int]]:
    """`(step, attempt)` of the ledger, in execution order."""
    if task_id is None:
        return query(dsn, "select step, attempt from executions order by id")
    return query(dsn, "select step, attempt from executions where task_id = %s order by id", task_id)


def spawn_steps(dsn: str, count: int, *, n: int = 3, seconds: float = 0.0, **options: Any) -> list[str]:
    """Spawn `count` "steps" tasks in batches; returns their ids."""
    ids: list[str] = []
    while len(ids) < count:
        k = min(500, count - len(ids))
        items = [{"task_name": "steps", "params": {"n": n, "seconds": seconds}, **options}] * k
        rows = query(dsn, "select task_id::text from teguh.spawn_tasks(%s, %s::jsonb)", Q, json.dumps(items))
        ids.extend(r[0] for r in rows)
    return ids


def wait_until(
    check: Callable[[], Any], timeout: float, interval: float = 0.1, what: str | Callable[[], str] = ""
) -> Any:
    """`_support.polling.eventually` with a required timeout and a 0.1 s interval.

    `what` describes the wait in the error; a callable is called only then, so
    a log it reads is the log at the failure, not at the start of the wait.
    """
    return eventually(check, timeout, interval, what)


class WorkerProcess:
    """One `chaos_app.py` worker subprocess, logging to a file."""

    def __init__(self, dsn: str, options: dict[str, Any], log_path: Path, env: dict[str, str] | None = None):
        self.log_path = log_path
        self._log = open(log_path, "ab")  # noqa: SIM115 (closed in wait())
        full_env = {**os.environ, "PYTHONPATH": str(REPO)}
        full_env.pop("TEGUH_FAULT", None)
        full_env.update(env or {})
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "chaos_app.py"), dsn, json.dumps(options)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=full_env,
            cwd=str(REPO),
        )
        self.pid = self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            os.kill(self.pid, sig)

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        finally:
            if self.proc.returncode is not None:
                self._log.close()

    def kill(self) -> None:
        """SIGKILL if still running, and reap."""
        if self.alive():
            os.kill(self.pid, signal.SIGKILL)
        self.wait(15)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stacks(self) -> str:
        """The log after the process printed every thread's stack (SIGUSR1), for a hang's report."""
        if self.alive():
            size = self.log_path.stat().st_size
            os.kill(self.pid, signal.SIGUSR1)
            with contextlib.suppress(AssertionError):
                wait_until(lambda: self.log_path.stat().st_size > size, 5)
        return self.log()


class Supervisor:
    """Keeps `n` worker processes running: any that exits is started again.

    Args:
        dsn: the workers' database.
        n: how many processes.
        options: `Worker` options (JSON) for every process.
        log_dir: where each process writes its log.
        env: extra environment for process i (e.g. a `TEGUH_FAULT`), or None.
    """

    def __init__(
        self,
        dsn: str,
        n: int,
        options: dict[str, Any],
        log_dir: Path,
        env: Callable[[int, int], dict[str, str]] | None = None,
    ) -> None:
        self.dsn = dsn
        self.options = options
        self.log_dir = log_dir
        self.env = env or (lambda slot, generation: {})
        self.slots: list[WorkerProcess | None] = [None] * n
        self.generation = [0] * n
        self.exits: list[int] = []
        self.kills = 0
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._watch, name="supervisor", daemon=True)

    def _start(self, slot: int) -> None:
        gen = self.generation[slot]
        self.generation[slot] += 1
        self.slots[slot] = WorkerProcess(
            self.dsn,
            {**self.options, "worker_id": f"w{slot}.{gen}"},
            self.log_dir / f"worker-{slot}.log",
            self.env(slot, gen),
        )

    def start(self) -> Supervisor:
        with self._lock:
            for slot in range(len(self.slots)):
                self._start(slot)
        self._thread.start()
        return self

    def _watch(self) -> None:
        while not self._stopping.wait(0.1):
            with self._lock:
                for slot, wp in enumerate(self.slots):
                    if wp is not None and not wp.alive():
                        self.exits.append(wp.wait(5))
                        if not self._stopping.is_set():
                            self._start(slot)

    @property
    def restarts(self) -> int:
        return sum(self.generation) - len(self.slots)

    def pids(self) -> list[int]:
        with self._lock:
            return [wp.pid for wp in self.slots if wp is not None and wp.alive()]

    def kill_random(self, rng: random.Random, sig: int = signal.SIGKILL) -> int | None:
        """Send `sig` to one running worker; returns its pid."""
        with self._lock:
            alive = [wp for wp in self.slots if wp is not None and wp.alive()]
            if not alive:
                return None
            victim = rng.choice(alive)
            victim.signal(sig)
            self.kills += 1
            return victim.pid

    def stop(self, timeout: float = 30.0) -> list[int]:
        """SIGTERM every worker, SIGKILL what outlives `timeout`; returns their exit codes."""
        self._stopping.set()
        self._thread.join(10)
        codes = []
        with self._lock:
            procs = [wp for wp in self.slots if wp is not None]
        for wp in procs:
            wp.signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for wp in procs:
            try:
                codes.append(wp.wait(max(0.1, deadline - time.monotonic())))
            except subprocess.TimeoutExpired:
                wp.kill()
                codes.append(-9)
        return codes

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-4000:]}"
            for p in sorted(self.log_dir.glob("*.log"))
        )
