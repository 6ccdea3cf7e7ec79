"""Float16 vectors in one flat, memory-mapped file, one row per item."""

from __future__ import annotations

import errno
import mmap
import os
import stat
from pathlib import Path

from ..atomic import open_own

import numpy as np


def write_whole(fd: int, data: bytes, offset: int) -> None:
    """Write all of ``data`` at ``offset``: one pwrite may write less (a disk filling up, a write over
    about 2 GiB), and rows committed without their bytes would read as a damaged file."""
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        if not written:
            raise OSError(errno.ENOSPC, f"no byte could be written to the vector file at offset {offset}")
        view, offset = view[written:], offset + written


class DamagedVectorError(OSError):
    """An item's stored vector failed the length check (``glimpse repair`` derives it again): the
    collection's file is damaged, not the request (HTTP 503, as for other unreadable files)."""


class VectorStore:
    """Rows of float16 vectors; item ``i`` is row ``i`` until a compaction moves it (``locate``).

    The file may be longer than the committed row count: a writer appends and fsyncs rows
    *before* the metadata commit that makes them visible, so a crash in between leaves only
    unreferenced bytes past the end, which the next writer overwrites.
    """

    DTYPE = np.float16

    def __init__(self, path: Path, dim: int):
        self.path = Path(path)
        self.dim = dim
        self.row_bytes = dim * np.dtype(self.DTYPE).itemsize
        self._map: np.ndarray | None = None
        self._mmap: mmap.mmap | None = None  # what _map reads; its size() is an fstat of the mapped file
        self._mapped_rows = 0
        self._row_of: np.ndarray | None = None  # item id -> row (-1: none); None: row = id
        self._sparse: tuple[np.ndarray, np.ndarray] | None = None  # sorted (ids, rows), for sparse ids

    def locate(self, path: Path, ids: np.ndarray, rows: np.ndarray) -> None:
        """Read from ``path`` from now on, item ``ids[j]`` at row ``rows[j]`` (as committed)."""
        path = Path(path)
        if path != self.path:
            self.close()
            self.path = path
        self._sparse = None
        if np.array_equal(ids, rows):
            self._row_of = None
        elif int(ids.max()) < 4 * len(ids) + 65536:
            self._row_of = np.full(int(ids.max()) + 1, -1, np.int64)
            self._row_of[ids] = rows
        else:  # ids derived from content (glimpse.milvus) are sparse: binary search, not a table
            order = np.argsort(ids)
            self._row_of, self._sparse = None, (ids[order], rows[order])

    def write(self, start_row: int, vectors: np.ndarray) -> None:
        """Write rows ``start_row ..`` and make them durable."""
        data = np.ascontiguousarray(vectors, dtype=self.DTYPE)
        if data.ndim != 2 or data.shape[1] != self.dim:
            raise ValueError(f"expected (n, {self.dim}) vectors, got {data.shape}")
        fd = open_own(self.path)
        try:
            write_whole(fd, data.tobytes(), start_row * self.row_bytes)
            os.fsync(fd)
        finally:
            os.close(fd)

    def copy_rows(self, ids: np.ndarray, rows: int, target: Path) -> None:
        """Write the vectors of ``ids`` to a new file ``target``, in that order, durably."""
        with open(target, "wb") as f:
            for start in range(0, len(ids), 65536):
                f.write(self.read(ids[start : start + 65536], rows, self.DTYPE).tobytes())
            f.flush()
            os.fsync(f.fileno())
        fd = os.open(target.parent, os.O_RDONLY)  # the new name too, before metadata points at it
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def view(self, rows: int) -> np.ndarray:
        """A read-only (rows, dim) memory map of the first ``rows`` rows.

        Each call checks the mapped file's size (one fstat): a file cut short under the map
        (another program, a disk problem) would otherwise kill the process with SIGBUS on the
        first read past its new end."""
        if rows == 0:
            return np.zeros((0, self.dim), self.DTYPE)
        if self._map is None or self._mapped_rows != rows:
            self.close()
            with os.fdopen(self._open(rows), "rb") as f:
                self._check_size(os.fstat(f.fileno()).st_size, rows, self.path)
                self._mmap = mmap.mmap(f.fileno(), rows * self.row_bytes, access=mmap.ACCESS_READ)
            self._map = np.frombuffer(self._mmap, self.DTYPE, rows * self.dim).reshape(rows, self.dim)
            self._mapped_rows = rows
        else:
            self._check_size(self._mmap.size(), rows, self.path)
        return self._map

    def _open(self, rows: int) -> int:
        """A read-only descriptor on the vector file itself: never through a symbolic link (glimpse
        makes none, and would read another file's bytes as vectors), never a folder."""
        restore = "restore the file from a backup or derive the vectors again with `glimpse repair`"
        try:
            fd = open_own(self.path, os.O_RDONLY)
        except FileNotFoundError:
            raise FileNotFoundError(f"the vector file {self.path} is missing but the metadata references {rows} "
                                    f"vectors: {restore}") from None
        except OSError as exc:
            if exc.errno != errno.ELOOP:
                raise
            raise OSError(f"the vector file {self.path} is a symbolic link, which glimpse never makes: put the file "
                          "itself there") from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise OSError(f"the vector file {self.path} is not a file: move it aside, then {restore}")
        return fd

    def check(self, path: Path, rows: int) -> None:
        """Raise OSError unless ``path`` holds ``rows`` rows (one stat; nothing mapped)."""
        if rows:
            self._check_size(os.stat(path).st_size, rows, path)

    def _check_size(self, size: int, rows: int, path: Path) -> None:
        if size < rows * self.row_bytes:
            raise OSError(  # what happened first: a long path may be clipped (HTTP errors)
                f"the vector file was truncated or replaced: {path} holds "
                f"{size // self.row_bytes} vectors but the metadata references {rows}"
            )

    def close(self) -> None:
        """Drop the memory map (and the file descriptor it holds)."""
        self._map, self._mmap, self._mapped_rows = None, None, 0

    def read(self, ids: np.ndarray, rows: int, dtype: np.dtype = np.float32) -> np.ndarray:
        """Vectors of item ``ids`` as ``dtype`` (float16: as stored, no conversion); sorted ids read fastest.
        Ids of consecutive rows, ascending, give a read-only view of the map (float16) instead of a
        copy: an exact pass over every row scores them in place (100,000 x 256-d: 4 ms against
        12-16 ms through a gathered copy)."""
        ids = np.asarray(ids, dtype=np.int64)
        if self._row_of is not None:
            ids = self._row_of[ids]
        elif self._sparse is not None and len(ids):
            known, their_rows = self._sparse
            at = np.searchsorted(known, ids).clip(max=len(known) - 1)
            ids = np.where(known[at] == ids, their_rows[at], -1)
        if len(ids) and ids.min() < 0:
            raise KeyError("an item without a vector row was read")
        stored = self.view(rows)
        if 1 < len(ids) and ids[-1] < len(stored) and ids[-1] - ids[0] == len(ids) - 1 and (np.diff(ids) > 0).all():
            return np.asarray(stored[ids[0] : ids[-1] + 1], dtype=dtype)  # a run of rows
        return np.asarray(stored[ids], dtype=dtype)

    def nbytes(self) -> int:
        return self.path.stat().st_size if self.path.exists() else 0
