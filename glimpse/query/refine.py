"""Refining the top of a result list: one interface for whatever a backend returned.

(Not the re-rank of binary codes, which scores the code shortlist with the float vectors:
see :mod:`glimpse.backends.binary`.)

A stage takes the query vector, a plain candidate list (ids and scores, best first) and a
reader that returns the stored vectors of ids; it returns a new list (ids, scores), best
first. Stages are pure: the same input gives the same output, and they only look at the
candidates (never the whole collection), so they work on whatever a backend returns.

* ``aqe``, alpha-query-expansion (Radenovic et al.): the query becomes
  ``norm(q + sum_i s_i^alpha * x_i)`` over the top ``n`` candidates, then every candidate is
  re-scored.
* ``superglobal``, after SuperGlobal (Shao et al., ICCV 2023): each of the top ``m``
  candidates is refined with its ``k`` nearest neighbours among the candidates,
  ``x~_c = norm(x_c + sum_j s_cj^beta * x_j)``; the query is expanded the same way with its
  top ``k``; the score is ``(q . x~_c + q~ . x_c) / 2``. Candidates past ``m`` keep their
  order after them.

Whether they help is measured in ``benchmarks/QUERY_NOTES.md``; search uses them only where
they did.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..encoders import l2_normalize

#: Reads float32 vectors for int64 ids (the collection's vector store).
VectorReader = Callable[[np.ndarray], np.ndarray]

REFINES = ("aqe", "superglobal")

#: How many candidates a refining search takes before refining them.
CANDIDATES = 100


def refine(
    method: str,
    query: np.ndarray,
    ids: np.ndarray,
    scores: np.ndarray,
    read: VectorReader,
    **options,
) -> tuple[np.ndarray, np.ndarray]:
    """Re-order ``ids`` (best first, with their ``scores``) for ``query`` with ``method``."""
    stages = {"aqe": alpha_qe, "superglobal": superglobal}
    if method not in stages:
        raise ValueError(f"unknown refine method {method!r}: use one of {', '.join(REFINES)} (or none)")
    ids = np.asarray(ids, dtype=np.int64)
    scores = np.asarray(scores, dtype=np.float32)
    if ids.ndim != 1 or ids.shape != scores.shape:
        raise ValueError("ids and scores must be 1-d and the same length")
    if len(ids) < 2:
        return ids.copy(), scores.copy()
    vectors = np.asarray(read(ids), dtype=np.float32)
    q = np.asarray(query, dtype=np.float32).reshape(-1)
    return stages[method](q, ids, scores, vectors, **options)


def alpha_qe(q, ids, scores, vectors, *, n: int = 3, alpha: float = 3.0):
    top = np.argsort(-scores, kind="stable")[:n]
    weights = np.clip(scores[top], 0.0, None) ** alpha
    expanded = l2_normalize(q + weights @ vectors[top])
    return _sorted(ids, vectors @ expanded)


def superglobal(q, ids, scores, vectors, *, m: int = 100, k: int = 5, beta: float = 1.0):
    order = np.argsort(-scores, kind="stable")
    ids, scores, vectors = ids[order], scores[order], vectors[order]
    m = min(m, len(ids))
    k = min(k, len(ids) - 1)
    head = vectors[:m]
    sims = head @ vectors.T  # each refined candidate against every candidate
    sims[np.arange(m), np.arange(m)] = -np.inf  # a candidate is not its own neighbour
    neighbours = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    weights = np.clip(np.take_along_axis(sims, neighbours, axis=1), 0.0, None) ** beta
    refined = l2_normalize(head + np.einsum("mk,mkd->md", weights, vectors[neighbours]))
    query_weights = np.clip(scores[:k], 0.0, None) ** beta
    expanded = l2_normalize(q + query_weights @ refined[:k])
    new = 0.5 * (refined @ q + head @ expanded)
    head_order = np.argsort(-new, kind="stable")
    out_ids = np.concatenate([ids[:m][head_order], ids[m:]])
    # The tail keeps its order below the re-scored head.
    tail = np.minimum(scores[m:], new.min()) if m < len(ids) else scores[m:]
    return out_ids, np.concatenate([new[head_order], tail]).astype(np.float32)


def _sorted(ids: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(-scores, kind="stable")
    return ids[order], scores[order].astype(np.float32)
