"""Topic patterns: their rules, a Python matcher, and the binding value type.

Topics fan one publish out to every task bound to a matching pattern
(`App.bind`, `Client.bind`, `Client.publish`). The engine matches in SQL
(`teguh.publish`, with a regex built from the pattern when it is bound);
this module checks patterns and topics before any SQL runs, so bad input
gets a precise error and nothing is written, and holds the Python matcher
that eager mode uses instead of the database (docs/composition.md, "Topics").

A topic is words joined by dots (`orders.eu.created`); a pattern is the same
with two wildcard words: `*` matches exactly one word, `#` zero or more
(AMQP's topic exchange rules).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from . import _validate
from .errors import InvalidArgument

__all__ = ["TopicBinding", "check_pattern", "check_topic", "matches"]

ONE_WORD = "*"
"""The wildcard word that matches exactly one word."""

ANY_WORDS = "#"
"""The wildcard word that matches zero or more words."""

_WHITESPACE = frozenset(" \t\n\r\f\v")


@dataclass(frozen=True)
class TopicBinding:
    """One stored binding: a publish whose topic matches `pattern` spawns `task_name` on `queue`."""

    pattern: str
    task_name: str
    queue: str
    created_at: datetime | None = None
    updated_at: datetime | None = None


def _words(value: Any, field: str, *, wildcards: bool) -> list[str]:
    text = _validate.name(value, field)
    words = text.split(".")
    for index, word in enumerate(words):
        if not word:
            where = "leading" if index == 0 else "trailing" if index == len(words) - 1 else "doubled"
            raise InvalidArgument(f"{field} {text!r} has an empty word (a {where} dot)")
        if _WHITESPACE.intersection(word):
            raise InvalidArgument(f"{field} {text!r}: word {word!r} contains whitespace")
        if ONE_WORD in word or ANY_WORDS in word:
            if not wildcards:
                raise InvalidArgument(
                    f"{field} {text!r}: word {word!r} holds a wildcard; "
                    "'*' and '#' belong in binding patterns, not in published topics"
                )
            if word not in (ONE_WORD, ANY_WORDS):
                raise InvalidArgument(
                    f"{field} {text!r}: word {word!r} mixes a wildcard with other characters; "
                    "'*' and '#' must be whole words"
                )
    return words


def check_pattern(pattern: Any) -> str:
    """Check a binding pattern and return it.

    Raises:
        TypeError: not a str.
        InvalidArgument: blank or too long, an empty word (leading, trailing or
            doubled dot), whitespace in a word, or `*`/`#` inside a word.
    """
    _words(pattern, "topic pattern", wildcards=True)
    return pattern


def check_topic(topic: Any) -> str:
    """Check a published topic (words, no wildcards) and return it.

    Raises:
        TypeError: not a str.
        InvalidArgument: as `check_pattern`, or a `*`/`#` in it.
    """
    _words(topic, "topic", wildcards=False)
    return topic


def matches(pattern: str, topic: str) -> bool:
    """Whether `topic` matches `pattern` (both already checked); what the engine's regex computes."""
    pat = pattern.split(".")
    words = topic.split(".")
    # reachable[j]: the first i pattern words can match the first j topic words
    reachable = [True] + [False] * len(words)
    for word in pat:
        if word == ANY_WORDS:
            for j in range(1, len(words) + 1):
                reachable[j] = reachable[j] or reachable[j - 1]
        else:
            reachable = [False] + [
                reachable[j] and (word == ONE_WORD or word == words[j]) for j in range(len(words))
            ]
    return reachable[-1]
