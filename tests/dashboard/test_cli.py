"""`teguh dashboard`: a real process serving the dashboard, on 127.0.0.1 unless told otherwise."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import urllib.request
from typing import Any

import pytest

from teguh.app import App

from .conftest import Q


def test_teguh_dashboard_serves_on_loopback_read_only_by_default(app: App) -> None:
    env = {k: v for k, v in os.environ.items() if k != "TEGUH_DASHBOARD_TOKEN"}
    proc = subprocess.Popen(
        # -X faulthandler: a process that does not stop on Ctrl-C prints its threads' stacks on SIGABRT
        [
            *(sys.executable, "-X", "faulthandler", "-m", "teguh"),
            *("--dsn", app.client.dsn, "dashboard", "--port", "0"),
        ],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        line = proc.stderr.readline()
        match = re.search(r"on (http://([\d.]+):\d+)/ \((.*?)\)", line)
        assert match, line
        url, host, mode = match.groups()
        assert host == "127.0.0.1"
        assert "read-only" in mode and "TEGUH_DASHBOARD_TOKEN" in mode
        with urllib.request.urlopen(url + "/", timeout=10) as response:
            body = response.read().decode()
        assert response.status == 200 and f"/queues/{Q}" in body
    finally:
        proc.send_signal(signal.SIGINT)
        hung = ""
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGABRT)
            try:
                hung = proc.communicate(timeout=10)[1]
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        proc.stderr.close()
    assert proc.returncode == 0, f"the dashboard did not stop on Ctrl-C; its stacks:\n{hung}"


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # what `cmd &` in a non-interactive shell leaves


@pytest.mark.parametrize(
    ("stop", "preexec"),
    [(signal.SIGTERM, None), (signal.SIGINT, _ignore_sigint)],
    ids=["sigterm", "sigint-inherited-ignored"],
)
def test_teguh_dashboard_stops_cleanly_on_sigterm_and_on_an_inherited_ignored_sigint(
    app: App, stop: signal.Signals, preexec: Any
) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "teguh", "--dsn", app.client.dsn, "dashboard", "--port", "0"],
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=preexec,
    )
    try:
        assert "teguh dashboard on" in proc.stderr.readline()
        proc.send_signal(stop)
        proc.wait(15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()
    assert proc.returncode == 0
