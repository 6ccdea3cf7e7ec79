"""Retrieval metrics: one place for every figure the evaluation harness and the adaptation check report.

Two layers:

* **Rankings.** :func:`tie_ranks` turns one query's scores over the database into the sorted
  1-based ranks of its relevant items, after *ignored* items (junk, the query itself) are
  removed from the list as if they were never there.
* **Figures from ranks.** Average precision in three published flavours, precision/recall at
  k, reciprocal rank, UKBench's N-S score. All take the ranks, so they never sort again.

**Ties** (Hamming distances: many items share one score) are ranked three ways:

* ``reference`` (the default): tied items in database-index order, as FAISS returns them and
  as DeepHash-pytorch's ``CalcTopMap`` and open_clip's ``argsort`` order them (numpy's default
  sort only promises this for short arrays; a stable sort always keeps it). Papers report this
  figure, so it is the one to compare with them.
* ``pessimistic``: non-relevant items before relevant ones; ``optimistic``: the other way.

Every relevant item is at its worst place in the pessimistic order and its best in the
optimistic one, so the two bound every figure that only gets worse when a relevant item moves
down: AP (:func:`average_precision`, :func:`trapezoid_average_precision`), precision at k
(plain and :func:`revisitop_precision_at_k`), recall at k, reciprocal rank, N-S and median
rank. They do **not** bound :func:`average_precision_at_k`: pushing a relevant item out of the
top k removes it from the average, which can raise it (distances [0, 1, 2, 2], relevant
{0, 2}, k = 3: pessimistic 1.0, optimistic and reference 0.833). A constant scorer over two
items, each query's own item relevant, gets R@1 0.5 in the reference order (open_clip's
figure), 0 pessimistic, 1 optimistic.

The single-relevant helpers (:func:`ranks`, :func:`recall_at_k`, :func:`median_rank`) take a
``(queries, items)`` score matrix and one relevant index per query, with the same tie orders.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

TIES = ("reference", "pessimistic", "optimistic")


# -- rankings -------------------------------------------------------------------------------


def tie_ranks(
    scores: np.ndarray,
    positives: Sequence[int] | np.ndarray,
    ignore: Sequence[int] | np.ndarray = (),
) -> dict[str, np.ndarray]:
    """Sorted 1-based ranks of ``positives`` in one query's ranking, for each order in ``TIES``.

    ``scores`` (items,) is higher-is-better. Items in ``ignore`` are removed before ranking
    (they neither count as errors nor take a place). An item in both counts as a positive, as
    revisitop's ``compute_map`` does; there it is also junk for the positives ranked below it,
    which move up one place (so ranks may repeat), and that is reproduced here too.
    """
    scores = np.asarray(scores, dtype=np.float64).ravel()
    relevant = np.zeros(len(scores), bool)
    relevant[np.asarray(positives, dtype=np.int64)] = True
    ignored = np.zeros(len(scores), bool)
    ignored[np.asarray(ignore, dtype=np.int64)] = True
    keep = ~ignored | relevant
    kept = scores[keep]
    order = np.argsort(-kept, kind="stable")  # the reference order
    sorted_scores, rel = kept[order], relevant[keep][order]
    # Runs of equal scores: the other two orders move relevant items to either end of their run.
    new_run = np.r_[True, sorted_scores[1:] != sorted_scores[:-1]]
    run = np.cumsum(new_run) - 1
    starts = np.flatnonzero(new_run)
    ends = np.r_[starts[1:], len(sorted_scores)]
    places = np.flatnonzero(rel)  # 0-based, reference order
    run_of = run[places]
    in_run = np.bincount(run_of, minlength=len(starts))
    nth = np.arange(len(places)) - np.searchsorted(run_of, run_of)  # j-th relevant item of its run
    both = (ignored[keep][order])[places]
    shift = np.cumsum(both) - both  # overlapping items above: junk for this positive
    return {
        "reference": places - shift + 1,
        "pessimistic": ends[run_of] - in_run[run_of] + nth - shift + 1,
        "optimistic": starts[run_of] + nth - shift + 1,
    }


def query_tie_ranks(
    scores: np.ndarray,
    positives: Sequence[np.ndarray],
    ignore: Sequence[np.ndarray] | None = None,
) -> dict[str, list[np.ndarray]]:
    """:func:`tie_ranks` for each row of a ``(queries, items)`` score matrix, by tie order."""
    if len(positives) != len(scores) or (ignore is not None and len(ignore) != len(scores)):
        raise ValueError("need one positives (and ignore) list per query row")
    out: dict[str, list[np.ndarray]] = {t: [] for t in TIES}
    for row, pos, ign in zip(scores, positives, ignore if ignore is not None else [()] * len(scores)):
        for t, r in tie_ranks(row, pos, ign).items():
            out[t].append(r)
    return out


def first_ranks(ranked: Iterable[np.ndarray]) -> np.ndarray:
    """Rank of each query's best-placed relevant item; ``inf`` when it has none."""
    return np.array([r[0] if len(r) else np.inf for r in ranked], dtype=np.float64)


