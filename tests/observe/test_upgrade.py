"""A re-install over a schema whose claim lacked queue_wait and lease_expired upgrades it, keeping grants."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

SCHEMA_FILE = Path(__file__).resolve().parent.parent.parent / "teguh" / "schema" / "teguh.sql"
Q = "obs"

OLD_COLUMNS = (
    "run_id uuid, task_id uuid, attempt int, task_name text, params jsonb, retry_strategy jsonb, "
    "max_attempts int, headers jsonb, wake_event text, event_payload jsonb, checkpoints jsonb"
)
OLD_NULLS = (
    "null::uuid, null::uuid, null::int, null, null::jsonb, null::jsonb, null::int, null::jsonb, null, "
    "null::jsonb, null::jsonb"
)


def test_reinstall_replaces_the_older_claim_and_keeps_its_grants(db: Any) -> None:
    role = f"teguh_w_{uuid.uuid4().hex[:10]}"
    db.run(f"create role {role} nologin")
    try:
        db.run("select teguh.create_queue(%s)", Q)
        # the claim functions as an install before this change made them
        db.run("drop function teguh.claim_runs(text, text, int, int)")
        db.run(
            "create function teguh.claim_runs(q text, worker_id text, claim_timeout int default 30, "
            f"qty int default 1) returns table({OLD_COLUMNS}) "
            f"language sql as 'select {OLD_NULLS} where false'"
        )
        db.run(f"drop function teguh._claim_{Q}(text, int, int, boolean, text[], boolean)")
        db.run(
            f"create function teguh._claim_{Q}(p_worker_id text, p_claim_timeout int, p_qty int, "
            "p_paused boolean, p_skip text[], p_limits boolean) "
            f"returns table({OLD_COLUMNS}) language sql as 'select {OLD_NULLS} where false'"
        )
        db.run("select teguh.grant_worker(%s)", role)
        db.conn.commit()
        for _ in range(2):  # the upgrade, then a plain re-install
            with db.conn.cursor() as cur:
                cur.execute(SCHEMA_FILE.read_text())
            db.conn.commit()
            for fn in (
                "teguh.claim_runs(text, text, int, int)",
                f"teguh._claim_{Q}(text, int, int, boolean, text[], boolean)",
            ):
                names = db.value(f"select proargnames from pg_proc where oid = '{fn}'::regprocedure")
                assert names[-2:] == ["queue_wait", "lease_expired"], fn
            assert db.value(
                "select has_function_privilege(%s, 'teguh.claim_runs(text, text, int, int)', 'execute')", role
            )
            assert not db.value(
                "select has_function_privilege('public', 'teguh.claim_runs(text, text, int, int)', 'execute')"
            )
        db.run("select * from teguh.spawn_task(%s, 'x', '1'::jsonb)", Q)
        rows = db.dicts("select * from teguh.claim_runs(%s, 'w', 30, 1)", Q)
        assert len(rows) == 1 and rows[0]["queue_wait"] >= 0 and rows[0]["lease_expired"] is None
        db.conn.commit()
    finally:
        db.run("select teguh.revoke_all(%s)", role)
        db.run(f"drop role {role}")
        db.conn.commit()
