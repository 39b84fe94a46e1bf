"""SQL text lives in teguh/_sql.py only, and every engine function it names exists.

The rule (after River's "all SQL in the driver's query files"): a module of
`teguh/` sends a statement by naming it in `teguh._sql`, never by writing SQL
text, so changing an engine function's signature is one edit in one module.
The check reads string literals with `ast` (docstrings excluded) and flags
those shaped like SQL: a statement keyword at the start (`select ...`,
`listen ...`), or a call or read of something in the `teguh` schema
(`teguh.fn(`, `from teguh.t_x`).
"""

from __future__ import annotations

import ast
import fnmatch
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "teguh"
SQL_HOME = PACKAGE / "_sql.py"
SCHEMA = PACKAGE / "schema" / "teguh.sql"

# Modules allowed to hold SQL text besides teguh/_sql.py: none. (The engine's
# own SQL lives in teguh/schema/teguh.sql, which is not a Python module.)
NOT_YET_MIGRATED: list[str] = []

# A statement starts with one of these (case-insensitive, after whitespace).
_STATEMENT_START = re.compile(
    r"^\s*("
    r"select\s+(\*|\d|distinct\b|[\w.$\"{}]+\s*(\(|,|::|\bfrom\b|\bas\b|$))"
    r"|with\s+\w+\s+as\s*\(|insert\s+into\s|update\s+\S+\s+set\s|delete\s+from\s"
    r"|(listen|unlisten)\s+(\{\}|\"?[\w$]+\"?)\s*(;|$)|notify\s+(\{\}|\"?[\w$]+\"?)\s*(,|;)"
    r"|set\s+(local\s+|session\s+)?\w+\s*(=|to\s)|reset\s+\w"
    r"|create\s+(table|database|schema|index|unique|or\s+replace|extension|role)\b"
    r"|drop\s+(table|database|schema|index|function|extension|role)\b"
    r"|alter\s+(table|function|database|role|schema)\b"
    r"|grant\s+\w+(\s*,\s*\w+)*\s+on\s|revoke\s+\w+\s"
    r"|truncate\s|vacuum\b|analyze\s|begin\b|commit\b|rollback\b|savepoint\s|do\s+\$"
    r")",
    re.IGNORECASE,
)
# Anywhere in a literal: a call of an engine function, or a read of a teguh table or catalog.
_ENGINE_REFERENCE = re.compile(
    # engine functions are lower case: `teguh.App(` is a class in a message
    r"\bteguh\.([a-z_][a-z0-9_%$]*|\{\})\(|\b(?i:from)\s+(teguh\.|pg_[a-z_]+\b)|\bpg_(notify|advisory_\w+|sleep)\(",
)


def looks_like_sql(text: str) -> bool:
    """Whether a string literal looks like SQL text (a statement or a reference to the engine)."""
    return bool(_STATEMENT_START.match(text) or _ENGINE_REFERENCE.search(text))


def _docstrings(tree: ast.AST) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
        else:
            continue
        # the first statement, and attribute docstrings: a bare string after an assignment
        for i, stmt in enumerate(body):
            if not (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant)):
                continue
            if isinstance(stmt.value.value, str) and (
                i == 0 or isinstance(body[i - 1], (ast.Assign, ast.AnnAssign))
            ):
                ids.add(id(stmt.value))
    return ids


def _literals(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, text) of each string literal; an f-string counts as its text with `{}` for each field."""
    skip = _docstrings(tree)
    found: list[tuple[int, str]] = []
    inside_fstrings: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            parts = []
            for value in node.values:
                inside_fstrings.add(id(value))
                parts.append(value.value if isinstance(value, ast.Constant) else "{}")
            found.append((node.lineno, "".join(str(p) for p in parts)))
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and id(node) not in skip
            and id(node) not in inside_fstrings
        ):
            found.append((node.lineno, node.value))
    return found


def _allowed(relative: str) -> bool:
    return any(fnmatch.fnmatch(relative, pattern) for pattern in NOT_YET_MIGRATED)


def test_no_sql_text_outside_the_sql_module() -> None:
    offences = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(ROOT).as_posix()
        if path == SQL_HOME or _allowed(relative):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=relative)
        offences += [
            f"{relative}:{line}: {text[:80]!r}"
            for line, text in _literals(tree)
            if looks_like_sql(text)
        ]
    assert offences == [], "SQL text belongs in teguh/_sql.py:\n" + "\n".join(offences)


def test_the_detector_flags_statements_and_spares_prose() -> None:
    for sql in [
        "select teguh.version()",
        "  SELECT * from teguh.claim_runs(%s, %s, %s, %s)",
        "listen {}",
        "create database {}",
        "drop database if exists {} with (force)",
        "select set_config('teguh.fake_now', %s, %s)",
        "update teguh.queues set x = 1",
        "the lookup: select t.task_name from teguh.{} t",
        "run teguh.ticker(%s) now",
        "select teguh.{}()",
        "notify {}, 'payload'",
    ]:
        assert looks_like_sql(sql), sql
    for prose in [
        "cannot LISTEN on %s (%s); retrying in %.1f s",
        "LISTEN connection lost (%s); falling back to polling",
        "select a queue with --queue",
        "Retry selected failed or cancelled tasks",
        "Schedule `teguh.ticker` and the cleanup in pg_cron.",
        "notify_done",
        "the teguh schema is not installed in this database: run `teguh install`",
        "set the TEGUH_DSN variable",
        "{} is not a teguh.App (got {})",
        "notify probe",
    ]:
        assert not looks_like_sql(prose), prose


def test_every_engine_function_the_sql_module_names_is_defined_in_the_schema() -> None:
    pattern = r"create or replace function teguh\.([a-z_][a-z0-9_]*)\s*\("
    defined = set(re.findall(pattern, SCHEMA.read_text()))
    tree = ast.parse(SQL_HOME.read_text(encoding="utf-8"))
    named: dict[str, int] = {}
    for line, text in _literals(tree):
        for name in re.findall(r"\bteguh\.([a-z_][a-z0-9_]*)\s*\(", text):
            named.setdefault(name, line)
    assert named, "teguh/_sql.py names no engine function: the pattern is broken"
    missing = {name: line for name, line in named.items() if name not in defined}
    assert missing == {}, f"teguh/_sql.py calls functions teguh/schema/teguh.sql does not define: {missing}"
