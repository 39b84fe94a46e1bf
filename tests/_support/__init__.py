"""Helpers shared by the test folders: one way to poll with a deadline, one way to run a worker.

* `_support.polling.eventually`: poll a check until it is truthy, fail after a timeout.
* `_support.workers.start_worker`: a `teguh.testing.WorkerThread` of an app, started.

Importable as `_support` because pytest puts `tests/` (the first folder up
without an `__init__.py`) on `sys.path` for its conftest.
"""
