"""One writer per collection, enforced with an OS lock that dies with its process."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from ..atomic import open_own


class CollectionLockedError(RuntimeError):
    pass


class WriteLock:
    """An exclusive ``flock`` on ``write.lock`` holding the writer's pid.

    ``flock`` is released by the kernel when the process exits, however it exits, so a
    crashed writer never leaves a stale lock behind.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self._fd: int | None = None
        self._depth = 0

    def acquire(self) -> None:
        if self._fd is not None:
            self._depth += 1
            return
        fd = open_own(self.path)  # its pid is written over whatever it is
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise CollectionLockedError(
                f"collection {self.path.parent} is locked by pid {holder}, which is writing to it; "
                "wait for it to finish (searching is allowed meanwhile)"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd, self._depth = fd, 1

    def release(self) -> None:
        if self._fd is None:
            return
        self._depth -= 1
        if self._depth == 0:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> WriteLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
