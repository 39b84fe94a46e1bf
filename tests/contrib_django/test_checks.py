"""On a database that is not PostgreSQL, `check` reports it and `migrate` fails in one line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core import checks
from django.core.management import call_command
from django.core.management.base import CommandError, SystemCheckError
from django.db import connections
from django.test import override_settings

from teguh.contrib.django.checks import E001, check_database

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
EXPECTED = "teguh needs PostgreSQL, but its database alias 'lite' uses 'django.db.backends.sqlite3'"


def test_the_check_passes_on_postgresql() -> None:
    assert check_database() == []
    assert [m for m in checks.run_checks() if m.id and m.id.startswith("teguh.")] == []


def test_the_check_passes_when_teguh_has_its_own_dsn() -> None:
    with override_settings(TEGUH={"DATABASE": "lite", "DSN": "dbname=elsewhere"}):
        assert check_database() == []


def test_the_check_names_the_sqlite_alias_and_its_engine() -> None:
    with override_settings(TEGUH={"DATABASE": "lite"}):
        errors = check_database()
        assert [(e.id, e.level, e.msg) for e in errors] == [(E001, checks.ERROR, EXPECTED)]
        assert "TEGUH['DSN']" in errors[0].hint
        with pytest.raises(SystemCheckError, match=r"teguh\.E001"):
            call_command("check")


def test_an_unknown_alias_is_reported_by_the_check() -> None:
    with override_settings(TEGUH={"DATABASE": "nope"}):
        assert [e.id for e in check_database()] == ["teguh.E002"]


def test_migrate_on_sqlite_fails_with_one_line() -> None:
    # call_command skips the system checks: teguh's migration refuses by itself
    try:
        with override_settings(TEGUH={"DATABASE": "lite"}), pytest.raises(CommandError) as info:
            call_command("migrate", database="lite", verbosity=0)
        message = str(info.value)
        assert message.startswith(EXPECTED)
        assert "\n" not in message and "pg_advisory" not in message
    finally:
        connections["lite"].close()


def _manage(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(HERE.parent), str(REPO)]),
        "DJANGO_SETTINGS_MODULE": "contrib_django.djproject.settings",
        "DJTEST_SQLITE": str(tmp_path / "db.sqlite3"),  # the default database is SQLite
    }
    return subprocess.run(
        [sys.executable, str(HERE / "manage.py"), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=str(tmp_path),
        timeout=120,
    )


def test_manage_py_on_a_sqlite_project(tmp_path: Path) -> None:
    default = EXPECTED.replace("'lite'", "'default'")
    check = _manage(tmp_path, "check")
    assert check.returncode == 1 and f"(teguh.E001) {default}" in check.stderr, check.stderr
    # migrate runs the checks first: Django's error report, no traceback
    migrate = _manage(tmp_path, "migrate")
    assert migrate.returncode == 1 and f"(teguh.E001) {default}" in migrate.stderr, migrate.stderr
    assert "Traceback" not in migrate.stderr
    # without the checks, the migration says it in one line
    skipped = _manage(tmp_path, "migrate", "--skip-checks")
    assert skipped.returncode == 1, skipped.stderr
    assert skipped.stderr.strip().splitlines()[-1].startswith(f"CommandError: {default}"), skipped.stderr
    assert "Traceback" not in skipped.stderr
