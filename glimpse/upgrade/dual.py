"""Dual-space scoring while a backfill runs: each image scored in the space its real vector is in.

Until the backfill reaches an image, its vector in the new space is a mapped one (lossy: mapped
lite0 -> lite2 vectors hold a cosine of about 0.8 to the true ones), but its old vector is still
stored and the old encoder still loads. A text or image query is then encoded by both encoders:
images not re-embedded yet are scored in the old space (old query against old vectors: old/old
quality), re-embedded and newly added ones in the new space (new/new), and the two lists merged.

The scales differ, so old-space scores are put on the new one per query, from the images embedded
by both encoders (the sample and those the backfill re-embedded so far, whose old vectors are still
stored): the query's scores on them in each space give a mean and a spread, and an old score keeps
its standing (``(s - mean) / spread``) on the new scale.
This is monotone, so the old-space list keeps its old/old order; the benchmark measured it
against no calibration (``benchmarks/upgrade.py``). Queries that exist in one space only (a raw
vector, ``like``, composed queries, weighted terms) are scored through the map as before.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..encoders import Encoder
from ..storage import VectorStore

#: At most this many images embedded by both encoders calibrate a query (a seeded choice of them).
CALIBRATION_ITEMS = 2000
#: How old-space scores are put on the new scale: ``query`` (the sample's per-query standing, the
#: default) or ``raw`` (no calibration: the benchmark's baseline).
SCALES = ("query", "raw")


def calibration_items(reembedded: np.ndarray, live: np.ndarray) -> np.ndarray:
    """The images a query's scales are measured on: live ones of those re-embedded so far (the sample,
    then the backfill: each has both vectors), at most ``CALIBRATION_ITEMS`` of them, sorted."""
    both = np.intersect1d(reembedded, live)
    return np.sort(np.random.default_rng(0).permutation(both)[:CALIBRATION_ITEMS])


def on_new_scale(old: np.ndarray, sample_old: np.ndarray, sample_new: np.ndarray, scale: str = "query") -> np.ndarray:
    """Old-space scores of a query (``old``) on its new-space scale, from its scores on the sample in
    both spaces (``sample_old``, ``sample_new``: the same images, last axis; queries may be stacked
    on the first). Monotone increasing in ``old``."""
    if scale == "raw" or sample_old.shape[-1] < 2:
        return old
    mean_old, mean_new = sample_old.mean(axis=-1, keepdims=True), sample_new.mean(axis=-1, keepdims=True)
    spread_old = np.maximum(sample_old.std(axis=-1, keepdims=True), 1e-9)
    return mean_new + (old - mean_old) * (sample_new.std(axis=-1, keepdims=True) / spread_old)


@dataclass
class DualSpace:
    """What dual-space scoring needs at one committed state of a backfill."""

    encoder: Encoder  # the old encoder
    store: VectorStore  # the old vectors (same rows as the collection's)
    rows: int
    pending: np.ndarray  # sorted live ids not re-embedded yet: scored in the old space
    settled: np.ndarray  # sorted live ids with real new vectors: scored in the new space
    sample_old: np.ndarray  # the calibration images' vectors in the old space (calibration_items)
    sample_new: np.ndarray  # and in the new one (same images, same order)
    scale: str = "query"

    def scorer(self, old_query: np.ndarray, new_query: np.ndarray):
        """``ids -> old-space scores on the new scale``, for this query (ids of pending items)."""
        sample_old, sample_new = self.sample_old @ old_query, self.sample_new @ new_query

        def score(ids: np.ndarray) -> np.ndarray:
            if not len(ids):
                return np.zeros(0, np.float32)
            old = self.store.read(ids, self.rows) @ old_query
            return on_new_scale(old, sample_old, sample_new, self.scale).astype(np.float32)

        return score

    def settled_among(self, allowed: np.ndarray | None) -> np.ndarray:
        """The items the new space's index searches: ``allowed`` ones (None: all) with real new vectors."""
        return self.settled if allowed is None else np.setdiff1d(allowed, self.pending)

    def rescored(self, ids: np.ndarray, new: np.ndarray, score) -> np.ndarray:
        """New-space scores ``new`` of ``ids``, with those of pending items replaced by ``score``'s."""
        out = np.array(new, np.float32)
        pending = np.isin(ids, self.pending)
        out[pending] = score(ids[pending])
        return out

    def best_pending(self, score, allowed: np.ndarray | None, exclude: set[int], want: int,
                     chunk: int = 65536) -> list[tuple[int, float]]:
        """The ``want`` best pending items (``allowed`` ones, none of ``exclude``): an exact scan."""
        ids = self.pending if allowed is None else np.intersect1d(self.pending, allowed, assume_unique=True)
        if exclude:
            ids = ids[~np.isin(ids, np.fromiter(exclude, np.int64))]
        best_ids, best_scores = np.zeros(0, np.int64), np.zeros(0, np.float32)
        for start in range(0, len(ids), chunk):  # bounded memory on a large backlog
            part = ids[start : start + chunk]
            best_ids, best_scores = np.concatenate([best_ids, part]), np.concatenate([best_scores, score(part)])
            if len(best_ids) > want:
                top = np.argpartition(-best_scores, want - 1)[:want]
                best_ids, best_scores = best_ids[top], best_scores[top]
        return list(zip(best_ids.tolist(), best_scores.tolist()))


def merged(*lists: list[tuple[int, float]]) -> list[tuple[int, float]]:
    """Hits of both spaces in one ranking, best first (ties by id)."""
    return sorted((hit for hits in lists for hit in hits), key=lambda x: (-x[1], x[0]))
