"""Moved to `_support.polling`; kept for tests/worker/conftest.py until it imports from there."""

from _support.polling import eventually

__all__ = ["eventually"]
