"""The worker package's shape: what it exports and what it must not import."""

from __future__ import annotations

import ast
from pathlib import Path

import teguh.worker

PACKAGE = Path(teguh.worker.__file__).parent


def _imported_modules(path: Path) -> set[str]:
    """Absolute names of the modules `path` imports (relative imports resolved)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = "teguh.worker".rsplit(".", node.level - 1)[0] if node.level else ""
            module = ".".join(part for part in (base, node.module or "") if part)
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def test_the_worker_does_not_import_the_app() -> None:
    # App.worker() builds workers; the worker uses the WorkerApp protocol instead (no import cycle)
    for path in sorted(PACKAGE.glob("*.py")):
        assert "teguh.app" not in _imported_modules(path), f"{path.name} imports teguh.app"


def test_names_importable_before_the_package_still_are() -> None:
    from teguh import heartbeat

    for name in (
        "Worker",
        "EXIT_STUCK",
        "default_worker_id",
        "DEFAULT_CONCURRENCY",
        "DEFAULT_CLAIM_TIMEOUT",
        "DEFAULT_POLL_INTERVAL",
        "DEFAULT_SHUTDOWN_TIMEOUT",
        "DEFAULT_BACKOFF_BASE",
        "DEFAULT_BACKOFF_MAX",
        "MAX_HEARTBEAT_INTERVAL",
        "MIN_IDLE_WAIT",
        "COMPLETION_RETRY_SECONDS",
        "UNKNOWN_TASK_RETRY_SECONDS",
        "TRANSIENT_SQLSTATES",
        "MAX_FAILURE_MESSAGE_CHARS",
        "MAX_FAILURE_TRACEBACK_CHARS",
    ):
        assert hasattr(teguh.worker, name), name
    assert heartbeat.Heartbeat is teguh.worker._heartbeat.Heartbeat
