"""Run by test_transactions.py in a subprocess: Django on psycopg2 (psycopg 3 hidden), then spawn.

Prints one JSON line: what a second connection saw after each case.
"""

import json
import sys

sys.modules["psycopg"] = None  # type: ignore[assignment]  # Django falls back to psycopg2

import django  # noqa: E402
import psycopg2  # noqa: E402

django.setup()

from django.db import connection, transaction  # noqa: E402

from teguh import QueueNotFound  # noqa: E402
from teguh.contrib.django import spawn_task  # noqa: E402

dsn = sys.argv[1]


def count() -> int:
    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute("select count(*) from teguh.t_other")
            return cur.fetchone()[0]
    finally:
        conn.close()


seen = {"driver": type(connection.cursor().cursor).__module__}
with transaction.atomic():
    spawn_task("echo", {"n": 1})
    transaction.set_rollback(True)
seen["after_rollback"] = count()
spawn_task("echo", {"n": 2})
seen["after_autocommit"] = count()
with transaction.atomic():
    try:
        spawn_task("echo", {}, queue="no_such_queue")
    except QueueNotFound:
        seen["mapped"] = True
    spawn_task("echo", {"n": 3})
seen["after_atomic"] = count()
print(json.dumps(seen))
