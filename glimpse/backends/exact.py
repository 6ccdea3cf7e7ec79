"""Exact scoring of stored float vectors: the reference stage of the code backends, and the
re-rank of their shortlists."""

from __future__ import annotations

import threading
from collections.abc import Callable

import faiss
import numpy as np

from .base import SearchBackend

#: Reads the float vectors (float16 as stored, or float32) of int64 ids, in the order given.
VectorReader = Callable[[np.ndarray], np.ndarray]

#: float16 rows a re-rank scores per FAISS call, through one index kept per thread: a fresh
#: index's buffer of a few MB is new memory on every call (1,333 rows of 1,664-d: 7.6 ms,
#: against 0.8 ms refilling a kept one, under load), and this bounds what a thread keeps (6.8 MB).
RERANK_ROWS = 2048
_kept = threading.local()


def held_ids(backend: SearchBackend, allowed: np.ndarray | None) -> np.ndarray:
    """The ids ``backend`` holds (only those in ``allowed``, when given), ascending."""
    held = np.sort(backend.ids())
    return held if allowed is None else np.intersect1d(held, allowed)


def exact_scan(reader: VectorReader, queries: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The rows of sorted ``ids`` scored exactly for all queries (the reference a code stage is
    measured against), one scan per 65,536 rows so the float copies stay small."""
    k = min(k, len(ids))
    scores = np.full((len(queries), k), -np.inf, np.float32)
    found = np.full((len(queries), k), -1, np.int64)
    for start in range(0, len(ids) if k else 0, 65536):  # FAISS takes no k = 0
        chunk = ids[start : start + 65536]
        rows = reader(chunk)
        if rows.dtype == np.float16:
            scorer = fp16_scorer(rows)
        else:
            scorer = faiss.IndexFlatIP(rows.shape[1])
            scorer.add(np.ascontiguousarray(rows, dtype=np.float32))
        got_scores, positions = scorer.search(queries, k)
        merged_scores = np.concatenate([scores, got_scores], axis=1)
        merged = np.concatenate([found, np.where(positions >= 0, chunk[np.maximum(positions, 0)], -1)], axis=1)
        best = np.argsort(-merged_scores, axis=1, kind="stable")[:, :k]
        scores, found = np.take_along_axis(merged_scores, best, 1), np.take_along_axis(merged, best, 1)
    return scores, found


def exact_top(reader: VectorReader, query: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The top ``k`` of ``ids`` (none -1) by the inner product of their stored vectors with
    ``query``: (scores, ids), best first."""
    ids = np.sort(ids)  # sorted reads are kinder to the memory map
    scores, best = _top_inner_products(reader(ids), query, k)
    return scores, ids[best]


def fp16_scorer(rows: np.ndarray) -> faiss.IndexScalarQuantizer:
    """An inner-product index over float16 ``rows``, filled straight from their bytes: FAISS's
    SIMD fp16 conversion measured 7x faster than numpy's float16 -> float32 cast for 500 rows."""
    scorer = faiss.IndexScalarQuantizer(rows.shape[1], faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT)
    scorer.add_sa_codes(np.ascontiguousarray(rows).view(np.uint8))
    return scorer


def _top_inner_products(rows: np.ndarray, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top ``k`` of ``rows @ query`` (scores, row positions), best first; float16 rows are
    scored by FAISS's fp16 scan, ``RERANK_ROWS`` at a time through this thread's kept index."""
    k = min(k, len(rows))
    if rows.dtype != np.float16:
        exact = rows.astype(np.float32, copy=False) @ query
        best = np.argsort(-exact, kind="stable")[:k]
        return exact[best], best
    scorer = _kept_scorer(rows.shape[1])
    query = query[None].astype(np.float32)
    scores, best = np.zeros(0, np.float32), np.zeros(0, np.int64)
    for start in range(0, len(rows) if k else 0, RERANK_ROWS):
        scorer.reset()  # keeps the buffer's capacity
        scorer.add_sa_codes(np.ascontiguousarray(rows[start : start + RERANK_ROWS]).view(np.uint8))
        got_scores, got = scorer.search(query, min(k, scorer.ntotal))
        scores, best = np.concatenate([scores, got_scores[0]]), np.concatenate([best, got[0] + start])
        order = np.argsort(-scores, kind="stable")[:k]
        scores, best = scores[order], best[order]
    scorer.reset()
    return scores, best


def _kept_scorer(dim: int) -> faiss.IndexScalarQuantizer:
    """This thread's fp16 inner-product index for ``dim``-d rows (made once per thread and dim)."""
    scorer = getattr(_kept, "scorer", None)
    if scorer is None or scorer.d != dim:
        scorer = _kept.scorer = faiss.IndexScalarQuantizer(dim, faiss.ScalarQuantizer.QT_fp16,
                                                           faiss.METRIC_INNER_PRODUCT)
    return scorer
