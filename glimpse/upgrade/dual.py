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

Every query form follows the same rule. A composed query, ``like``, and weighted terms are built in
the old space too, from the old encoder (texts, images) and the old vectors (items there before the
switch): old/old again. A query with no old-space form (a raw vector: it is in the collection's
encoder's space, the new one once switched; an item added since the switch; any text or image once
the old encoder cannot be built) scores the images there before the switch against the vectors the
map gave them at the switch (:class:`ThroughMap`), re-embedded ones included: also fixed until the
finish, so also monotone, at the map's quality.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from ..encoders import Encoder
from ..storage import VectorStore
from .maps import SpaceMap

#: At most this many images embedded by both encoders calibrate a query (a seeded choice of them).
CALIBRATION_ITEMS = 2000


class NoOldVector(LookupError):
    """A query part (an item added since the switch) has no old-space form."""


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


class ThroughMap:
    """New-space queries' scores against the vectors the map gives the old ones (``forward(old)``, as at the
    switch), for queries with no old-space form. Each vector's part norms (a matrix product) are kept for
    the rest of the upgrade, so a query is pulled back once (:meth:`SpaceMap.pulled_back`) instead of
    every vector being mapped per query."""

    def __init__(self, forward: SpaceMap):
        self.forward = forward
        self._ids, self._norms = np.zeros(0, np.int64), np.zeros((0, 1 if forward.span is None else 2), np.float32)
        self._lock = threading.Lock()

    def scores(self, query: np.ndarray, ids: np.ndarray, old: np.ndarray) -> np.ndarray:
        """``forward(old) @ query`` for ``ids`` and their old vectors ``old``."""
        return self.forward.scores(self.forward.pulled_back(query), old, self._norms_of(ids, old))

    def _norms_of(self, ids: np.ndarray, old: np.ndarray) -> np.ndarray:
        with self._lock:
            known = np.isin(ids, self._ids)
            if not known.all():  # an item's old vector does not change during an upgrade: computed once
                new_ids, at = np.unique(ids[~known], return_index=True)
                ids_all = np.concatenate([self._ids, new_ids])
                norms = np.concatenate([self._norms, self.forward.part_norms(old[~known][at])])
                order = np.argsort(ids_all)
                self._ids, self._norms = ids_all[order], norms[order]
            return self._norms[np.searchsorted(self._ids, ids)]


@dataclass
class QueryScores:
    """One query's scores during a backfill (:meth:`DualSpace.scorer`): the images there before the switch
    by ``raw`` (their old-side scores, fixed until the finish) put on the new scale."""

    space: "DualSpace"
    raw: Callable[[np.ndarray, np.ndarray], np.ndarray]  # (ids, their old vectors) -> old-side scores
    sample_old: np.ndarray  # the query's old-side scores on the calibration images
    sample_new: np.ndarray  # and its new-space ones

    def old(self, ids: np.ndarray) -> np.ndarray:
        """Old-side scores on the new scale of ``ids`` (images with an old vector)."""
        if not len(ids):
            return np.zeros(0, np.float32)
        raw = self.raw(ids, self.space.store.read(ids, self.space.rows))
        return on_new_scale(raw, self.sample_old, self.sample_new, self.space.scale).astype(np.float32)

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

    encoder: Encoder | None  # the old encoder (None where it cannot be built any more)
    store: VectorStore  # the old vectors (same rows as the collection's)
    rows: int
    pending: np.ndarray  # sorted live ids not re-embedded yet
    reembedded: np.ndarray  # sorted live ids re-embedded since the switch began (both vectors)
    added: np.ndarray  # sorted live ids added since the switch (new vectors only)
    calibration: np.ndarray  # the calibration images (calibration_items)
    sample_old: np.ndarray  # their vectors in the old space
    sample_new: np.ndarray  # and in the new one (same images, same order)
    through_map: ThroughMap  # for queries with no old-space form
    scale: str = "quantile"
    same_text: bool = False  # the old encoder's text vectors are the new one's (same_text_space)

    @cached_property
    def with_old(self) -> np.ndarray:
        """Sorted live ids with an old vector: those waiting and those re-embedded."""
        return np.union1d(self.pending, self.reembedded)

    def scorer(self, new_query: np.ndarray, old_query: np.ndarray | None) -> QueryScores:
        """Scores of a query built in both spaces, or in the new one only (``old_query`` None: through the map)."""
        if old_query is not None:
            return QueryScores(self, lambda ids, old: old @ old_query, self.sample_old @ old_query,
                               self.sample_new @ new_query)
        def mapped(ids: np.ndarray, old: np.ndarray) -> np.ndarray:
            return self.through_map.scores(new_query, ids, old)
        return QueryScores(self, mapped, mapped(self.calibration, self.sample_old), self.sample_new @ new_query)

    def old_vector(self, item: int) -> np.ndarray:
        """An item's old vector, for a query built in the old space; :class:`NoOldVector` for one added since."""
        if not np.isin(item, self.with_old):
            raise NoOldVector(item)
        return self.store.read(np.array([item], np.int64), self.rows)[0]

    def item_with_old(self, find: Callable[[str], int | None]) -> Callable[[str], int | None]:
        """``find`` (content hash -> item) limited to items with an old vector (the others are encoded)."""
        def found(content_hash: str) -> int | None:
            item = find(content_hash)
            return item if item is not None and np.isin(item, self.with_old) else None
        return found

    def item_with_real_new(self, find: Callable[[str], int | None]) -> Callable[[str], int | None]:
        """``find`` limited to items whose new vector is real (not waiting: a mapped one is lossy)."""
        def found(content_hash: str) -> int | None:
            item = find(content_hash)
            return item if item is not None and not np.isin(item, self.pending) else None
        return found

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
