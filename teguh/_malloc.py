"""Caps glibc's malloc arenas in a process that runs a worker.

glibc gives threads their own allocation arenas (up to eight per core), and
memory freed in one arena is not reused by threads allocating in another. A
worker's executor, completer, heartbeat and listener threads allocate and free
small buffers all day, so with many arenas its resident memory creeps up
through fragmentation while nothing leaks. Two arenas keep it flat at no
measurable cost: the threads run Python, so they mostly hold the GIL anyway
(docs/benchmarks.md has the figures).
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys

logger = logging.getLogger("teguh.worker")

DEFAULT_ARENAS = 2
_M_ARENA_MAX = -8  # from glibc's malloc.h


def cap_arenas(arenas: int = DEFAULT_ARENAS) -> bool:
    """Limit glibc to `arenas` malloc arenas for the rest of this process's life.

    Does nothing (and returns False) when `MALLOC_ARENA_MAX` is set, since
    glibc has applied the operator's choice already, or off glibc (musl, macOS).
    Only programs that own their process call this: `teguh worker` does; a
    worker started from your own code leaves your process's allocator alone.
    """
    if os.environ.get("MALLOC_ARENA_MAX") or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    done = bool(mallopt(_M_ARENA_MAX, arenas))
    logger.debug("malloc arenas capped at %d: %s", arenas, done)
    return done
