"""`teguh dashboard`: a real process serving the dashboard, on 127.0.0.1 unless told otherwise."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import urllib.request

from teguh.app import App

from .conftest import Q


def test_teguh_dashboard_serves_on_loopback_read_only_by_default(app: App) -> None:
    env = {k: v for k, v in os.environ.items() if k != "TEGUH_DASHBOARD_TOKEN"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "teguh", "--dsn", app.client.dsn, "dashboard", "--port", "0"],
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
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stderr.close()
    assert proc.returncode == 0
