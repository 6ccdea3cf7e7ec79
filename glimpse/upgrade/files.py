"""Durable writes of an upgrade's files (its scattered vector rows: ``VectorStore.write_rows``): the order, and the helpers around them."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..atomic import open_own, write_atomic
from ..ingest.scan import FileEntry
from ..settings import CodeSettings
from ..storage import VectorStore


def unchanged(entry: FileEntry) -> bool:
    try:
        stat = os.stat(entry.path)
    except OSError:
        return False
    return (stat.st_size, stat.st_mtime_ns) == (entry.size, entry.mtime_ns)


def extend(store: VectorStore, rows: int) -> None:
    """Make the file hold ``rows`` rows (the rows of removed items read as zeros), durably."""
    fd = open_own(store.path)
    try:
        if os.fstat(fd).st_size < rows * store.dim * np.dtype(store.DTYPE).itemsize:
            os.ftruncate(fd, rows * store.dim * np.dtype(store.DTYPE).itemsize)
        os.fsync(fd)
    finally:
        os.close(fd)


def save_order(path: Path, units: list[np.ndarray]) -> None:
    """The order's item ids (row 0) and the batch each belongs to (row 1), durably, then renamed into place."""
    ids = np.concatenate(units) if units else np.zeros(0, np.int64)
    batch = np.repeat(np.arange(len(units)), [len(u) for u in units])
    write_atomic(path, lambda f: np.save(f, np.stack([ids, batch]).astype(np.int64)))


def unfitted(codes: dict | None) -> dict:
    """The code settings to commit with a change of space: the same, to be fitted again (none: none)."""
    return {"codes": CodeSettings.from_meta(codes).unfitted().to_meta()} if codes else {}
