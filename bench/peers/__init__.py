"""One module per system under test.

Each module defines a `Peer` class (the harness side: install, spawn, count
finished jobs) and a `worker` entry point run as `python -m
bench.peers.<module> worker --dsn URL --concurrency N [--stamps FILE]`.
A peer without batch spawn sets `spawn_batch = None`: its batch scenario is
reported as n/a and its queue is pre-filled one spawn at a time. A peer with
durable steps also has `spawn_steps`, `steps_worker_args` and `steps_settings`
(the `steps` scenario); a peer measured by that scenario only names it in
`scenarios`.
"""

PEERS = ("teguh", "pgqueuer", "procrastinate", "absurd")
"""The job-queue peers, measured by every scenario."""

STEPS_PEERS = ("teguh", "absurd", "dbos")
"""The peers of the durable-steps scenario (a peer's `spawn_steps`); DBOS takes part in it only."""

ALL_PEERS = (*PEERS, "dbos")


def load(name: str):
    """The `Peer` instance of a peer by name."""
    import importlib

    return importlib.import_module(f"bench.peers.{name}_runner").Peer()


def missing(peer) -> list[str]:
    """The modules a peer needs that are not installed."""
    import importlib.util

    return [module for module in peer.requires if importlib.util.find_spec(module) is None]
