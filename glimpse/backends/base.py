"""The search-backend interface: what the collection asks of any index of its vectors.

A backend maps int64 item ids to vectors and answers top-k inner-product queries. The local
FAISS backends (:mod:`.flat`, :mod:`.binary`, :mod:`.ivfcodes`) and Milvus
(:mod:`glimpse.milvus.index`) implement it; a backend is derived state: the collection's
vector file is the source of truth, so a backend that cannot restore a persisted copy is
rebuilt from the stored vectors.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np


@dataclass(frozen=True)
class CodeStage:
    """How a backend with binary codes runs one search; None leaves the backend's own setting.

    ``scoring`` is ``hamming``, ``cascade`` or ``asymmetric`` (the caller resolves ``auto``,
    see :func:`glimpse.settings.resolve_scoring`); ``oversample`` sets the shortlist to
    ``k * oversample`` codes; ``rerank`` scores the shortlist with the float vectors; ``exact``
    scores every float vector instead of the codes (the reference). Backends without codes
    are exact already and ignore all of it.
    """

    scoring: str | None = None
    oversample: int | None = None
    rerank: bool | None = None
    exact: bool = False


class SearchBackend(ABC):
    """Top-k inner-product search over int64 ids; ``describe`` says what it is, for stats."""

    dim: int

    @abstractmethod
    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Add float32 (n, dim) ``vectors`` under int64 ``ids``."""

    @abstractmethod
    def remove(self, ids: np.ndarray) -> int:
        """Remove ``ids``; returns how many were present."""

    @abstractmethod
    def search(self, queries: np.ndarray, k: int, *, allowed: np.ndarray | None = None,
               stage: CodeStage | None = None) -> tuple[np.ndarray, np.ndarray]:
        """float32 (q, dim) -> (scores (q, k'), ids (q, k')) best first, k' = min(k, count).

        ``allowed`` (int64 ids) restricts the search to those ids *before* ranking, so a
        filter that matches at least k items still gets k results. Rows with fewer matches
        are padded with id -1.
        """

    @abstractmethod
    def count(self) -> int:
        """Number of vectors held."""

    @abstractmethod
    def ids(self) -> np.ndarray:
        """The int64 ids of every vector held."""

    @abstractmethod
    def persist(self, directory: Path, generation: int) -> None:
        """Save what is worth saving for ``generation``, atomically (write, then rename)."""

    def persist_changes(self, directory: Path, generation: int) -> None:
        """Save the changes since the last :meth:`persist` where that is cheap (a few rows written, not
        everything again); else nothing: a later process brings what it restores up to date itself."""

    @classmethod
    def restore(cls, directory: Path, generation: int | None, dim: int, **options) -> SearchBackend | None:
        """The copy persisted for ``generation`` (None: the newest), or None when there is none."""
        return None

    @abstractmethod
    def describe(self) -> dict:
        """What this backend is and holds, as plain JSON values (``kind`` first)."""

    def refit_reason(self) -> str | None:
        """Why the fit behind these codes no longer suits the rows held (a sentence for the user),
        or None: it does, or this backend cannot tell (a collection also refits when it doubles)."""
        return None

    def _selector(self, allowed: np.ndarray | None) -> faiss.SearchParameters | None:
        if allowed is None:
            return None
        return faiss.SearchParameters(sel=faiss.IDSelectorBatch(np.asarray(allowed, dtype=np.int64)))

    def __len__(self) -> int:
        return self.count()
