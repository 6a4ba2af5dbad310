"""One running instance per data folder: an advisory `fcntl.flock` on a lock file inside it.

The kernel drops the lock when the process ends (even on SIGKILL), so a crash never leaves a stale
lock behind; the file itself stays and only carries the holder's pid for the message.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path


class AlreadyRunning(Exception):
    """Another process holds the lock; str() is the one line to show."""


class InstanceLock:
    """`with InstanceLock(path, what="the playground"):` — raises AlreadyRunning instead of waiting."""

    def __init__(self, path: Path, *, what: str) -> None:
        self.path = Path(path)
        self.what = what
        self._fd: int | None = None

    def acquire(self) -> InstanceLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip()
            os.close(fd)
            pid = f"pid {holder}, " if holder.isdigit() else ""
            raise AlreadyRunning(f"{self.what} is already running on this data folder ({pid}lock {self.path}); "
                                 "stop it first (Ctrl-C in its terminal) or set DATA_DIR to another folder.") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)  # closing the descriptor releases the flock

    def __enter__(self) -> InstanceLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
