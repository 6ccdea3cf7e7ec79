"""Fuse the vector ranking of a text query with the words read in the images (OCR, BM25).

Two ways, measured in benchmarks/ocr.py (README "Words in images"):

* ``calibrated`` (the default): cosine + ``WEIGHT * coverage``, the share of the query's words
  found in the image (0-1). BM25's own scale drifts with the collection's size (its IDF), the
  share does not. The word evidence is a bounded bonus on the cosine scale: an image without
  matching words keeps its cosine (so ``min_score`` still means what it says), and a long query
  that shares one word with some sign barely moves.
* ``rrf``: reciprocal-rank fusion, ``sum 1 / (RRF_K + rank)`` over the vector list and the BM25
  list; it ignores how strong a match is, so a stray one-word match ranks like a whole sentence.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import numpy as np

from ..storage.words import WordHit
from .limits import clip

FUSIONS = ("calibrated", "rrf", "none")
WEIGHT = 0.3  # the bonus when the image shows every word of the query, in cosine units
RRF_K = 60
#: How deep each list goes for reciprocal-rank fusion.
RRF_DEPTH = 100

Hits = Sequence[tuple[int, float]]


def lexical_text(text: str) -> str:
    """What of a text query to look up in the pictures' words: its quoted parts when it has any
    (``a shop with a sign that says "fresh bread"``), else all of it."""
    quoted = [q for q in re.findall(r'"([^"]+)"', text) if q.strip()]
    return " ".join(quoted) if quoted else text


def check_fusion(fusion: str) -> str:
    if fusion not in FUSIONS:
        raise ValueError(f"unknown fusion {clip(repr(fusion))}: use one of {', '.join(FUSIONS)}")
    return fusion


def calibrated(vector: Hits, lexical: Sequence[WordHit], cosine: Callable[[np.ndarray], np.ndarray],
               weight: float = WEIGHT) -> list[tuple[int, float]]:
    """Every vector hit and every word match, by cosine plus the bounded word bonus, best first.

    ``cosine`` scores the word matches the vector list did not reach. The top ``len(vector)``
    are exact: an image outside both lists has no bonus and a cosine below the vector list's.
    """
    scores = dict(vector)
    missing = np.array([h.item_id for h in lexical if h.item_id not in scores], dtype=np.int64)
    if len(missing):
        scores.update(zip(missing.tolist(), cosine(missing).tolist()))
    for hit in lexical:
        scores[hit.item_id] += weight * hit.coverage
    return sorted(scores.items(), key=lambda x: (-x[1], x[0]))


def reciprocal_rank(vector: Hits, lexical: Sequence[WordHit], k: int = RRF_K) -> list[tuple[int, float]]:
    """Reciprocal-rank fusion of the two lists, best first."""
    scores: dict[int, float] = {}
    for hits in (vector, lexical):
        for rank, (i, *_) in enumerate(hits, 1):
            scores[i] = scores.get(i, 0.0) + 1.0 / (k + rank)
    return sorted(scores.items(), key=lambda x: (-x[1], x[0]))
