"""`Client.publish`: one task per matching binding, in one transaction, idempotent per binding."""

from __future__ import annotations

import uuid

import psycopg2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import teguh

from .reference import reference_match


def tasks(db, queue: str) -> list[tuple[str, object]]:
    return db.all(f"select task_name, params from teguh.t_{queue} order by task_name, task_id")


def test_publish_spawns_one_task_per_matching_binding(client, db):
    client.bind("orders.*", "audit-order", queue="audit")
    client.bind("orders.#", "index-order", queue="jobs")
    client.bind("#.created", "index-order", queue="jobs")  # same task, second pattern: still one spawn
    client.bind("payments.*", "charge", queue="jobs")

    results = client.publish("orders.created", {"order": 7})

    assert len(results) == 2 and all(r.created for r in results)
    assert tasks(db, "audit") == [("audit-order", {"order": 7})]
    assert tasks(db, "jobs") == [("index-order", {"order": 7})]
    # results are in (queue, task name) order
    assert results[0].task_id == db.value("select task_id::text from teguh.t_audit")
    assert results[1].task_id == db.value("select task_id::text from teguh.t_jobs")
    assert client.publish("orders.eu.created", 1)[0].task_id != results[1].task_id
    assert client.publish("nothing.bound") == []


def test_publish_in_a_rolled_back_transaction_spawns_nothing(client, db, dsn):
    client.bind("orders.*", "audit-order", queue="audit")
    client.bind("orders.created", "index-order", queue="jobs")
    conn = psycopg2.connect(dsn)
    try:
        results = client.publish("orders.created", {"n": 1}, conn=conn)
        assert len(results) == 2
        assert tasks(db, "audit") == [] and tasks(db, "jobs") == []  # not committed yet
        conn.rollback()
        assert tasks(db, "audit") == [] and tasks(db, "jobs") == []

        client.publish("orders.created", {"n": 2}, conn=conn)
        conn.commit()
        assert tasks(db, "audit") == [("audit-order", {"n": 2})]
        assert tasks(db, "jobs") == [("index-order", {"n": 2})]
    finally:
        conn.close()


def test_a_failing_spawn_rolls_the_whole_publish_back(client, db):
    client.bind("orders.*", "audit-order", queue="audit")
    client.bind("orders.*", "index-order", queue="jobs")
    # the second spawn (queue "jobs" comes after "audit") fails after the first one inserted its task
    db.run(
        "create function pg_temp.refuse() returns trigger language plpgsql as "
        "$$ begin raise exception 'refused by the test'; end $$"
    )
    db.run(
        "create trigger refuse before insert on teguh.t_jobs for each row execute function pg_temp.refuse()"
    )
    with pytest.raises(psycopg2.Error, match="refused by the test"):
        client.publish("orders.created", {"n": 1})
    assert tasks(db, "audit") == [] and tasks(db, "jobs") == []


def test_idempotency_key_applies_per_binding(client, db):
    client.bind("orders.*", "audit-order", queue="audit")
    client.bind("orders.*", "index-order", queue="jobs")
    first = client.publish("orders.created", {"n": 1}, idempotency_key="order-7")
    again = client.publish("orders.created", {"n": 2}, idempotency_key="order-7")

    assert [r.task_id for r in again] == [r.task_id for r in first]
    assert [r.created for r in first] == [True, True] and [r.created for r in again] == [False, False]
    assert db.value("select idempotency_key from teguh.t_audit") == "order-7:audit-order"
    assert db.value("select idempotency_key from teguh.t_jobs") == "order-7:index-order"
    # a binding added later gets its own task under the same publish key
    client.bind("orders.*", "ship-order", queue="jobs")
    third = client.publish("orders.created", {"n": 3}, idempotency_key="order-7")
    assert [r.created for r in third] == [False, False, True]
    assert db.value("select count(*) from teguh.t_jobs") == 2


def test_bindings_are_stored_listed_and_unbound(client):
    client.bind("orders.*", "audit-order", queue="audit")
    client.bind("orders.*", "audit-order", queue="audit")  # twice: one binding
    client.bind("#", "log", queue="jobs")
    listed = [(b.pattern, b.task_name, b.queue) for b in client.list_bindings()]
    assert listed == [("#", "log", "jobs"), ("orders.*", "audit-order", "audit")]
    assert all(b.created_at is not None for b in client.list_bindings())
    assert client.unbind("orders.*", "audit-order", queue="audit") is True
    assert client.unbind("orders.*", "audit-order", queue="audit") is False
    assert [b.pattern for b in client.list_bindings()] == ["#"]


