"""Say where importing the user's app failed, in one line.

`teguh worker --app opsapp:app` imports the user's module; when that raises,
the bare exception message ("name 'x' is not defined") does not say where.
This module finds the failing line in the user's own code: the last
traceback frame outside the standard library, installed packages, teguh and
importlib's frozen machinery (for a SyntaxError, the location it carries).
It never raises: a traceback it cannot place yields no location.
"""

from __future__ import annotations

import os
import sysconfig
import traceback

_TEGUH_DIR = os.path.dirname(os.path.abspath(__file__))


def _library_dirs() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    keys = ("stdlib", "platstdlib", "purelib", "platlib")
    dirs = {os.path.abspath(paths[key]) for key in keys if key in paths}
    dirs.add(_TEGUH_DIR)
    return tuple(d + os.sep for d in sorted(dirs))


def _is_user_file(filename: str, library_dirs: tuple[str, ...]) -> bool:
    if not filename or filename.startswith("<"):
        return False  # <frozen importlib._bootstrap>, <string>, ...
    return not os.path.abspath(filename).startswith(library_dirs)


def _shown(filename: str) -> str:
    """The path relative to the current directory when it lies inside it."""
    path = os.path.abspath(filename)
    cwd = os.getcwd() + os.sep
    return path[len(cwd) :] if path.startswith(cwd) else path


def user_location(exc: BaseException) -> tuple[str, int] | None:
    """(file, line) of the user's code that raised `exc`, or None when unknown."""
    if isinstance(exc, SyntaxError) and exc.filename and exc.lineno:
        return _shown(exc.filename), exc.lineno
    library_dirs = _library_dirs()
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if _is_user_file(f.filename, library_dirs)]
    if not frames or frames[-1].lineno is None:
        return None
    return _shown(frames[-1].filename), frames[-1].lineno


def describe(exc: BaseException) -> str:
    """One line: `file, line N: Type: message`, or `Type: message` without a location."""
    message = exc.msg if isinstance(exc, SyntaxError) and exc.msg else str(exc)
    first = message.strip().splitlines()[0] if message.strip() else ""
    what = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
    where = user_location(exc)
    return f"{where[0]}, line {where[1]}: {what}" if where else what
