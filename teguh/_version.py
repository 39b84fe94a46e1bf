"""The package version, and the schema version this client works with."""

__version__ = "0.1.0"
"""The teguh package version (SemVer)."""

SCHEMA_MAJOR = 0
"""The major version of `teguh.version()` this client accepts; another major needs `teguh install`."""
