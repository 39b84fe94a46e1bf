"""Helpers shared by the test folders, so that each folder keeps only what is its own.

* `_support.polling.eventually`: poll a check until it is truthy, fail after a timeout.
* `_support.workers.start_worker`: a `teguh.testing.WorkerThread` of an app, started;
  `worker_threads(app, **defaults)`: the workers of one test, stopped and checked at teardown.
* `_support.processes.worker_processes(script, tmp_path)`: the worker processes of
  one test (a folder's app script), with their logs, stopped by pid at teardown.
* `_support.apps.queue_app(dsn, queue)`: an `App` whose queue exists, closed after.
* `_support.db.query(dsn, sql, args)`: one statement through its own autocommit
  connection (the test apps' ledgers).
* `_support.browserless.Browserless`: HTTP requests to a dashboard, keeping cookies.

Importable as `_support` because pytest puts `tests/` (the first folder up
without an `__init__.py`) on `sys.path` for its conftest, and
`worker_processes` puts it on the `PYTHONPATH` of the processes it starts.
"""
