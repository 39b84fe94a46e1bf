"""The session runs on the PostgreSQL it was asked for (`TEGUH_TEST_PG`, tests/_pg_servers.py),
with pgcrypto exactly when `TEGUH_TEST_PGCRYPTO=1`, so the version matrix tests what it claims."""

from __future__ import annotations

import re
import uuid
from typing import Any

import _pg_servers


def test_the_server_is_the_version_asked_for(db: Any) -> None:
    assert db.value("select current_setting('server_version_num')::int / 10000") == int(_pg_servers.VERSION)


def test_pgcrypto_is_installed_exactly_when_asked_for(db: Any) -> None:
    installed = db.value("select count(*) from pg_extension where extname = 'pgcrypto'") == 1
    assert installed == _pg_servers.PGCRYPTO
    # the schema took its ids' randomness from pgcrypto when it was there at install time
    uses_pgcrypto = db.value(
        "select bool_or(p.prosrc like '%%gen_random_bytes%%') from pg_proc p"
        " join pg_namespace n on n.oid = p.pronamespace where n.nspname = 'teguh'"
    )
    assert uses_pgcrypto == installed
    ids = [uuid.UUID(db.value("select teguh.portable_uuidv7()::text")) for _ in range(20)]
    assert all(i.version == 7 and i.variant == uuid.RFC_4122 for i in ids)
    assert len(set(ids)) == 20
    assert all(re.fullmatch(r"[0-9a-f-]{36}", str(i)) for i in ids)
