"""A TCP proxy between workers and PostgreSQL that can cut or silence the network.

Pure Python, one thread per direction per connection. `stop()` closes every
connection and refuses new ones (a server crash or a firewall RST);
`blackhole()` keeps connections open but drops every byte both ways (a
silent partition, or a server that hangs); `resume()` forwards again (bytes
dropped meanwhile stay lost, as on a real network).
"""

from __future__ import annotations

import contextlib
import socket
import threading
from typing import Any

FORWARD, STOPPED, BLACKHOLE = "forward", "stopped", "blackhole"


class Proxy:
    """Listens on 127.0.0.1 (`port`) and forwards to `target`: a unix socket path or (host, port)."""

    def __init__(self, target: str | tuple[str, int]) -> None:
        self._target = target
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self.mode = FORWARD
        self._lock = threading.Lock()
        self._conns: list[socket.socket] = []
        self._closed = False
        self.accepted = 0
        threading.Thread(target=self._accept_loop, name="proxy-accept", daemon=True).start()

    def dsn(self, dbname: str, user: str) -> str:
        return f"host=127.0.0.1 port={self.port} user={user} dbname={dbname}"

    def _connect_target(self) -> socket.socket:
        if isinstance(self._target, str):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(self._target)
            return s
        return socket.create_connection(self._target)

    def _accept_loop(self) -> None:
        while not self._closed:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            if self.mode == STOPPED:
                client.close()  # refused
                continue
            try:
                upstream = self._connect_target()
            except OSError:
                client.close()
                continue
            with self._lock:
                self.accepted += 1
                self._conns += [client, upstream]
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), name="proxy-pump", daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if self.mode == FORWARD:
                    dst.sendall(data)
                # BLACKHOLE: read and drop, so the sender sees its bytes acknowledged
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                with contextlib.suppress(OSError):
                    s.close()

    def _close_all(self) -> None:
        with self._lock:
            conns, self._conns = self._conns, []
        for s in conns:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                s.close()

    def stop(self) -> None:
        """Cut: close every connection now and refuse new ones until `resume()`."""
        self.mode = STOPPED
        self._close_all()

    def blackhole(self) -> None:
        """Keep connections (and accept new ones) but drop every byte, both ways."""
        self.mode = BLACKHOLE

    def resume(self) -> None:
        """Forward again."""
        self.mode = FORWARD

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self._server.close()
        self._close_all()

    def __enter__(self) -> Proxy:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
