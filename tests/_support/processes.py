"""Worker processes for tests: start a test app's script as a subprocess, read its log, stop it by pid.

The folders whose tests need real processes (a SIGKILL, several workers
racing) each have a small app script runnable as `python SCRIPT DSN
OPTIONS_JSON`; this module is the one way to launch them. Each process
writes stdout and stderr to a log file of its own under the test's
`tmp_path` (`process_log` reads it for assertion messages), and every
process a test started and left running is stopped by pid at teardown:
SIGKILL by default, or SIGTERM first with `grace` seconds to exit cleanly.

The scripts see the repository and `tests/` on `PYTHONPATH`, so they import
`teguh` from this checkout and `_support` like the tests do.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

TESTS = Path(__file__).resolve().parent.parent
REPO = TESTS.parent

__all__ = ["REPO", "TESTS", "WorkerProcesses", "process_log", "process_logs", "worker_processes"]


class WorkerProcesses:
    """The subprocesses one test runs of one script; `stop_all()` ends those still alive.

    Args:
        script: the app script (`tests/<folder>/<name>.py`).
        logs: the folder for the log files (the test's `tmp_path`).
        grace: None: SIGKILL at teardown; else SIGTERM, then SIGKILL after `grace` seconds.
    """

    def __init__(self, script: Path, logs: Path, *, grace: float | None = None) -> None:
        self.script = script
        self.logs = logs
        self.grace = grace
        self.procs: list[subprocess.Popen] = []

    def start(
        self, *args: str, env: Mapping[str, str | None] | None = None, log_name: str | None = None
    ) -> subprocess.Popen:
        """Run `python SCRIPT ARGS...`; `env` adds variables to this process's (None removes one).

        The log is `<log_name or worker-N>.log` in `logs`; the process carries
        it as `.log_path` (and its open file as `.log_file`).
        """
        environ = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(TESTS)])}
        for name, value in (env or {}).items():
            if value is None:
                environ.pop(name, None)
            else:
                environ[name] = value
        path = self.logs / f"{log_name or f'worker-{len(self.procs)}'}.log"
        log = open(path, "wb")  # noqa: SIM115 (closed by stop_all)
        try:
            proc = subprocess.Popen(
                [sys.executable, str(self.script), *args],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=environ,
                cwd=str(REPO),
            )
        except BaseException:
            log.close()
            raise
        proc.log_file = log  # type: ignore[attr-defined]
        proc.log_path = path  # type: ignore[attr-defined]
        self.procs.append(proc)
        return proc

    def start_with_options(self, dsn: str, **options: Any) -> subprocess.Popen:
        """Run `python SCRIPT DSN OPTIONS_JSON`, the command line of the test apps' `main`."""
        return self.start(dsn, json.dumps(options))

    def stop_all(self) -> None:
        """Stop (by pid) every process still running, wait for each, close the logs."""
        for proc in self.procs:
            if proc.poll() is None:
                if self.grace is None:
                    os.kill(proc.pid, signal.SIGKILL)
                else:
                    os.kill(proc.pid, signal.SIGTERM)
                    try:
                        proc.wait(self.grace)
                    except subprocess.TimeoutExpired:
                        os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
            proc.log_file.close()  # type: ignore[attr-defined]


@contextlib.contextmanager
def worker_processes(script: Path, logs: Path, *, grace: float | None = None) -> Iterator[WorkerProcesses]:
    """`WorkerProcesses` for the length of the block (a fixture's yield): all stopped at its end."""
    launcher = WorkerProcesses(script, logs, grace=grace)
    try:
        yield launcher
    finally:
        launcher.stop_all()


def process_log(proc: subprocess.Popen) -> str:
    """What a process started by `WorkerProcesses` wrote so far (for assertion messages)."""
    return Path(proc.log_path).read_text(errors="replace")  # type: ignore[attr-defined]


def process_logs(procs: list[subprocess.Popen]) -> str:
    """What several processes wrote, one after the other."""
    return "\n".join(process_log(proc) for proc in procs)
