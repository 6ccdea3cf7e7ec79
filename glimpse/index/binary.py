"""Two-stage search: a scan of compact codes in RAM, then an exact float re-rank.

The codes (``bits / 8`` bytes per image) are the only per-image data the scan touches; the
float vectors stay in the memory-mapped vector file and are read only for the shortlist.

Two ways to scan the codes for the shortlist:

* ``hamming``: binarize the query too and count differing bits (popcount; the fastest).
* ``asymmetric``: keep the query in floats and score it against every code's ±1 bits with
  the binarizer's ``query_vector``. Only the database side is quantised, which matters most
  for queries unlike the vectors the codes were fitted on (text queries against image codes:
  recall@10 after re-rank 0.86 against 0.55 for Hamming, see benchmarks/BINARIZERS_NOTES.md).
  It runs as FAISS product-quantiser ADC over the same code bytes, zero-copy: each byte is a
  sub-quantiser whose 256 centroids are the ±1 patterns of its 8 bits, so nothing is stored
  twice.
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

SCORINGS = ("hamming", "asymmetric")

CODES_FILE = "codes-{generation}.faissbin"
BINARIZER_FILE = "binarizer.npz"


class BinaryIndex(VectorIndex):
    """``IndexBinaryFlat`` over a fitted binarizer's codes, with optional float re-rank.

    ``search`` takes ``k * oversample`` Hamming candidates; with a ``reader`` and
    ``rerank`` it scores them exactly and returns the top ``k``. Without re-rank, scores are
    the Hamming similarity ``1 - 2 * distance / bits`` (in [-1, 1], like a cosine).
    """

    def __init__(self, binarizer: Binarizer, reader: VectorReader | None = None, oversample: int = 10,
                 rerank: bool = True, scoring: str = "hamming"):
        if not binarizer.fitted:
            raise ValueError("the binarizer must be fitted before it can index codes")
        if oversample < 1:
            raise ValueError("oversample must be at least 1")
        self.binarizer = binarizer
        self.dim = binarizer.dim
        self.reader = reader
        self.oversample = oversample
        self.rerank = rerank
        self.scoring = _checked_scoring(scoring)
        self._index = faiss.IndexBinaryIDMap(faiss.IndexBinaryFlat(binarizer.bits))
        self._adc = _sign_pattern_quantizer(binarizer.bits)

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
               oversample: int | None = None, rerank: bool | None = None,
               scoring: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        rerank = (self.rerank if rerank is None else rerank) and self.reader is not None
        available = self.count() if allowed is None else len(allowed)
        k = min(k, available)
        if k <= 0:
            return np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
        shortlist = min(available, k * (oversample or self.oversample)) if rerank else k
        if _checked_scoring(scoring or self.scoring) == "asymmetric":
            scores, ids = self._asymmetric(queries, shortlist, allowed)
        else:
            distances, ids = self._index.search(self.binarizer.encode(queries), shortlist,
                                                params=self._selector(allowed))
            scores = (1.0 - 2.0 * distances / self.binarizer.bits).astype(np.float32)
        if not rerank:
            return scores, ids
        return self._rerank(queries, ids, k)

    def _asymmetric(self, queries: np.ndarray, k: int, allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` by ``query_vector(q) . (±1 code)`` over all codes (or the allowed ones)."""
        weights = self.binarizer.query_vector(queries)
        flat = faiss.downcast_IndexBinary(self._index.index)
        n, width = flat.ntotal, flat.code_size
        positions = None
        if allowed is not None:
            id_map = faiss.rev_swig_ptr(self._index.id_map.data(), n)
            positions = np.flatnonzero(np.isin(id_map, allowed))
        scores = np.full((len(queries), k), -np.inf, np.float32)
        labels = np.full((len(queries), k), -1, np.int64)
        if positions is None:
            codes_ptr, count = flat.xb.data(), n
        else:  # a filter: score only the allowed rows (a gathered copy, rows x bytes)
            picked = np.ascontiguousarray(faiss.rev_swig_ptr(flat.xb.data(), n * width).reshape(n, width)[positions])
            codes_ptr, count = faiss.swig_ptr(picked), len(positions)
        heap = faiss.float_minheap_array_t()
        heap.nh, heap.k = len(queries), k
        heap.ids, heap.val = faiss.swig_ptr(labels), faiss.swig_ptr(scores)
        self._adc.search_ip(faiss.swig_ptr(weights), len(queries), codes_ptr, count, heap, True)
        found = labels >= 0
        rows = labels[found] if positions is None else positions[labels[found]]
        labels[found] = faiss.rev_swig_ptr(self._index.id_map.data(), n)[rows]
        return scores, labels

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


def _checked_scoring(scoring: str) -> str:
    if scoring not in SCORINGS:
        raise ValueError(f"scoring must be one of {', '.join(SCORINGS)}, not {scoring!r}")
    return scoring


def _sign_pattern_quantizer(bits: int) -> faiss.ProductQuantizer:
    """A product quantiser whose codes are packed ±1 bits: byte j holds bits 8j..8j+7.

    Sub-quantiser j's centroid v is the 8 signs of v's bits (least significant first, the
    FAISS bit order of ``pack_bits``), so its inner-product ADC over packed codes computes
    ``query_vector . (±1 bits)`` exactly.
    """
    patterns = ((np.arange(256)[:, None] >> np.arange(8)) & 1).astype(np.float32) * 2 - 1
    quantizer = faiss.ProductQuantizer(bits, bits // 8, 8)
    faiss.copy_array_to_vector(np.tile(patterns, (bits // 8, 1)).ravel(), quantizer.centroids)
    return quantizer
