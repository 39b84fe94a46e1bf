"""Worker subprocesses and what they share with the harness.

Each peer's worker runs in its own process (`python -m bench.peers.<peer>
worker ...`) so its CPU and memory can be read from /proc. The protocol is a
barrier: the worker imports and sets itself up, prints `ready`, and waits for
a line on stdin before it starts its run loop, so several workers start at
once and import time is never measured. The harness stops a worker by its pid:
SIGTERM, then SIGKILL if it has not exited in time.

`Stamps` is a file of float64 slots mapped into memory: a handler writes
`time.time()` into slot `i` when job `i` starts, and the harness reads them.
"""

from __future__ import annotations

import contextlib
import itertools
import mmap
import os
import select
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

_roots = [REPO]
"""Where workers import from, first match wins: a snapshot of teguh (see `import_root`), then the repo."""

_log_numbers = itertools.count(1)


def import_root(root: Path) -> None:
    """Make workers import teguh from `root` (a copy of the package) rather than from the repo."""
    _roots.insert(0, root)


class WorkerProcess:
    """One worker subprocess; `stop()` it in `finally`."""

    def __init__(self, module: str, args: list[str], log_path: Path) -> None:
        self.log_path = log_path
        self.log = open(log_path, "ab")  # noqa: SIM115 (closed in stop())
        # `python -m` puts its working directory first on sys.path: run it in the first root
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(map(str, _roots))}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", module, "worker", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            cwd=_roots[0],
            env=env,
        )
        self.pid = self.proc.pid

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.poll() is not None:
                raise RuntimeError(f"worker {self.pid} did not get ready; see {self.log_path}")
            readable, _, _ = select.select([self.proc.stdout], [], [], left)
            if readable:
                line = self.proc.stdout.readline().decode().strip()
                if line == "ready":
                    return
                if not line:
                    raise RuntimeError(f"worker {self.pid} exited before ready; see {self.log_path}")

    def go(self) -> None:
        self.proc.stdin.write(b"go\n")
        self.proc.stdin.flush()

    def stop(self, timeout: float = 20.0) -> None:
        if self.proc.poll() is None:
            os.kill(self.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            with contextlib.suppress(OSError):
                stream.close()
        self.log.close()


def start_workers(module: str, args: list[str], count: int, log_dir: Path) -> list[WorkerProcess]:
    """Start `count` workers and wait until all are ready (not yet running)."""
    workers: list[WorkerProcess] = []
    try:
        for i in range(count):
            name = f"{next(_log_numbers):03d}-{module.rsplit('.', 1)[-1]}-{i}.log"
            workers.append(WorkerProcess(module, args, log_dir / name))
        for worker in workers:
            worker.wait_ready()
    except BaseException:
        stop_workers(workers)
        raise
    return workers


def stop_workers(workers: list[WorkerProcess]) -> None:
    for worker in workers:
        worker.stop()


# -- the worker side ------------------------------------------------------------


def barrier() -> None:
    """Called by a worker once it is set up: announce it and wait for the go."""
    print("ready", flush=True)
    sys.stdin.readline()


class Stamps:
    """`count` float64 slots in a memory-mapped file, 0.0 until written."""

    SLOT = struct.Struct("d")

    def __init__(self, path: str | Path, count: int | None = None) -> None:
        if count is not None:
            with open(path, "wb") as f:
                f.write(b"\0" * (self.SLOT.size * count))
        self._file = open(path, "r+b")  # noqa: SIM115 (closed in close())
        self._map = mmap.mmap(self._file.fileno(), 0)
        self.count = len(self._map) // self.SLOT.size

    def mark(self, i: int) -> None:
        self.SLOT.pack_into(self._map, i * self.SLOT.size, time.time())

    def read(self) -> list[float]:
        return [v for (v,) in self.SLOT.iter_unpack(self._map)]

    def close(self) -> None:
        self._map.close()
        self._file.close()
