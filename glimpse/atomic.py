"""Whole-or-nothing file writes: a reader (or a restart after a kill) sees the old file or the new one, never a torn one.
Also the descriptor of a file written in place (never through a link), and the fingerprint of files' bytes."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import BinaryIO

def write_atomic(path: str | os.PathLike[str], data: bytes | Callable[[BinaryIO], object]) -> Path:
    """Write ``data`` (bytes, or a function that writes to the open binary file) to ``path``.

    The bytes go to a temporary file ``.NAME.*.tmp`` in the same folder (so the rename stays on one file
    system), which is flushed to disk, renamed over ``path``, and then the folder is synced
    so the new name survives a power cut too. On any error the temporary file is removed and
    ``path`` is left as it was. Missing parent folders are created.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        if os.name == "posix":  # mkstemp makes it 0600: readable by its owner only, unlike the collection's other files
            os.fchmod(fd, _mode_for(path))
        with os.fdopen(fd, "wb") as f:
            if callable(data):
                data(f)
            else:
                f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _sync_folder(path.parent)
    return path


def _mode_for(path: Path) -> int:
    """The permissions a replaced file had, else those of a file made with open() under the umask."""
    try:
        return path.stat().st_mode & 0o7777
    except FileNotFoundError:
        return 0o666 & ~_UMASK


def _current_umask() -> int:
    mask = os.umask(0o022)  # read once, at import: setting it back and forth later would race other threads
    os.umask(mask)
    return mask


_UMASK = _current_umask()


def _sync_folder(folder: Path) -> None:
    if os.name != "posix":  # folders cannot be opened for fsync on Windows; NTFS journals renames
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def open_own(path: str | os.PathLike[str], flags: int = os.O_RDWR | os.O_CREAT) -> int:
    """A descriptor on a file glimpse writes in place (the lock, the vector files), never through a
    symbolic link: writing through one would truncate or overwrite whatever file it points to."""
    try:
        return os.open(path, flags | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0), 0o644)
    except OSError as exc:
        if exc.errno == errno.ELOOP and os.path.islink(path):
            raise OSError(errno.ELOOP, "is a symbolic link, which glimpse never makes: put the file itself "
                          "there (or, for a lock, remove the link)", os.fspath(path)) from None
        raise


def file_fingerprint(paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], size: int = 8) -> str:
    """A hex id (``size`` bytes) of the bytes of one file, or of several read one after the other,
    streamed a MiB at a time (a model checkpoint or a dataset need not fit in memory). BLAKE2b of
    the concatenated bytes: keys made earlier from whole-file reads are unchanged."""
    digest = hashlib.blake2b(digest_size=size)
    for path in [paths] if isinstance(paths, (str, os.PathLike)) else paths:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()
