"""The TEGUH setting and DSN plumbing between Django and teguh."""

from __future__ import annotations

import psycopg2
import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.test import override_settings

from teguh.contrib.django import conf, database_settings, spawn_task

from .helpers import query


def test_dsn_from_databases_reaches_the_same_database(django_db: str) -> None:
    conn = psycopg2.connect(conf.dsn())
    try:
        with conn.cursor() as cur:
            cur.execute("select current_database()")
            assert cur.fetchone()[0] == psycopg2.extensions.parse_dsn(django_db)["dbname"]
    finally:
        conn.close()


def test_database_settings_from_a_dsn() -> None:
    entry = database_settings("postgresql://app:pw@db.example:6432/shop?sslmode=require", CONN_MAX_AGE=60)
    assert entry == {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": "shop",
        "USER": "app",
        "PASSWORD": "pw",
        "HOST": "db.example",
        "PORT": "6432",
        "OPTIONS": {"sslmode": "require"},
        "CONN_MAX_AGE": 60,
    }


def test_bad_settings_are_reported() -> None:
    with override_settings(TEGUH={"QEUE": "x"}), pytest.raises(ImproperlyConfigured, match="QEUE"):
        conf.queue()
    with override_settings(TEGUH={"QUEUE": "Bad-Name"}), pytest.raises(ImproperlyConfigured):
        conf.queue()
    sqlite = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": "x"}}
    with (
        pytest.warns(UserWarning, match="Overriding setting DATABASES"),  # Django's, harmless here
        override_settings(DATABASES=sqlite),
        pytest.raises(ImproperlyConfigured, match="PostgreSQL"),
    ):
        conf.dsn_from_database("default")


def test_with_a_separate_dsn_spawns_commit_on_their_own(django_db: str) -> None:
    """TEGUH["DSN"] set: teguh has its own connection, so Django's rollback cannot undo a spawn."""
    with override_settings(TEGUH={"DSN": django_db, "QUEUES": ["other"]}), transaction.atomic():
        spawn_task("echo", {"n": 1})
        transaction.set_rollback(True)
    assert query(django_db, "select count(*) from teguh.t_other") == [(1,)]
