"""SQLite's scope locks: a file per scope in `<database file>.locks/`, locked by the
operating system for as long as the run holds it open, and holding the holder's
description for a run that finds it taken.

The lock belongs to the open file, not to the process: two runs in one process exclude
each other too, and the system drops the lock of a process that dies, even by SIGKILL.
POSIX systems lock with `flock`; Windows with `msvcrt.locking`, on one byte far past the
description (a region locked on Windows cannot be read, and the description must stay
readable), and has no shared lock: there a probe takes the lock and lets it go.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import sqlalchemy as sa

from etl.store.lock import ScopeLocks

if os.name == "nt":  # pragma: no cover (tested where it runs: not on this project's CI)
    import msvcrt

    #: Where the locked byte sits: beyond any description (Windows may lock past the end).
    _REGION = 1 << 20

    def _lock(fd: int, exclusive: bool) -> bool:
        """Lock `fd`'s file without waiting; whether it was free."""
        os.lseek(fd, _REGION, os.SEEK_SET)
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        if not exclusive:  # a probe: let go at once
            os.lseek(fd, _REGION, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
        return True

    def _unlock(fd: int) -> None:
        """Let go at once: Windows may release a closed file's lock only later."""
        os.lseek(fd, _REGION, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)

    _PROBE_MODE = os.O_RDWR
else:
    import fcntl

    def _lock(fd: int, exclusive: bool) -> bool:
        """Lock `fd`'s file without waiting (a shared lock to probe); whether it was free."""
        try:
            fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def _unlock(fd: int) -> None:
        """Nothing to do: closing the file lets go of its flock."""

    _PROBE_MODE = os.O_RDONLY


class FileLocks(ScopeLocks):
    """SQLite: a locked `<database>.locks/<kind>-<gid>.lock` per scope."""

    def __init__(self, engine: sa.Engine, label: str) -> None:
        super().__init__(engine, label)
        database = engine.url.database
        self.folder = None
        if database and database != ":memory:":  # a private in-memory database: no lock
            self.folder = Path(database + ".locks")
            self.folder.mkdir(exist_ok=True)
        self.fds: dict[str, int] = {}

    def _path(self, name: str) -> Path:
        return self.folder / f"{name}.lock"

    def _take(self, name: str) -> bool:
        if self.folder is None:
            return True
        fd = os.open(self._path(name), os.O_RDWR | os.O_CREAT, 0o644)
        if not _lock(fd, exclusive=True):
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, self.label.encode())
        self.fds[name] = fd
        return True

    def _probe(self, name: str) -> bool:
        if self.folder is None:
            return True
        try:
            fd = os.open(self._path(name), _PROBE_MODE)
        except FileNotFoundError:
            return True
        try:
            return _lock(fd, exclusive=False)
        finally:
            os.close(fd)  # and with it the probe's lock, if it was taken

    def _holder(self, name: str) -> str | None:
        with contextlib.suppress(OSError):
            return self._path(name).read_text("utf-8", "replace").strip() or None
        return None

    def close(self) -> None:
        for fd in self.fds.values():
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
                _unlock(fd)
            os.close(fd)  # releases the lock
        self.fds.clear()
        self.held.clear()
