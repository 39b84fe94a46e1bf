"""Measure one version of teguh for the whole run, whatever happens to the working tree meanwhile.

The benchmark takes minutes while teguh's code may be edited, so at start it
copies `teguh/` (Python and SQL) into the run's directory; the harness and
every worker import teguh from that copy. Its revision is the commit plus a
digest of the uncommitted changes under `teguh/`.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def revision() -> str:
    """`<commit>` or `<commit>+<digest of the uncommitted changes to teguh/>`; "unknown" outside git."""

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=True).stdout

    try:
        commit = git("rev-parse", "--short", "HEAD").strip()
        diff = git("diff", "HEAD", "--", "teguh")
        untracked = git("ls-files", "--others", "--exclude-standard", "--", "teguh")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    if not diff and not untracked:
        return commit
    digest = hashlib.sha1((diff + untracked).encode()).hexdigest()[:8]
    return f"{commit}+uncommitted:{digest}"


def take_ref(dest: Path, ref: str) -> tuple[Path, str]:
    """Export teguh/ as committed at git `ref` under `dest` and import teguh from there.

    For A/B runs (bench/ab.py): the same harness measures an older revision.
    """
    if "teguh" in sys.modules:
        raise RuntimeError("teguh was imported before the snapshot was taken")
    root = dest / "teguh-snapshot"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    commit = subprocess.run(
        ["git", "rev-parse", "--short", ref], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.strip()
    archive = subprocess.run(["git", "archive", commit, "teguh"], cwd=REPO, capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(root)], input=archive.stdout, check=True)
    sys.path.insert(0, str(root))
    return root, commit


def take(dest: Path) -> tuple[Path, str]:
    """Copy teguh/ under `dest` and import teguh from there in this process.

    Returns the copy's root and its revision (read before and after the copy,
    and copied again if the tree changed in between).
    """
    if "teguh" in sys.modules:
        raise RuntimeError("teguh was imported before the snapshot was taken")
    root = dest / "teguh-snapshot"
    for _ in range(5):
        before = revision()
        shutil.rmtree(root, ignore_errors=True)
        shutil.copytree(REPO / "teguh", root / "teguh", ignore=shutil.ignore_patterns("__pycache__"))
        if revision() == before:
            break
    sys.path.insert(0, str(root))
    return root, before
