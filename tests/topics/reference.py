"""A reference matcher for topic patterns, written for plainness, not speed."""

from __future__ import annotations


def reference_match(pattern: list[str], topic: list[str]) -> bool:
    """The AMQP rule, as plainly as it can be written: `*` one word, `#` zero or more."""
    if not pattern:
        return not topic
    head, rest = pattern[0], pattern[1:]
    if head == "#":
        return reference_match(rest, topic) or (bool(topic) and reference_match(pattern, topic[1:]))
    if not topic:
        return False
    return (head == "*" or head == topic[0]) and reference_match(rest, topic[1:])
