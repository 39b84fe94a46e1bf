"""Wildcards match as documented: the engine's regex and the Python matcher agree with a reference.

Words are drawn from a small alphabet (so matches are frequent) that holds
regex metacharacters and non-ASCII letters, which the engine must escape.
"""

from __future__ import annotations

import psycopg2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import teguh
from teguh import topics

from .reference import reference_match

WORDS = st.sampled_from(["a", "b", "ab", "x(", "é", "[z]", "$", "\\", "a+", "{1}", "^", "|", "?"])
TOPIC = st.lists(WORDS, min_size=1, max_size=5)
PATTERN = st.lists(st.one_of(WORDS, st.sampled_from(["*", "#"])), min_size=1, max_size=5)


@given(pairs=st.lists(st.tuples(PATTERN, TOPIC), min_size=1, max_size=40))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_sql_matcher_agrees_with_the_reference(db, pairs):
    patterns = [".".join(p) for p, _ in pairs]
    topics_ = [".".join(t) for _, t in pairs]
    got = db.all(
        "select '.' || t ~ teguh._topic_regex(p)"
        " from unnest(%s::text[], %s::text[]) with ordinality as x(p, t, n) order by n",
        patterns,
        topics_,
    )
    assert [row[0] for row in got] == [reference_match(p, t) for p, t in pairs]


@given(pattern=PATTERN, topic=TOPIC)
@settings(max_examples=500, deadline=None)
def test_python_matcher_agrees_with_the_reference(pattern, topic):
    assert topics.matches(".".join(pattern), ".".join(topic)) is reference_match(pattern, topic)


@pytest.mark.parametrize(
    ("pattern", "topic", "expected"),
    [
        ("orders.*", "orders.created", True),
        ("orders.*", "orders", False),
        ("orders.*", "orders.eu.created", False),
        ("orders.#", "orders", True),
        ("orders.#", "orders.eu.created", True),
        ("#.created", "created", True),
        ("#", "anything.at.all", True),
        ("*.*", "a", False),
        ("a.#.b", "a.b", True),
        ("a.#.b", "a.x.y.b", True),
        ("a.#.b", "a.x.y.c", False),
        ("a.b", "a.b", True),
        ("a.b", "a.bb", False),
    ],
)
def test_documented_examples(db, pattern, topic, expected):
    assert db.value("select '.' || %s ~ teguh._topic_regex(%s)", topic, pattern) is expected
    assert topics.matches(pattern, topic) is expected


BAD_PATTERNS = ["a..b", ".a", "a.", "a*", "#b", "a.b*", "*#", "", " ", "a. b", "."]


@pytest.mark.parametrize("pattern", BAD_PATTERNS)
def test_bad_patterns_are_refused_in_python_and_in_sql(db, pattern):
    with pytest.raises(teguh.InvalidArgument):
        topics.check_pattern(pattern)
    with pytest.raises(psycopg2.Error) as info:
        db.run("select teguh._check_topic_words('topic pattern', %s, true)", pattern)
    assert info.value.pgcode == "TG004"


@pytest.mark.parametrize("topic", [*BAD_PATTERNS, "a.*", "#", "orders.#"])
def test_bad_topics_are_refused(topic):
    with pytest.raises(teguh.InvalidArgument):
        topics.check_topic(topic)


def test_errors_name_what_is_wrong():
    with pytest.raises(teguh.InvalidArgument, match=r"empty word.*doubled dot"):
        topics.check_pattern("a..b")
    with pytest.raises(teguh.InvalidArgument, match=r"'a\*' mixes a wildcard"):
        topics.check_pattern("x.a*")
    with pytest.raises(teguh.InvalidArgument, match="belong in binding patterns"):
        topics.check_topic("orders.*")
