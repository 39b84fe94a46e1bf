"""Celery's fan-out/fan-in, for bench/fanout.py: a chord (a group of no-op tasks + a callback) per parent.

    python -m bench.peers.fanout_celery --url URL --broker redis --parents 4 --children 1000 --concurrency 16

Starts one Celery worker (a subprocess: `celery worker --pool threads
--concurrency N`, so one process with N slots, like teguh's worker) and
sends `--parents` chords of `--children` no-op tasks each, whose callback
checks the results; then waits for every callback's result. Brokers:

- `redis`: a redis-server of its own (Debian's `redis-server` package) on a
  free port of 127.0.0.1, in a temporary directory, as broker and result
  backend (a chord joins natively there: a counter per chord). `--redis-aof
  always` turns on the append-only file with an fsync per write, teguh's
  durability; the default is Redis as it starts without a configuration
  file (no append-only file, snapshots only: not durable per task).
- `sqla`: the PostgreSQL database given by `--url` as broker (kombu's
  SQLAlchemy transport, which polls its table every `--poll` seconds) and
  result backend (Celery's database backend; a chord then waits in
  `celery.chord_unlock` tasks, which retry every second).

Worker settings are Celery's defaults otherwise (prefetch multiplier 4,
acks early). The same module is the Celery app the worker imports: its
broker and backend come from the environment (FANOUT_BROKER,
FANOUT_BACKEND).

Prints one JSON line: {"seconds": ..., "tasks": ...}, the time from the
first chord's send to the last callback's result (a callback counts as its
parent task; chord_unlock tasks are not counted).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from celery import Celery, chord, group
from kombu.transport.sqlalchemy import Transport as SqlaTransport

app = Celery(
    "fanout_celery",
    broker=os.environ.get("FANOUT_BROKER", "memory://"),
    backend=os.environ.get("FANOUT_BACKEND", "cache+memory://"),
)
app.conf.update(broker_connection_retry_on_startup=True, worker_hijack_root_logger=False)
# kombu's SQLAlchemy transport hands its transport options to create_engine, which refuses
# `polling_interval`: set it on the transport class instead (the worker imports this module)
SqlaTransport.polling_interval = float(os.environ.get("FANOUT_POLL", "1"))


@app.task(name="noop")
def noop(i: int) -> int:
    return i


@app.task(name="gather")
def gather(results: list[Any], n: int) -> int:
    if results != list(range(n)):
        raise AssertionError("results out of order")
    return len(results)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_redis(workdir: Path, aof: str) -> tuple[subprocess.Popen, str]:
    """A redis-server of our own on a free port; returns it and its URL."""
    exe = shutil.which("redis-server")
    if exe is None:
        raise SystemExit("redis-server not found: apt-get install -y redis-server, or use --broker sqla")
    port = free_port()
    argv = [exe, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(workdir), "--save", ""]
    if aof == "always":
        argv += ["--appendonly", "yes", "--appendfsync", "always"]
    else:
        argv += ["--appendonly", "no"]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 15
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError as exc:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise SystemExit("redis-server did not start") from exc
            time.sleep(0.05)
    return proc, f"redis://127.0.0.1:{port}/0"


def stop(proc: subprocess.Popen) -> None:
    """Stop a process we started, by its pid: SIGTERM, then SIGKILL after 15 s."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", required=True, help="the fresh PostgreSQL database (used with --broker sqla)")
    p.add_argument("--broker", default="redis", choices=("redis", "sqla"))
    p.add_argument("--redis-aof", default="no", choices=("no", "always"))
    p.add_argument("--parents", type=int, default=4)
    p.add_argument("--children", type=int, default=1000)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--poll", type=float, default=0.05, help="kombu SQLAlchemy transport's polling, seconds")
    args = p.parse_args(argv)

    workdir = Path(tempfile.mkdtemp(prefix="teguh-bench-celery-"))
    redis = None
    worker = None
    try:
        if args.broker == "redis":
            redis, url = start_redis(workdir, args.redis_aof)
            broker, backend = url, url
        else:
            broker, backend = f"sqla+{args.url}", f"db+{args.url}"
        env = {
            **os.environ,
            "FANOUT_BROKER": broker,
            "FANOUT_BACKEND": backend,
            "FANOUT_POLL": str(args.poll),
        }
        os.environ.update(env)
        app.conf.broker_url, app.conf.result_backend = broker, backend
        SqlaTransport.polling_interval = args.poll
        worker = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "bench.peers.fanout_celery",
                "worker",
                "--pool",
                "threads",
                "--concurrency",
                str(args.concurrency),
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "--loglevel",
                "WARNING",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=open(workdir / "worker.log", "w"),  # noqa: SIM115 - closed with the process
        )
        # the worker is ready once it has run a task
        if noop.delay(-1).get(timeout=120) != -1:
            raise SystemExit("warm-up task returned a wrong result")
        start = time.monotonic()
        results = [
            chord(group(noop.s(i) for i in range(args.children)))(gather.s(args.children))
            for _ in range(args.parents)
        ]
        done = [r.get(timeout=600, interval=0.01) for r in results]
        took = time.monotonic() - start
        if done != [args.children] * args.parents:
            raise SystemExit(f"callbacks returned {done}")
    except BaseException:
        log = workdir / "worker.log"
        if log.exists():
            sys.stderr.write(log.read_text()[-3000:])
        raise
    finally:
        if worker is not None:
            stop(worker)
        if redis is not None:
            stop(redis)
        shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps({"seconds": took, "tasks": args.parents * (args.children + 1)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
