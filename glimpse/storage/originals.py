"""Reading an indexed file again (an original served over HTTP, a thumbnail made later).

Between indexing and a read, the file at an indexed path can be replaced: by other content,
by a symlink to a secret elsewhere, or one of its parent folders by a link that leads out.
So a read opens the file first and then checks what it opened, through the descriptor (a
path checked before or after the open could be swapped in between): a regular file, the
size and modification time that were indexed, and a real path inside the allowed folders.
``O_NOFOLLOW`` alone would not do: it only looks at the last component of the path.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Sequence
from typing import BinaryIO

from ..ingest.names import shown

_FLAGS = os.O_RDONLY | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)


class FileChangedError(Exception):
    """The file at an indexed path is not the one that was indexed any more."""


class OnAnotherMachine(FileNotFoundError):
    """The file was indexed by another machine (a Milvus collection's worker) and cannot be read here."""


def open_regular(path: str | os.PathLike) -> BinaryIO:
    """``path`` opened for reading if it is a regular file (a FIFO put in its place cannot
    block the open); OSError otherwise."""
    fd = os.open(path, _FLAGS | getattr(os, "O_NONBLOCK", 0))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def open_indexed(path: str, size: int, mtime_ns: int, roots: Sequence[str | os.PathLike]) -> BinaryIO:
    """The file at ``path``, opened, if it is still what was indexed and lies inside ``roots``.

    The file itself counts as a root: a file indexed by its own name may be read where it is,
    as long as no link leads elsewhere. Raises FileChangedError, or OSError when it cannot be
    opened.
    """
    f = open_regular(path)
    try:
        opened = os.fstat(f.fileno())
        if (opened.st_size, opened.st_mtime_ns) != (size, mtime_ns):
            raise FileChangedError(f"{shown(path)} changed since it was indexed (run glimpse index)")
        real = os.path.realpath(path)
        try:
            found = os.stat(real)
        except OSError:
            found = None
        # The real path must name the very file that was opened: a swap after the open shows here.
        same = found is not None and (found.st_dev, found.st_ino) == (opened.st_dev, opened.st_ino)
        if not same or not (real == os.path.abspath(path) or _inside(real, roots)):
            raise FileChangedError(f"{shown(path)} now leads outside the indexed folders")
        return f
    except BaseException:
        f.close()
        raise


def _inside(real: str, roots: Sequence[str | os.PathLike]) -> bool:
    for root in roots:
        top = os.path.realpath(root)
        if real == top or real.startswith(top.rstrip(os.sep) + os.sep):
            return True
    return False
