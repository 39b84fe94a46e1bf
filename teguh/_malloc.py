"""Keeps a worker process's memory flat: fewer glibc malloc arenas, freed memory returned.

glibc gives threads their own allocation arenas (up to eight per core), and
memory freed in one arena is not reused by threads allocating in another. A
worker's executor, completer, heartbeat and listener threads allocate and free
small buffers all day, so with many arenas its resident memory creeps up
through fragmentation while nothing leaks. Two arenas keep it flat at no
measurable cost: the threads run Python, so they mostly hold the GIL anyway
(docs/benchmarks.md has the figures). And glibc keeps freed memory below the
top of its heaps: a burst (a large claim batch, a big result) raises the
resident size for good unless `malloc_trim` hands the free pages back.
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys
import threading
import time

logger = logging.getLogger("teguh.worker")

DEFAULT_ARENAS = 2
TRIM_INTERVAL = 60.0
"""Seconds between two `malloc_trim(0)` calls of a worker process."""
_M_ARENA_MAX = -8  # from glibc's malloc.h


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt, libc.malloc_trim  # noqa: B018 (glibc has both; musl neither)
    except (OSError, AttributeError):
        return None
    return libc


def tune_worker_process(arenas: int = DEFAULT_ARENAS, trim_interval: float = TRIM_INTERVAL) -> bool:
    """Cap the arenas and start a daemon thread returning freed memory every `trim_interval` s.

    For programs that own their process (`teguh worker`); returns False off glibc.
    """
    libc = _libc()
    if libc is None:
        return False
    cap_arenas(arenas)

    def trim() -> None:
        while True:
            time.sleep(trim_interval)  # a period, not synchronisation
            libc.malloc_trim(0)

    threading.Thread(target=trim, name="teguh-malloc-trim", daemon=True).start()
    return True


def cap_arenas(arenas: int = DEFAULT_ARENAS) -> bool:
    """Limit glibc to `arenas` malloc arenas for the rest of this process's life.

    Does nothing (and returns False) when `MALLOC_ARENA_MAX` is set, since
    glibc has applied the operator's choice already, or off glibc (musl, macOS).
    Only programs that own their process call this: `teguh worker` does; a
    worker started from your own code leaves your process's allocator alone.
    """
    libc = _libc()
    if os.environ.get("MALLOC_ARENA_MAX") or libc is None:
        return False
    done = bool(libc.mallopt(_M_ARENA_MAX, arenas))
    logger.debug("malloc arenas capped at %d: %s", arenas, done)
    return done
