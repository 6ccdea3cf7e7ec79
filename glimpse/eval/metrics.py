"""Retrieval metrics from a score matrix and one relevant item per query.

``scores[q, j]`` is query q's score for item j (higher is better); ``relevant[q]`` is the
index of q's one relevant item. Ranks are 1-based; ties count against the relevant item
(an item scoring equal to it is ranked ahead), so a constant scorer cannot look good.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def ranks(scores: np.ndarray, relevant: Sequence[int] | np.ndarray) -> np.ndarray:
    """1-based rank of each query's relevant item: 1 + number of items scoring >= it, others."""
    scores = np.asarray(scores)
    relevant = np.asarray(relevant, dtype=np.int64)
    if scores.ndim != 2 or len(relevant) != scores.shape[0]:
        raise ValueError("scores must be (queries, items) with one relevant index per query")
    rel_scores = scores[np.arange(len(relevant)), relevant][:, None]
    # Items at least as good as the relevant one, minus the relevant item itself.
    return (scores >= rel_scores).sum(axis=1).astype(np.int64)


def recall_at_k(
    scores: np.ndarray, relevant: Sequence[int] | np.ndarray, k: int | Sequence[int]
) -> float | dict[int, float]:
    """Fraction of queries whose relevant item is in the top k (a dict for several k)."""
    r = ranks(scores, relevant)
    if isinstance(k, int):
        return float((r <= k).mean()) if len(r) else 0.0
    return {int(kk): float((r <= kk).mean()) if len(r) else 0.0 for kk in k}


def median_rank(scores: np.ndarray, relevant: Sequence[int] | np.ndarray) -> float:
    """Median 1-based rank of the relevant item (lower is better)."""
    r = ranks(scores, relevant)
    return float(np.median(r)) if len(r) else float("nan")
