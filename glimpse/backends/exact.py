"""Exact scoring of stored float vectors: the reference stage of the code backends, and the
re-rank of their shortlists."""

from __future__ import annotations

from collections.abc import Callable

import faiss
import numpy as np

from .base import SearchBackend

#: Reads the float vectors (float16 as stored, or float32) of int64 ids, in the order given.
VectorReader = Callable[[np.ndarray], np.ndarray]

#: FAISS's view of memory it does not own (``MaybeOwnedVector``, FAISS 1.15 here): the re-rank scores the
#: gathered float16 rows where they lie instead of copying them into the index (``add_sa_codes``): 10,000
#: random rows of 1,664-d read and scored in 29 ms with the copy, 19-21 ms without (the read alone 13 ms).
_VIEWS = getattr(faiss, "MaybeOwnedVectorUInt8", None)


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
    """An inner-product index over float16 ``rows``, scoring their bytes in place (it keeps them
    alive), or a copy of them in older FAISS: FAISS's SIMD fp16 conversion measured 7x faster than
    numpy's float16 -> float32 cast for 500 rows."""
    scorer = faiss.IndexScalarQuantizer(rows.shape[1], faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT)
    data = np.ascontiguousarray(rows).view(np.uint8)
    if _VIEWS is None:
        scorer.add_sa_codes(data)
    else:  # with the index's own (null) owner: the view frees nothing; the index keeps the array alive
        scorer.codes = _VIEWS.create_view(faiss.swig_ptr(data), data.size, scorer.codes.owner)
        scorer.ntotal, scorer.referenced_objects = len(rows), [data]
    return scorer


def _top_inner_products(rows: np.ndarray, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top ``k`` of ``rows @ query`` (scores, row positions), best first; float16 rows are
    scored by FAISS's fp16 scan."""
    k = min(k, len(rows))
    if rows.dtype != np.float16:
        exact = rows.astype(np.float32, copy=False) @ query
        best = np.argsort(-exact, kind="stable")[:k]
        return exact[best], best
    if not k:  # FAISS takes no k = 0
        return np.zeros(0, np.float32), np.zeros(0, np.int64)
    scores, best = fp16_scorer(rows).search(query[None].astype(np.float32), k)
    return scores[0], best[0]
