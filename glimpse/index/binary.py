"""Two-stage search: a Hamming scan of compact codes in RAM, then an exact float re-rank.

The codes (``bits / 8`` bytes per image) are the only per-image data the scan touches; the
float vectors stay in the memory-mapped vector file and are read only for the shortlist.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import faiss
import numpy as np

from ..codes import Binarizer, load_binarizer
from .base import VectorIndex

#: Reads float32 vectors for int64 ids (the collection's vector store).
VectorReader = Callable[[np.ndarray], np.ndarray]

CODES_FILE = "codes-{generation}.faissbin"
BINARIZER_FILE = "binarizer.npz"


class BinaryIndex(VectorIndex):
    """``IndexBinaryFlat`` over a fitted binarizer's codes, with optional float re-rank.

    ``search`` takes ``k * oversample`` Hamming candidates; with a ``reader`` and
    ``rerank`` it scores them exactly and returns the top ``k``. Without re-rank, scores are
    the Hamming similarity ``1 - 2 * distance / bits`` (in [-1, 1], like a cosine).
    """

    def __init__(self, binarizer: Binarizer, reader: VectorReader | None = None, oversample: int = 10,
                 rerank: bool = True):
        if not binarizer.fitted:
            raise ValueError("the binarizer must be fitted before it can index codes")
        if oversample < 1:
            raise ValueError("oversample must be at least 1")
        self.binarizer = binarizer
        self.dim = binarizer.dim
        self.reader = reader
        self.oversample = oversample
        self.rerank = rerank
        self._index = faiss.IndexBinaryIDMap(faiss.IndexBinaryFlat(binarizer.bits))

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if len(ids):
            self.add_codes(ids, self.binarizer.encode(np.asarray(vectors, dtype=np.float32)))

    def add_codes(self, ids: np.ndarray, codes: np.ndarray) -> None:
        self._index.add_with_ids(np.ascontiguousarray(codes, dtype=np.uint8), np.asarray(ids, dtype=np.int64))

    def remove(self, ids: np.ndarray) -> int:
        if not len(ids):
            return 0
        return int(self._index.remove_ids(faiss.IDSelectorBatch(np.asarray(ids, dtype=np.int64))))

    def count(self) -> int:
        return int(self._index.ntotal)

    def search(self, queries: np.ndarray, k: int, *, allowed: np.ndarray | None = None,
               oversample: int | None = None, rerank: bool | None = None) -> tuple[np.ndarray, np.ndarray]:
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        rerank = (self.rerank if rerank is None else rerank) and self.reader is not None
        available = self.count() if allowed is None else len(allowed)
        k = min(k, available)
        if k <= 0:
            return np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
        shortlist = min(available, k * (oversample or self.oversample)) if rerank else k
        distances, ids = self._index.search(self.binarizer.encode(queries), shortlist,
                                            params=self._selector(allowed))
        if not rerank:
            return (1.0 - 2.0 * distances / self.binarizer.bits).astype(np.float32), ids
        return self._rerank(queries, ids, k)

    def _rerank(self, queries: np.ndarray, candidates: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        out_scores = np.full((len(queries), k), -np.inf, np.float32)
        out_ids = np.full((len(queries), k), -1, np.int64)
        for row, (query, ids) in enumerate(zip(queries, candidates)):
            ids = ids[ids >= 0]
            order = np.argsort(ids)  # sorted reads are kinder to the memory map
            exact = self.reader(ids[order]) @ query
            best = np.argsort(-exact, kind="stable")[:k]
            out_scores[row, : len(best)] = exact[best]
            out_ids[row, : len(best)] = ids[order][best]
        return out_scores, out_ids

    def persist(self, directory: Path, generation: int) -> None:
        directory = Path(directory)
        self.binarizer.save(directory / BINARIZER_FILE)
        target = directory / CODES_FILE.format(generation=generation)
        tmp = target.with_suffix(".tmp")
        faiss.write_index_binary(self._index, str(tmp))
        os.replace(tmp, target)
        for old in directory.glob(CODES_FILE.format(generation="*")):
            if old != target:
                old.unlink(missing_ok=True)

    @classmethod
    def restore(cls, directory: Path, generation: int, dim: int) -> BinaryIndex | None:
        directory = Path(directory)
        codes = directory / CODES_FILE.format(generation=generation)
        if not codes.exists() or not (directory / BINARIZER_FILE).exists():
            return None
        binarizer = load_binarizer(directory / BINARIZER_FILE)
        if binarizer.dim != dim:
            return None
        index = cls(binarizer)
        index._index = faiss.read_index_binary(str(codes))
        return index