def test_bad_input_is_refused_and_nothing_is_written(client, db):
    for pattern in ["a..b", ".orders", "orders.", "orders.*x", "#.a#"]:
        with pytest.raises(teguh.InvalidArgument):
            client.bind(pattern, "t", queue="jobs")
    with pytest.raises(teguh.InvalidArgument):
        client.publish("orders..created")
    with pytest.raises(teguh.InvalidArgument, match="wildcard"):
        client.publish("orders.*")
    with pytest.raises(teguh.QueueNotFound):
        client.bind("orders.*", "t", queue="nosuch")
    # the engine refuses a bad element of a batch: nothing of the batch is written
    with pytest.raises(psycopg2.Error) as info:
        db.run(
            "select teguh.bind_topics(%s::jsonb)",
            '[{"pattern": "ok.*", "task_name": "t", "queue": "jobs"},'
            ' {"pattern": "a..b", "task_name": "t", "queue": "jobs"}]',
        )
    assert info.value.pgcode == "TG004"
    with pytest.raises(psycopg2.Error) as info:
        db.run("select * from teguh.publish('a.*', 'null')")
    assert info.value.pgcode == "TG004"
    assert client.list_bindings() == []
    # a derived key ("<key>:<task_name>") over the limit is refused by the engine: nothing spawned
    client.bind("a.b", "first", queue="audit")
    client.bind("a.b", "second", queue="jobs")
    with pytest.raises(teguh.InvalidArgument, match="idempotency key is too long"):
        client.publish("a.b", None, idempotency_key="k" * 1018)  # fits "first", not "second"
    assert tasks(db, "audit") == [] and tasks(db, "jobs") == []


def test_dropping_a_queue_drops_its_bindings(client):
    client.bind("orders.*", "audit-order", queue="audit")
    client.bind("orders.*", "index-order", queue="jobs")
    client.drop_queue("audit")
    assert [b.queue for b in client.list_bindings()] == ["jobs"]
    assert len(client.publish("orders.created")) == 1


PATTERN_WORDS = st.sampled_from(["a", "b", "c", "*", "#"])
TOPIC_WORDS = st.sampled_from(["a", "b", "c"])


@given(
    patterns=st.lists(
        st.lists(PATTERN_WORDS, min_size=1, max_size=4), min_size=1, max_size=6, unique_by=tuple
    ),
    topic=st.lists(TOPIC_WORDS, min_size=1, max_size=4),
)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_publish_spawns_exactly_the_matching_bindings(client, dsn, patterns, topic):
    conn = psycopg2.connect(dsn)
    try:  # each example in its own rolled-back transaction
        for index, words in enumerate(patterns):
            client.bind(".".join(words), f"task-{index}", queue="jobs", conn=conn)
        results = client.publish(".".join(topic), None, conn=conn)
        with conn.cursor() as cur:
            cur.execute("select task_name from teguh.t_jobs order by task_name")
            spawned = [row[0] for row in cur.fetchall()]
        expected = sorted(f"task-{i}" for i, words in enumerate(patterns) if reference_match(words, topic))
        assert spawned == expected
        assert len(results) == len(expected)
    finally:
        conn.rollback()
        conn.close()


def test_producers_may_publish_and_bind_admins_may_unbind(db):
    role = f"teguh_topics_{uuid.uuid4().hex[:10]}"
    db.run(f"create role {role} nologin")
    try:
        db.run("select teguh.grant_producer(%s)", role)

        def may(signature: str) -> bool:
            return db.value("select has_function_privilege(%s, %s, 'execute')", role, signature)

        assert may("teguh.publish(text, jsonb, text)")
        assert may("teguh.bind_topics(jsonb)")
        assert may("teguh.list_topic_bindings()")
        assert not may("teguh.unbind_topic(text, text, text)")
        db.run("select teguh.grant_admin(%s)", role)
        assert may("teguh.unbind_topic(text, text, text)")
    finally:
        db.run("select teguh.revoke_all(%s)", role)
        db.run(f"drop role {role}")
