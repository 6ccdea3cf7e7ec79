"""The search-backend interface that every index (flat, binary codes, Milvus) implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path

import faiss
import numpy as np


class VectorIndex(ABC):
    """Maps int64 ids to vectors and answers top-k inner-product queries.

    A backend is derived state: the collection's vector store is the source of truth, so a
    backend that cannot ``restore`` a persisted copy for the current generation is rebuilt
    from the stored vectors.
    """

    dim: int

    @abstractmethod
    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Add float32 (n, dim) ``vectors`` under int64 ``ids``."""

    @abstractmethod
    def remove(self, ids: np.ndarray) -> int:
        """Remove ``ids``; returns how many were present."""

    @abstractmethod
    def search(
        self, queries: np.ndarray, k: int, *, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """float32 (q, dim) -> (scores (q, k'), ids (q, k')) best first, k' = min(k, count).

        ``allowed`` (int64 ids) restricts the search to those ids *before* ranking, so a
        filter that matches at least k items still gets k results. Rows with fewer matches
        are padded with id -1.
        """

    @abstractmethod
    def count(self) -> int:
        """Number of vectors held."""

    @abstractmethod
    def persist(self, directory: Path, generation: int) -> None:
        """Save what is worth saving for ``generation``, atomically (write, then rename)."""

    @classmethod
    @abstractmethod
    def restore(cls, directory: Path, generation: int, dim: int) -> VectorIndex | None:
        """Load the copy persisted for ``generation``, or None when there is none."""

    def _selector(self, allowed: np.ndarray | None) -> faiss.SearchParameters | None:
        if allowed is None:
            return None
        return faiss.SearchParameters(sel=faiss.IDSelectorBatch(np.asarray(allowed, dtype=np.int64)))

    def __len__(self) -> int:
        return self.count()
