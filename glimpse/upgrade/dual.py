"""Dual-space scoring while a backfill runs: each image scored in the spaces its real vectors are in.

Until the backfill reaches an image, its vector in the new space is a mapped one (lossy: mapped
lite0 -> lite2 vectors hold a cosine of about 0.8 to the true ones), but its old vector is still
stored and the old encoder still loads. A text or image query is then encoded by both encoders:
images that were there before the switch are scored in the old space (old query against old
vectors: old/old quality; those the backfill re-embedded too, below), images added since the switch
in the new space (new/new), and the lists merged.

The scales differ, so old-space scores are put on the new one per query, from the images embedded
by both encoders (the sample and those the backfill re-embedded so far, whose old vectors are still
stored): the query's scores on them in each space give two distributions, and an old score takes
the new score at the same quantile (``quantile``; beyond the extremes, linearly with the ratio of
spreads, the slope lowered where it would carry a cosine of +-1 past +-1, and the result kept within
[-1, 1]). This is monotone, so the images still waiting keep their old/old order.

Every image that was there before the switch keeps that old score until the upgrade finishes, the
ones the backfill re-embedded included: it is the only scoring under which no pair of images that
both encoders rank the same way is ever reordered, whatever the images and the backfill's order.
Say ``a`` is above ``b`` in both spaces, and a re-embedded image scores ``f(old, new)``, a waiting
one ``old``. With ``a`` re-embedded first, ``f(old_a, new_a) > old_b`` must hold for every
``old_b < old_a``: ``f(old, new) >= old``. With ``b`` re-embedded first, ``old_a > f(old_b, new_b)``
must hold for every ``old_a > old_b`` (``new_a`` may be anything above ``new_b``): ``f(old, new) <=
old``. So ``f`` is the old score. Any rule that uses the new vector of some images while others wait
(the new score alone, or a blend moving from the old standing to the new score) reorders such pairs
for a stretch of the backfill, and a ranking metric dips for the orders that move the wrong image
first (``benchmarks/upgrade.py --replay``: text R@10 1.9 points below both ends on one seed of six
with the blend). Text and image answers among those images are then the old collection's until the
finish and the new encoder's after it: one step, in the direction of the encoders' own difference.
Images added since the switch have no old vector and are scored in the new space.

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
    the nearest extreme's plus the distance times ``ratio`` (the spreads' ratio), or a lower slope
    where that would carry an old score of +-1 past +-1: scores are cosines, so a query's self-score
    stays at most 1 (still strictly increasing in ``old``, so the order is kept). Old scores past +-1
    (float16 noise) stay within [-1, 1]."""
    low, high = sorted_old[0], sorted_old[-1]
    up = min(ratio, max(1 - sorted_new[-1], 0) / max(1 - high, 1e-9))
    down = min(ratio, max(sorted_new[0] + 1, 0) / max(low + 1, 1e-9))
    mapped = np.where(old > high, sorted_new[-1] + (old - high) * up,
                      np.where(old < low, sorted_new[0] + (old - low) * down, np.interp(old, sorted_old, sorted_new)))
    return np.clip(mapped, -1, 1)


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
        """The scores ``ids`` rank by, from their new-space scores ``new``: images there before the switch
        by their old score (on the new scale), those added since (no old vector) as they are."""
        out = np.array(new, np.float32)
        before = np.isin(ids, self.space.with_old)
        out[before] = self.old(ids[before])
        return out


@dataclass
class DualSpace:
    """What dual-space scoring needs at one committed state of a backfill."""

    encoder: Encoder  # the old encoder
    store: VectorStore  # the old vectors (same rows as the collection's)
    rows: int
    pending: np.ndarray  # sorted live ids not re-embedded yet: scored in the old space
    reembedded: np.ndarray  # sorted live ids re-embedded since the switch began (both vectors)
    added: np.ndarray  # sorted live ids added since the switch (new vectors only)
    sample_old: np.ndarray  # the calibration images' vectors in the old space (calibration_items)
    sample_new: np.ndarray  # and in the new one (same images, same order)
    scale: str = "quantile"
    same_text: bool = False  # the old encoder's text vectors are the new one's (same_text_space)

    @cached_property
    def with_old(self) -> np.ndarray:
        """Sorted live ids with an old vector: those waiting and those re-embedded."""
        return np.union1d(self.pending, self.reembedded)

    def scorer(self, old_query: np.ndarray, new_query: np.ndarray) -> QueryScores:
        return QueryScores(self, old_query, new_query, self.sample_old @ old_query, self.sample_new @ new_query)

    def added_among(self, allowed: np.ndarray | None) -> np.ndarray:
        """The items the new space's index searches: ``allowed`` ones (None: all) added since the switch."""
        return self.added if allowed is None else np.setdiff1d(allowed, self.with_old)

    def rescored(self, ids: np.ndarray, new: np.ndarray, scores: QueryScores) -> np.ndarray:
        return scores.final(ids, new)

    def merged(self, hits: list[tuple[int, float]], scores: QueryScores, allowed: np.ndarray | None,
               exclude: set[int], want: int) -> list[tuple[int, float]]:
        """The ``want`` best by final score: the index's ``hits`` (new-space scores of the items added since
        the switch) and the best images there before it by an exact old-space scan."""
        ids = np.array([i for i, _ in hits], np.int64)
        final = scores.final(ids, np.array([s for _, s in hits], np.float32))
        found = dict(zip(ids.tolist(), final.tolist()))
        found.update(self._best_old(scores, allowed, exclude, want))
        return sorted(found.items(), key=lambda x: (-x[1], x[0]))[:want]

    def _best_old(self, scores: QueryScores, allowed: np.ndarray | None, exclude: set[int], want: int,
                  chunk: int = 65536) -> list[tuple[int, float]]:
        """An exact old-space scan of the images with an old vector (``allowed`` ones, none of ``exclude``):
        the ``want`` best, with their scores."""
        ids = self.with_old
        if allowed is not None:
            ids = np.intersect1d(ids, allowed, assume_unique=True)
        if exclude:
            ids = ids[~np.isin(ids, np.fromiter(exclude, np.int64))]
        best_ids, best = np.zeros(0, np.int64), np.zeros(0, np.float32)
        for start in range(0, len(ids), chunk):  # bounded memory on a large collection
            part = ids[start : start + chunk]
            best_ids, best = np.concatenate([best_ids, part]), np.concatenate([best, scores.old(part)])
            if len(best_ids) > want:
                top = np.argpartition(-best, want - 1)[:want]
                best_ids, best = best_ids[top], best[top]
        return list(zip(best_ids.tolist(), best.tolist()))
