"""A TCP proxy of the tests' own, between the tool and a real database server, that can
cut connections: one (by the client port the server sees), or all, and refuse new ones
for a while. What the tool then meets is what a proxy restart, an idle timeout or a
failover gives it: a socket closed under a live session, and a server that frees that
session's locks.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable

import sqlalchemy as sa


class _Pair:
    def __init__(self, client: socket.socket, upstream: socket.socket) -> None:
        self.client, self.upstream = client, upstream

    @property
    def upstream_port(self) -> int:
        """The port the server sees this connection come from."""
        return self.upstream.getsockname()[1]

    def close(self) -> None:
        for sock in (self.client, self.upstream):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()


class TcpProxy:
    """Listens on 127.0.0.1 (a free port) and forwards to `host:port`."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.pairs: list[_Pair] = []
        self.lock = threading.Lock()
        self.refusing = False
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self, database_url: str) -> str:
        """`database_url` through this proxy."""
        url = sa.make_url(database_url)
        return url.set(host="127.0.0.1", port=self.port).render_as_string(hide_password=False)

    def cut(self, which: Callable[[_Pair], bool] = lambda pair: True) -> int:
        """Close the connections `which` picks (all by default); how many were cut."""
        with self.lock:
            cut = [pair for pair in self.pairs if which(pair)]
            self.pairs = [pair for pair in self.pairs if pair not in cut]
        for pair in cut:
            pair.close()
        return len(cut)

    def cut_port(self, upstream_port: int) -> int:
        """Close the one connection the server sees as coming from `upstream_port`."""
        return self.cut(lambda pair: pair.upstream_port == upstream_port)

    def refuse(self, refusing: bool) -> None:
        """While refusing, a new connection is closed as soon as it is accepted."""
        self.refusing = refusing

    def close(self) -> None:
        self.closed = True
        with contextlib.suppress(OSError):
            self.listener.close()
        self.cut()

    def __enter__(self) -> TcpProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.refusing:
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            pair = _Pair(client, upstream)
            with self.lock:
                self.pairs.append(pair)
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(pair, source, sink), daemon=True).start()

    def _pump(self, pair: _Pair, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        with self.lock:
            if pair in self.pairs:
                self.pairs.remove(pair)
        pair.close()
