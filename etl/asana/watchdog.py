"""A deadline for each request, whatever the server sends.

requests' timeout bounds each read from the socket, not the answer: a server that sent a
byte every 2 s never tripped a 3 s timeout and held its listing for good. So every
request the client sends is watched: `Watchdog.watch` gives it a deadline, the
connection it goes out on tells its watch (`WatchedAdapter`'s connection classes), and
a deadline that comes before the answer has ended cuts that connection, which makes the
blocked read return at once.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import requests
import urllib3

_current = threading.local()  # .watch: the watch of the request this thread is sending


class _Watch:
    """One request under the watchdog: its deadline, the connection it went out on (once
    known), and whether the deadline came before the request ended."""

    __slots__ = ("deadline", "expired", "_connection", "_finished", "_lock")

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.expired = False
        self._connection: Any = None
        self._finished = False
        self._lock = threading.Lock()

    def attach(self, connection: Any) -> None:
        """The request goes out on `connection` (cut at once if its time is already up)."""
        with self._lock:
            self._connection = connection
            if self.expired:
                _cut(connection)

    def expire(self) -> None:
        """The deadline came: cut the request's connection, unless it has ended."""
        with self._lock:
            if not self._finished:
                self.expired = True
                if self._connection is not None:
                    _cut(self._connection)

    def finish(self) -> None:
        """The request ended: its connection (back in the pool now) is no longer ours to cut."""
        with self._lock:
            self._finished = True
            self._connection = None


def _cut(connection: Any) -> None:
    """Shut a connection's socket down: a read blocked on it returns at once, and urllib3
    then throws the connection away. socket.socket's own shutdown even for TLS, whose
    SSLSocket.shutdown would drop the TLS state under the thread reading it."""
    sock = getattr(connection, "sock", None)
    if sock is not None:
        with contextlib.suppress(OSError):
            socket.socket.shutdown(sock, socket.SHUT_RDWR)


class Watchdog:
    """Cuts every request still running `seconds` after it was sent.

    requests' timeout bounds each read from the socket, not the answer: a server that sent
    a byte every 2 s never tripped a 3 s timeout and held its listing for good. One thread
    a client watches every request. Every deadline is `seconds` after its request, so one
    that comes later never falls due before the thread's next wake-up: sending a request
    never has to wake it.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._active: set[_Watch] = set()
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None

    @contextlib.contextmanager
    def watch(self) -> Iterator[_Watch]:
        """Watch the request this thread sends inside the block."""
        watch = _Watch(time.monotonic() + self.seconds)
        with self._lock:
            if self._thread is None:  # begun with the first request, in the process that sends
                self._thread = threading.Thread(target=self._run, name="asana-watchdog",
                                                daemon=True)
                self._thread.start()
            self._active.add(watch)
        _current.watch = watch
        try:
            yield watch
        finally:
            _current.watch = None
            watch.finish()
            with self._lock:
                self._active.discard(watch)

    def close(self) -> None:
        self._closed.set()

    def _run(self) -> None:
        while not self._closed.is_set():
            now = time.monotonic()
            with self._lock:
                due = [w for w in self._active if w.deadline <= now]
                self._active.difference_update(due)
                wake = min((w.deadline for w in self._active), default=now + self.seconds)
            for watch in due:
                watch.expire()
            self._closed.wait(wake - now)


class _Watched:
    """A urllib3 connection that tells the watch of the request it carries that it does:
    when it connects (a request's time can run out while it does) and when it sends."""

    def connect(self) -> None:
        super().connect()  # type: ignore[misc]
        self._attach()

    def request(self, *args: Any, **kwargs: Any) -> None:
        self._attach()
        super().request(*args, **kwargs)  # type: ignore[misc]

    def _attach(self) -> None:
        watch = getattr(_current, "watch", None)
        if watch is not None:
            watch.attach(self)


class _HTTPConnection(_Watched, urllib3.connection.HTTPConnection):
    pass


class _HTTPSConnection(_Watched, urllib3.connection.HTTPSConnection):
    pass


class _HTTPPool(urllib3.HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


class WatchedAdapter(requests.adapters.HTTPAdapter):
    """requests' adapter, with connections the watchdog can cut: direct or through an
    HTTP(S) proxy (a SOCKS proxy's connections stay as they are: bounded per read only)."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        _watch_pools(self.poolmanager)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        _watch_pools(manager)
        return manager


def _watch_pools(manager: urllib3.PoolManager) -> None:
    if manager.pool_classes_by_scheme is urllib3.poolmanager.pool_classes_by_scheme:
        manager.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}

