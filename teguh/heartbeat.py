"""Moved to `teguh.worker._heartbeat`; this name stays importable."""

from .worker._heartbeat import Heartbeat, logger  # noqa: F401
