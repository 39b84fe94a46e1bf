"""`import teguh` leaves optional modules unloaded until a feature needs them.

Every process that imports teguh pays for what `teguh/__init__.py` pulls in,
including web processes that only spawn and never declare a schedule, never
install the schema and never see a connection fail. These modules are
imported inside the functions that use them (see the docstrings of
teguh/schedules.py, teguh/_backoff.py and `teguh._connection.schema_sql`);
a top-level import added back anywhere on `import teguh`'s path fails here.
The check runs in a fresh interpreter: this test process has imported
everything already.
"""

from __future__ import annotations

import json
import subprocess
import sys

LAZY = (
    "cronsim",  # teguh.schedules: cron expressions, only when a schedule is defined or fired
    "zoneinfo",  # teguh.schedules: a schedule's time zone
    "tenacity",  # teguh._backoff.retry: only once a first call has failed
    "importlib.resources",  # teguh._connection.schema_sql: only when installing
)


def _modules_after(code: str) -> set[str]:
    script = f"import json, sys\n{code}\nprint(json.dumps(sorted(sys.modules)))"
    command = [sys.executable, "-c", script]
    out = subprocess.run(command, check=True, capture_output=True, text=True, timeout=60)
    return set(json.loads(out.stdout))


def test_import_teguh_loads_no_optional_module() -> None:
    loaded = _modules_after("import teguh\nfrom teguh import ScheduleInfo, Client, App, schema_sql")
    assert "teguh" in loaded and "teguh.schedules" in loaded  # the check itself sees imports
    assert sorted(set(LAZY) & loaded) == []


def test_the_lazy_modules_load_when_their_feature_is_used() -> None:
    loaded = _modules_after(
        "from teguh import schedules, schema_sql\n"
        "schedules.define('s', 't', cron='@hourly', timezone='Europe/Berlin')\n"
        "assert 'create' in schema_sql()\n"
        "from teguh import _backoff\n"
        "calls = iter([OSError('once'), 'ok'])\n"
        "def call():\n"
        "    item = next(calls)\n"
        "    if isinstance(item, Exception):\n"
        "        raise item\n"
        "    return item\n"
        "assert _backoff.retry(call, backoff=_backoff.Backoff(0.0, 0.0), retry_if=lambda e: True) == 'ok'\n"
    )
    assert sorted(set(LAZY) - loaded) == []
