"""Retrieval metrics: one place for every figure the evaluation harness reports.

Two layers:

* **Rankings.** :func:`positive_ranks` turns one query's scores over the database into the
  sorted 1-based ranks of its relevant items, after *ignored* items (junk, the query itself)
  are removed from the list as if they were never there.
* **Figures from ranks.** Average precision in three published flavours, precision/recall at
  k, reciprocal rank, UKBench's N-S score. All take the ranks, so they never sort again.

**Tie rule** (matters for Hamming distances, where many items share one score): items that
score exactly equal are ordered *pessimistically* by default: non-relevant before relevant.
The figure is then a lower bound that no tie-break order can go below, the same for every
run and implementation, and a constant scorer cannot look good. ``ties="optimistic"`` puts
relevant items first (the upper bound); the gap between the two is how much of a hashing
mAP is tie-breaking luck (the irreproducibility of DeepHash-pytorch #33, where an unstable
``argsort`` decides).

The single-relevant helpers (:func:`ranks`, :func:`recall_at_k`, :func:`median_rank`) take a
``(queries, items)`` score matrix and one relevant index per query, with the same tie rule.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

TIES = ("pessimistic", "optimistic")


# -- rankings -------------------------------------------------------------------------------


def positive_ranks(
    scores: np.ndarray,
    positives: Sequence[int] | np.ndarray,
    ignore: Sequence[int] | np.ndarray = (),
    ties: str = "pessimistic",
) -> np.ndarray:
    """Sorted 1-based ranks of ``positives`` in one query's ranking of the database.

    ``scores`` (items,) is higher-is-better. Items in ``ignore`` are removed before ranking
    (they neither count as errors nor take a place), and win over ``positives`` when an item
    is in both. Ties follow ``ties`` (see the module docstring).
    """
    if ties not in TIES:
        raise ValueError(f"ties must be one of {', '.join(TIES)}, not {ties!r}")
    scores = np.asarray(scores, dtype=np.float64).ravel()
    keep = np.ones(len(scores), bool)
    keep[np.asarray(ignore, dtype=np.int64)] = False
    relevant = np.zeros(len(scores), bool)
    relevant[np.asarray(positives, dtype=np.int64)] = True
    relevant, kept_scores = relevant[keep], scores[keep]
    # lexsort: last key is primary. Score descending, then the tie key ascending.
    tie_key = relevant if ties == "pessimistic" else ~relevant
    order = np.lexsort((tie_key, -kept_scores))
    return np.flatnonzero(relevant[order]) + 1


def query_positive_ranks(
    scores: np.ndarray,
    positives: Sequence[np.ndarray],
    ignore: Sequence[np.ndarray] | None = None,
    ties: str = "pessimistic",
) -> list[np.ndarray]:
    """:func:`positive_ranks` for each row of a ``(queries, items)`` score matrix."""
    if len(positives) != len(scores) or (ignore is not None and len(ignore) != len(scores)):
        raise ValueError("need one positives (and ignore) list per query row")
    return [
        positive_ranks(row, pos, () if ignore is None else ign, ties)
        for row, pos, ign in zip(scores, positives, ignore if ignore is not None else [()] * len(scores))
    ]


def first_ranks(ranked: Iterable[np.ndarray]) -> np.ndarray:
    """Rank of each query's best-placed relevant item; ``inf`` when it has none."""
    return np.array([r[0] if len(r) else np.inf for r in ranked], dtype=np.float64)


# -- figures from ranks ---------------------------------------------------------------------


def average_precision(ranks_: np.ndarray, n_relevant: int | None = None) -> float:
    """Non-interpolated AP: mean over relevant items of precision at their rank.

    ``n_relevant`` defaults to ``len(ranks_)``; relevant items never retrieved count 0.
    """
    ranks_ = np.asarray(ranks_, dtype=np.float64)
    n = len(ranks_) if n_relevant is None else n_relevant
    if n == 0:
        return float("nan")
    return float((np.arange(1, len(ranks_) + 1) / ranks_).sum() / n)


def average_precision_at_k(ranks_: np.ndarray, k: int) -> float:
    """AP@k of the hashing literature (DeepHash-pytorch ``CalcTopMap``).

    Precision at each relevant item within the top ``k``, averaged over *those* items (not
    over all relevant ones); 0 when none is in the top k.
    """
    top = np.asarray(ranks_, dtype=np.float64)
    top = top[top <= k]
    if not len(top):
        return 0.0
    return float(np.mean(np.arange(1, len(top) + 1) / top))


def revisitop_average_precision(ranks_: np.ndarray, n_relevant: int) -> float:
    """AP as the Revisited Oxford/Paris protocol defines it (``compute_ap`` in revisitop).

    The precision-recall curve is integrated with trapezoids: each relevant item adds
    ``(1 / n_relevant) * (p_before + p_at) / 2``, where for its 0-based position r among the
    j earlier relevant ones ``p_before = j / r`` (1 when r = 0) and ``p_at = (j + 1) / (r + 1)``.
    It is below the non-interpolated AP whenever a relevant item is not at the top.
    """
    if n_relevant == 0:
        return float("nan")
    r = np.asarray(ranks_, dtype=np.float64) - 1  # 0-based positions
    j = np.arange(len(r), dtype=np.float64)
    before = np.where(r == 0, 1.0, j / np.maximum(r, 1))
    at = (j + 1) / (r + 1)
    return float(((before + at) / 2).sum() / n_relevant)


def revisitop_precision_at_k(ranks_: np.ndarray, k: int) -> float:
    """Precision@k as revisitop computes it: over ``min(k, rank of the last relevant)``.

    The protocol's cut-off shrinks to the last relevant item, so a query with 2 relevant
    images, both at the top, has P@10 = 1 (not 0.2). NaN for a query without relevant items.
    """
    r = np.asarray(ranks_)
    if not len(r):
        return float("nan")
    cut = min(int(r.max()), k)
    return float((r <= cut).sum() / cut)


def precision_at_k(ranks_: np.ndarray, k: int) -> float:
    """Plain precision@k: relevant items in the top k, over k."""
    return float((np.asarray(ranks_) <= k).sum() / k)


def count_in_top(ranks_: np.ndarray, k: int) -> int:
    """Relevant items in the top k: UKBench's N-S score with k = 4 (the query counts)."""
    return int((np.asarray(ranks_) <= k).sum())


def recall_from_ranks(first: np.ndarray, k: int) -> float:
    """Fraction of queries whose first relevant item is in the top k."""
    first = np.asarray(first, dtype=np.float64)
    return float((first <= k).mean()) if len(first) else 0.0


def mean_reciprocal_rank(first: np.ndarray) -> float:
    """Mean of 1 / rank of the first relevant item (0 for queries that have none)."""
    first = np.asarray(first, dtype=np.float64)
    return float((1.0 / first).mean()) if len(first) else 0.0


def nan_mean(values: Iterable[float]) -> float:
    """Mean that skips NaN (queries without relevant items, as revisitop skips them)."""
    v = np.asarray(list(values), dtype=np.float64)
    v = v[~np.isnan(v)]
    return float(v.mean()) if len(v) else float("nan")


# -- one relevant item per query, from a score matrix ---------------------------------------


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
        return recall_from_ranks(r, k)
    return {int(kk): recall_from_ranks(r, kk) for kk in k}


def median_rank(scores: np.ndarray, relevant: Sequence[int] | np.ndarray) -> float:
    """Median 1-based rank of the relevant item (lower is better)."""
    r = ranks(scores, relevant)
    return float(np.median(r)) if len(r) else float("nan")
