"""Score one task under one configuration: rankings -> the protocol's figures.

Protocols (``Task.protocol``), each reporting the figures its benchmark publishes:

* ``recall`` (captioned pairs): R@1/5/10, MRR and median rank of the first relevant item
  (open_clip's: the floor of the median).
* ``copy`` (copy detection): mAP (one relevant item: AP = 1 / rank) and R@1, R@10, also per
  edit kind.
* ``groups`` (Holidays, UKBench): mAP as INRIA's ``holidays_map.py`` scores Holidays (trapezoid
  rule, the query removed from its own ranking); UKBench's N-S score (relevant items in the
  top 4, the query counting) when ``options["ns"]``.
* ``revisitop``: mAP and mP@1/5/10 for Easy, Medium and Hard as revisitop's ``compute_map``
  (trapezoid AP; P@k cut at the last positive; an image both positive and junk is a positive).
* ``hashing`` (labelled classes): mAP@all and mAP@k as DeepHash-pytorch's ``CalcTopMap``.
* ``composed``: R@K (reference image excluded) and, for CIRR, R_subset@1/2/3.

Figures are in the reference tie order (ties by database index, as FAISS returns them and
the reference implementations rank them); ``TaskScore.bounds`` holds the same figures with
ties ordered pessimistically and optimistically (see :mod:`glimpse.metrics` for which
figures they bound). Every task also gets the R@K curve (K = 1..100) of its first relevant
item and a per-query ``quality`` in [0, 1] (reciprocal rank, or AP) that picks the worst
queries for the report.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .. import metrics as m
from .tasks import Judgement, Task

CURVE_KS = (1, 2, 3, 5, 7, 10, 15, 20, 30, 50, 70, 100)
TOP_SHOWN = 5
CHUNK = 256


@dataclass
class TaskScore:
    figures: dict[str, float]  # reference tie order
    breakdown: dict[str, dict[str, float]] = field(default_factory=dict)
    curve: dict[int, float] = field(default_factory=dict)
    quality: np.ndarray | None = None  # per query, higher is better
    top: np.ndarray | None = None  # (queries, TOP_SHOWN) best database indices, ignored ones removed
    bounds: dict[str, dict[str, float]] = field(default_factory=dict)  # "pessimistic"/"optimistic" -> figures


def score_task(task: Task, scores: Callable[[np.ndarray], np.ndarray], n_queries: int) -> TaskScore:
    """``scores(query indices) -> (len, items)`` for the configuration; chunks bound memory."""
    ranked: dict[str, dict[str, list[np.ndarray]]] = {t: {name: [] for name in task.judgements} for t in m.TIES}
    main = next(iter(task.judgements))  # the first judgement is the task's main one
    tops = []
    for start in range(0, n_queries, CHUNK):
        rows = np.arange(start, min(n_queries, start + CHUNK))
        s = scores(rows)
        for name, j in task.judgements.items():
            ignore = None if j.ignore is None else [j.ignore[r] for r in rows]
            for t, r in m.query_tie_ranks(s, [j.positives[r] for r in rows], ignore).items():
                ranked[t][name] += r
        tops.append(_top(s, task.judgements[main], rows))
    figures = _FIGURES[task.protocol]
    result = figures(task, ranked["reference"])
    result.bounds = {t: figures(task, ranked[t]).figures for t in ("pessimistic", "optimistic")}
    first = m.first_ranks(ranked["reference"][main])
    result.curve = {k: m.recall_from_ranks(first, k) for k in CURVE_KS}
    result.top = np.concatenate(tops) if tops else np.zeros((0, TOP_SHOWN), np.int64)
    if result.quality is None:
        result.quality = 1.0 / first
    for name, subset in task.breakdown.items():
        if len(subset):
            result.breakdown[name] = _recall_figures(first[subset], (1, 10)) | {"queries": float(len(subset))}
    return result


def _top(s: np.ndarray, j: Judgement, rows: np.ndarray) -> np.ndarray:
    s = np.array(s, dtype=np.float64)
    if j.ignore is not None:
        for i, r in enumerate(rows):  # an item also positive stays (see metrics.tie_ranks)
            s[i, np.setdiff1d(j.ignore[r], j.positives[r])] = -np.inf
    k = min(TOP_SHOWN, s.shape[1])
    return np.argsort(-s, axis=1, kind="stable")[:, :k]


def _recall_figures(first: np.ndarray, ks=(1, 5, 10)) -> dict[str, float]:
    return {f"R@{k}": m.recall_from_ranks(first, k) for k in ks}


def _recall(task: Task, ranked) -> TaskScore:
    first = m.first_ranks(ranked[""])
    figures = _recall_figures(first) | {"MRR": m.mean_reciprocal_rank(first), "median rank": m.median_of_ranks(first)}
    return TaskScore(figures)


def _copy(task: Task, ranked) -> TaskScore:
    aps = np.array([m.average_precision(r, len(p)) for r, p in zip(ranked[""], task.judgements[""].positives)])
    first = m.first_ranks(ranked[""])
    return TaskScore({"mAP": m.nan_mean(aps)} | _recall_figures(first, (1, 10)), quality=np.nan_to_num(aps))


def _groups(task: Task, ranked) -> TaskScore:
    positives = task.judgements[""].positives
    aps = np.array([m.trapezoid_average_precision(r, len(p)) for r, p in zip(ranked[""], positives)])
    figures = {"mAP": m.nan_mean(aps)} | _recall_figures(m.first_ranks(ranked[""]), (1, 10))
    if task.options.get("ns"):
        figures["N-S"] = float(np.mean([m.count_in_top(r, 4) for r in ranked["with query"]]))
    return TaskScore(figures, quality=np.nan_to_num(aps, nan=1.0))


def _revisitop(task: Task, ranked) -> TaskScore:
    figures: dict[str, float] = {}
    quality = None
    for setup in ("E", "M", "H"):
        judgement = task.judgements[setup]
        aps = [m.trapezoid_average_precision(r, len(p)) for r, p in zip(ranked[setup], judgement.positives)]
        figures[f"{setup} mAP"] = m.nan_mean(aps)
        for k in (1, 5, 10):
            figures[f"{setup} mP@{k}"] = m.nan_mean(m.revisitop_precision_at_k(r, k) for r in ranked[setup])
        if setup == "M":
            quality = np.nan_to_num(np.array(aps), nan=1.0)
    return TaskScore(figures, quality=quality)


def _hashing(task: Task, ranked) -> TaskScore:
    positives = task.judgements[""].positives
    k = task.options["map_at"]
    aps = np.array([m.average_precision(r, len(p)) if len(p) else 0.0 for r, p in zip(ranked[""], positives)])
    figures = {"mAP": float(aps.mean()), f"mAP@{k}": float(np.mean([m.average_precision_at_k(r, k) for r in ranked[""]]))}
    return TaskScore(figures | _recall_figures(m.first_ranks(ranked[""]), (1,)), quality=aps)


def _composed(task: Task, ranked) -> TaskScore:
    figures = _recall_figures(m.first_ranks(ranked[""]), task.options.get("ks", (1, 5, 10, 50)))
    if "subset" in ranked:
        sub = m.first_ranks(ranked["subset"])
        figures |= {f"R_subset@{k}": m.recall_from_ranks(sub, k) for k in (1, 2, 3)}
    return TaskScore(figures)


_FIGURES = {"recall": _recall, "copy": _copy, "groups": _groups, "revisitop": _revisitop, "hashing": _hashing,
            "composed": _composed}

#: The figure each protocol is summarised by in plots (quality against bits and latency).
HEADLINE = {"recall": "R@10", "copy": "mAP", "groups": "mAP", "revisitop": "M mAP", "hashing": "mAP",
            "composed": "R@10"}
