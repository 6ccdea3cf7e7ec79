"""Exact inner-product search with FAISS: the reference every faster index is measured against."""

from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np

from .base import CodeStage, SearchBackend

# FAISS only uses BLAS for batches above this many queries; below it, it runs a scalar loop
# that measured 6-7x slower for batch-64 search here. One BLAS call is right at any batch size.
faiss.cvar.distance_compute_blas_threshold = 1
faiss.cvar.distance_compute_blas_database_bs = 4096


class FlatIndex(SearchBackend):
    """``IndexFlatIP`` with id mapping: exact already, so it ignores a search's code stage.

    It keeps float32 copies in RAM, so it is a view of the float16 vector store and not
    persisted: saving it would write twice the vector file's bytes to disk to save a
    conversion that takes about as long as reading them back.
    """

    def __init__(self, dim: int):
        self.dim = dim
        self._index = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if len(ids):
            self._index.add_with_ids(
                np.ascontiguousarray(vectors, dtype=np.float32), np.asarray(ids, dtype=np.int64)
            )

    def remove(self, ids: np.ndarray) -> int:
        if not len(ids):
            return 0
        return int(self._index.remove_ids(np.asarray(ids, dtype=np.int64)))

    def search(self, queries: np.ndarray, k: int, *, allowed: np.ndarray | None = None,
               stage: CodeStage | None = None) -> tuple[np.ndarray, np.ndarray]:
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        k = min(k, self.count() if allowed is None else len(allowed))
        if k <= 0:
            return np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
        return self._index.search(queries, k, params=self._selector(allowed))

    def count(self) -> int:
        return int(self._index.ntotal)

    def ids(self) -> np.ndarray:
        return faiss.vector_to_array(self._index.id_map)

    def persist(self, directory: Path, generation: int) -> None:
        return None

    def describe(self) -> dict:
        return {"kind": "flat", "vectors": self.count()}
