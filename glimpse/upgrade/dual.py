"""Dual-space scoring while a backfill runs: each image scored in the spaces its real vectors are in.

Until the backfill reaches an image, its vector in the new space is a mapped one (lossy: mapped
lite0 -> lite2 vectors hold a cosine of about 0.8 to the true ones), but its old vector is still
stored and the old encoder still loads. A text or image query is then encoded by both encoders:
images not re-embedded yet are scored in the old space (old query against old vectors: old/old
quality), images added since the switch in the new space (new/new), re-embedded ones in both
(below), and the lists merged.

The scales differ, so old-space scores are put on the new one per query, from the images embedded
by both encoders (the sample and those the backfill re-embedded so far, whose old vectors are still
stored): the query's scores on them in each space give two distributions, and an old score takes
the new score at the same quantile (``quantile``; beyond the extremes, linearly with the ratio of
spreads). This is monotone, so the images still waiting keep their old/old order.

A re-embedded image that was there before the switch has both vectors, and its score moves from its
old standing to its new one as the backfill advances: ``(1 - w) * old + w * new`` on the new scale,
``w`` the share of those images re-embedded. Scoring each re-embedded image in the new space alone
made the ranking a random mixture of two spaces (which images moved decides which space's mistakes
count): text R@10 fell below the level of both ends of the backfill (``benchmarks/upgrade.py --replay``).
Queries that exist in one space only (a raw vector, ``like``, composed queries, weighted terms) are
scored through the map as before.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from ..encoders import Encoder
from ..storage import VectorStore

#: At most this many images embedded by both encoders calibrate a query (a seeded choice of them).
CALIBRATION_ITEMS = 2000


#: Texts that tell whether two encoders share their text vectors (lite0-minilm and lite2-minilm do:
#: both are MiniLM's): then a text query is encoded once, not once per space.
PROBES = ("a photo of a dog on a beach.", "a red car parked in a street at night.", "two people eating pizza indoors")


def same_text_space(old: Encoder, new: Encoder) -> bool:
    """Whether ``old`` and ``new`` give the same text vectors (within float noise) on the ``PROBES``."""
    if old.dim != new.dim:
        return False
    try:
        return bool(np.abs(old.encode_texts(list(PROBES)) - new.encode_texts(list(PROBES))).max() < 1e-5)
    except (NotImplementedError, ValueError):  # an encoder without a text tower
        return False


def calibration_items(reembedded: np.ndarray, live: np.ndarray) -> np.ndarray:
    """The images a query's scales are measured on: live ones of those re-embedded so far (the sample,
    then the backfill: each has both vectors), at most ``CALIBRATION_ITEMS`` of them, sorted."""
    both = np.intersect1d(reembedded, live)
    return np.sort(np.random.default_rng(0).permutation(both)[:CALIBRATION_ITEMS])


def on_new_scale(old: np.ndarray, sample_old: np.ndarray, sample_new: np.ndarray, scale: str = "quantile") -> np.ndarray:
    """Old-space scores of a query (``old``) on its new-space scale, from its scores on the sample in
    both spaces (``sample_old``, ``sample_new``: the same images, last axis; queries may be stacked
    on the first). Monotone increasing in ``old``. ``scale``: ``quantile`` (the engine's), ``standing``
    (the same ``(s - mean) / spread`` on both scales: the previous default) or ``raw`` (no calibration):
    the last two are the benchmark's baselines."""
    if scale == "raw" or sample_old.shape[-1] < 2:
        return old
    spread_old = np.maximum(sample_old.std(axis=-1, keepdims=True), 1e-9)
    ratio = sample_new.std(axis=-1, keepdims=True) / spread_old
    if scale == "standing":
        return sample_new.mean(axis=-1, keepdims=True) + (old - sample_old.mean(axis=-1, keepdims=True)) * ratio
    if old.ndim == 1:
        return _quantile_mapped(old, np.sort(sample_old), np.sort(sample_new), float(ratio[0]))
    return np.stack([_quantile_mapped(o, np.sort(so), np.sort(sn), float(r[0]))
                     for o, so, sn, r in zip(old, sample_old, sample_new, ratio)])


def _quantile_mapped(old: np.ndarray, sorted_old: np.ndarray, sorted_new: np.ndarray, ratio: float) -> np.ndarray:
    """The new score at each old score's quantile (piecewise linear); beyond the sample's extremes,
    the nearest extreme's plus the distance times ``ratio`` (the spreads' ratio)."""
    low, high = sorted_old[0], sorted_old[-1]
    return np.where(old > high, sorted_new[-1] + (old - high) * ratio,
                    np.where(old < low, sorted_new[0] + (old - low) * ratio, np.interp(old, sorted_old, sorted_new)))


def blended(old_on_scale: np.ndarray, new: np.ndarray, weight: float) -> np.ndarray:
    """A re-embedded image's score: its old standing (on the new scale) moving to its new score as the
    backfill advances (``weight``: the share re-embedded)."""
    return (1 - weight) * old_on_scale + weight * new


@dataclass
class QueryScores:
    """One query's scores in both spaces during a backfill (:meth:`DualSpace.scorer`)."""

    space: "DualSpace"
    old_query: np.ndarray
    new_query: np.ndarray
    sample_old: np.ndarray  # the query's scores on the calibration images, old space
    sample_new: np.ndarray  # and new

    def old(self, ids: np.ndarray) -> np.ndarray:
        """Old-space scores on the new scale of ``ids`` (images with an old vector)."""
        if not len(ids):
            return np.zeros(0, np.float32)
        old = self.space.store.read(ids, self.space.rows) @ self.old_query
        return on_new_scale(old, self.sample_old, self.sample_new, self.space.scale).astype(np.float32)

    def final(self, ids: np.ndarray, new: np.ndarray) -> np.ndarray:
        """The scores ``ids`` rank by, from their new-space scores ``new``: waiting images by their old
        score, re-embedded ones blended, those added since the switch (no old vector) as they are."""
        out = np.array(new, np.float32)
        waiting, both = np.isin(ids, self.space.pending), np.isin(ids, self.space.reembedded)
        out[waiting] = self.old(ids[waiting])
        out[both] = blended(self.old(ids[both]), out[both], self.space.weight)
        return out


@dataclass
class DualSpace:
    """What dual-space scoring needs at one committed state of a backfill."""

    encoder: Encoder  # the old encoder
    store: VectorStore  # the old vectors (same rows as the collection's)
    rows: int
    pending: np.ndarray  # sorted live ids not re-embedded yet: scored in the old space
    reembedded: np.ndarray  # sorted live ids re-embedded since the switch began (both vectors): blended
    settled: np.ndarray  # sorted live ids with real new vectors (reembedded and those added since)
    sample_old: np.ndarray  # the calibration images' vectors in the old space (calibration_items)
    sample_new: np.ndarray  # and in the new one (same images, same order)
    scale: str = "quantile"
    same_text: bool = False  # the old encoder's text vectors are the new one's (same_text_space)

    @cached_property
    def with_old(self) -> np.ndarray:
        """Sorted live ids with an old vector: those waiting and those re-embedded."""
        return np.union1d(self.pending, self.reembedded)

    @property
    def weight(self) -> float:
        """The share of the images there before the switch that the backfill re-embedded so far."""
        return len(self.reembedded) / max(len(self.reembedded) + len(self.pending), 1)

    def scorer(self, old_query: np.ndarray, new_query: np.ndarray) -> QueryScores:
        return QueryScores(self, old_query, new_query, self.sample_old @ old_query, self.sample_new @ new_query)

    def settled_among(self, allowed: np.ndarray | None) -> np.ndarray:
        """The items the new space's index searches: ``allowed`` ones (None: all) with real new vectors."""
        return self.settled if allowed is None else np.setdiff1d(allowed, self.pending)

    def rescored(self, ids: np.ndarray, new: np.ndarray, scores: QueryScores) -> np.ndarray:
        return scores.final(ids, new)

    def merged(self, hits: list[tuple[int, float]], scores: QueryScores, new_scores, allowed: np.ndarray | None,
               exclude: set[int], want: int) -> list[tuple[int, float]]:
        """The ``want`` best by final score: the index's ``hits`` (new-space scores of settled items),
        the best waiting images (an exact old-space scan) and the best re-embedded ones by their old
        score, whose new scores ``new_scores(ids)`` reads."""
        waiting, old_best = self._best_old(scores, allowed, exclude, want)
        found = {i for i, _ in hits}
        extra = np.array(sorted(set(old_best) - found), np.int64)
        ids = np.concatenate([np.array([i for i, _ in hits], np.int64), extra])
        new = np.concatenate([np.array([s for _, s in hits], np.float32), new_scores(extra)])
        final = scores.final(ids, new) if len(ids) else new
        return sorted([*zip(ids.tolist(), final.tolist()), *waiting], key=lambda x: (-x[1], x[0]))[:want]

    def _best_old(self, scores: QueryScores, allowed: np.ndarray | None, exclude: set[int], want: int,
                  chunk: int = 65536) -> tuple[list[tuple[int, float]], list[int]]:
        """An exact old-space scan of the images with an old vector (``allowed`` ones, none of ``exclude``):
        the ``want`` best waiting ones with their scores, and the ids of the ``want`` best re-embedded."""
        ids = self.with_old
        if allowed is not None:
            ids = np.intersect1d(ids, allowed, assume_unique=True)
        if exclude:
            ids = ids[~np.isin(ids, np.fromiter(exclude, np.int64))]
        best = {side: (np.zeros(0, np.int64), np.zeros(0, np.float32)) for side in (True, False)}
        for start in range(0, len(ids), chunk):  # bounded memory on a large backlog
            part = ids[start : start + chunk]
            old, waiting = scores.old(part), np.isin(part, self.pending)
            for side in (True, False):
                kept = np.concatenate([best[side][0], part[waiting == side]]), \
                    np.concatenate([best[side][1], old[waiting == side]])
                if len(kept[0]) > want:
                    top = np.argpartition(-kept[1], want - 1)[:want]
                    kept = kept[0][top], kept[1][top]
                best[side] = kept
        return list(zip(best[True][0].tolist(), best[True][1].tolist())), best[False][0].tolist()
