"""Float16 vectors in one flat, memory-mapped file, one row per item id."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np


class VectorStore:
    """Row ``i`` of the file is the vector of item ``i``.

    The file may be longer than the committed row count: a writer appends and fsyncs rows
    *before* the metadata commit that makes them visible, so a crash in between leaves only
    unreferenced bytes past the end, which the next writer overwrites.
    """

    DTYPE = np.float16

    def __init__(self, path: Path, dim: int):
        self.path = Path(path)
        self.dim = dim
        self._row_bytes = dim * np.dtype(self.DTYPE).itemsize
        self._map: np.memmap | None = None
        self._mapped_rows = 0

    def write(self, start_row: int, vectors: np.ndarray) -> None:
        """Write rows ``start_row ..`` and make them durable."""
        data = np.ascontiguousarray(vectors, dtype=self.DTYPE)
        if data.ndim != 2 or data.shape[1] != self.dim:
            raise ValueError(f"expected (n, {self.dim}) vectors, got {data.shape}")
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            os.pwrite(fd, data.tobytes(), start_row * self._row_bytes)
            os.fsync(fd)
        finally:
            os.close(fd)

    def view(self, rows: int) -> np.ndarray:
        """A read-only (rows, dim) memory map of the first ``rows`` rows."""
        if rows == 0:
            return np.zeros((0, self.dim), self.DTYPE)
        if self._map is None or self._mapped_rows != rows:
            size = self.path.stat().st_size if self.path.exists() else 0
            if size < rows * self._row_bytes:
                raise OSError(
                    f"{self.path} holds {size // self._row_bytes} vectors but the metadata "
                    f"references {rows}: the vector file was truncated or replaced"
                )
            self._map = np.memmap(self.path, dtype=self.DTYPE, mode="r", shape=(rows, self.dim))
            self._mapped_rows = rows
        return self._map

    def read(self, ids: np.ndarray, rows: int, dtype: np.dtype = np.float32) -> np.ndarray:
        """Vectors of ``ids`` as ``dtype`` (float16: as stored, no conversion); sorted ids read fastest."""
        ids = np.asarray(ids, dtype=np.int64)
        return np.asarray(self.view(rows)[ids], dtype=dtype)

    def nbytes(self) -> int:
        return self.path.stat().st_size if self.path.exists() else 0