def _check_ties(ties: str) -> None:
    if ties not in TIES:
        raise ValueError(f"ties must be one of {', '.join(TIES)}, not {ties!r}")


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
    over all relevant ones); 0 when none is in the top k. The pessimistic and optimistic tie
    orders do not bound it (see the module docstring).
    """
    top = np.asarray(ranks_, dtype=np.float64)
    top = top[top <= k]
    if not len(top):
        return 0.0
    return float(np.mean(np.arange(1, len(top) + 1) / top))


def trapezoid_average_precision(ranks_: np.ndarray, n_relevant: int) -> float:
    """AP by the trapezoid rule: INRIA Holidays' ``holidays_map.py`` and revisitop's ``compute_ap``.

    The precision-recall curve is integrated with trapezoids: each relevant item adds
    ``(1 / n_relevant) * (p_before + p_at) / 2``, where for its 0-based position r among the
    j earlier relevant ones ``p_before = j / r`` (1 when r = 0) and ``p_at = (j + 1) / (r + 1)``.
    It is below the non-interpolated AP whenever a relevant item is not at the top: one
    relevant item at rank 2 scores 0.25 (non-interpolated: 0.5).
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


def ranks(scores: np.ndarray, relevant: Sequence[int] | np.ndarray, ties: str = "reference") -> np.ndarray:
    """1-based rank of each query's relevant item, ties ordered by ``ties`` (module docstring)."""
    _check_ties(ties)
    scores = np.asarray(scores)
    relevant = np.asarray(relevant, dtype=np.int64)
    if scores.ndim != 2 or len(relevant) != scores.shape[0]:
        raise ValueError("scores must be (queries, items) with one relevant index per query")
    rel_scores = scores[np.arange(len(relevant)), relevant][:, None]
    above = (scores > rel_scores).sum(axis=1)
    tied = scores == rel_scores  # the relevant item itself included
    if ties == "pessimistic":
        before = tied.sum(axis=1) - 1
    elif ties == "optimistic":
        before = 0
    else:  # tied items with a lower index come first
        before = (tied & (np.arange(scores.shape[1]) < relevant[:, None])).sum(axis=1)
    return (1 + above + before).astype(np.int64)


def recall_at_k(
    scores: np.ndarray, relevant: Sequence[int] | np.ndarray, k: int | Sequence[int], ties: str = "reference"
) -> float | dict[int, float]:
    """Fraction of queries whose relevant item is in the top k (a dict for several k)."""
    r = ranks(scores, relevant, ties)
    if isinstance(k, int):
        return recall_from_ranks(r, k)
    return {int(kk): recall_from_ranks(r, kk) for kk in k}


def median_rank(scores: np.ndarray, relevant: Sequence[int] | np.ndarray, ties: str = "reference") -> float:
    """Median 1-based rank of the relevant item (lower is better), see :func:`median_of_ranks`."""
    return median_of_ranks(ranks(scores, relevant, ties))


def median_of_ranks(ranks_: np.ndarray) -> float:
    """The median rank as open_clip and most papers report it: the floor of the median.

    Ranks [1, 2] give 1 (``np.median`` would give 1.5). NaN without queries.
    """
    ranks_ = np.asarray(ranks_, dtype=np.float64)
    return float(np.floor(np.median(ranks_))) if len(ranks_) else float("nan")
