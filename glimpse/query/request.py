"""One search request, the same from Python, the command line and HTTP.

:class:`SearchRequest` holds everything one search may ask for: the query (text, image, both,
a vector, an item id or weighted terms), how many results, filters, a minimum score, the
top-k refinement, fusion with the words read in the images, and the code stage's settings.
Its options are checked once, when it is made (ValueError, one actionable sentence), and its
defaults are the only ones: ``Collection.search``, ``glimpse search`` and ``POST /api/search``
all build one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np

from ..backends.base import CodeStage
from ..settings import CodeSettings, check_flag, check_scoring, resolve_scoring
from .build import ImageLike
from .filters import Filter
from .fusion import check_fusion
from .limits import check_k, check_oversample, clip
from .refine import REFINES

#: Results when a request does not say.
DEFAULT_K = 10
DEFAULT_FUSION = "calibrated"


@dataclass(frozen=True, eq=False)
class SearchRequest:
    """A search. The query is one of ``text``; ``image``; both (composed, ``alpha`` weighs the
    text); ``vector``; ``like`` (an item id); or ``terms`` (query language or ``[(term, weight)]``).

    ``scoring``, ``oversample`` and ``rerank`` tune the binary-code stage for this query (None:
    the collection's setting; ``scoring="auto"`` picks by query kind); ``exact`` scans every
    float vector instead. ``refine`` (``aqe``, ``superglobal`` or ``none``) re-orders the top
    candidates; ``fusion`` says how the words read in the images rank a text query.
    """

    text: str | None = None
    image: ImageLike | None = None
    vector: np.ndarray | None = None
    like: int | None = None
    terms: str | list[tuple[object, float]] | None = None
    alpha: float | None = None
    filters: Filter | None = None
    min_score: float | None = None
    refine: str | None = None
    k: int = DEFAULT_K
    exact: bool = False
    oversample: int | None = None
    rerank: bool | None = None
    scoring: str | None = None
    adapted: bool = True
    fusion: str = DEFAULT_FUSION

    def __post_init__(self) -> None:
        object.__setattr__(self, "k", check_k(self.k))  # numpy's integers as int
        for name in ("exact", "adapted", "rerank"):
            object.__setattr__(self, name, check_flag(name, getattr(self, name), optional=name == "rerank"))
        if self.oversample is not None:
            check_oversample(self.oversample, self.k)
            object.__setattr__(self, "oversample", int(self.oversample))
        if self.scoring is not None:
            check_scoring(self.scoring)
        if self.refine is not None and self.refine != "none" and self.refine not in REFINES:
            raise ValueError(f"unknown refine {clip(repr(self.refine))}: use one of {', '.join(REFINES)} or none")
        check_fusion(self.fusion)
        if self.min_score is not None and not (_is_finite(self.min_score) and -1 <= self.min_score <= 1):
            # Scores are cosines, shown within [-1, 1]: past either end nothing or everything passes.
            raise ValueError(f"min_score must be a cosine from -1 to 1 (e.g. 0.2), got {self.min_score!r}")
        if self.alpha is not None and not (_is_finite(self.alpha) and 0 <= self.alpha <= 1):
            raise ValueError(f"alpha must be a number from 0 (image only) to 1 (text only), got {self.alpha!r}")
        if isinstance(self.filters, dict):
            object.__setattr__(self, "filters", Filter.from_dict(self.filters))
        elif self.filters is not None and not isinstance(self.filters, Filter):
            raise ValueError(f"filters must be a Filter or a dict of its fields, not {type(self.filters).__name__}")

    @property
    def refining(self) -> bool:
        return self.refine not in (None, "none")

    def stage(self, codes: CodeSettings | None, text_only: bool) -> CodeStage:
        """The code stage for this query: its own settings, else the collection's ``codes``;
        ``auto`` resolved for a query made only of text (``text_only``) or not."""
        asked = self.scoring or (codes.scoring if codes is not None else "auto")
        return CodeStage(resolve_scoring(asked, text_only), self.oversample, self.rerank, self.exact)

    def given(self) -> dict:
        """The fields that differ from their defaults (what a caller asked for)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if not _is_default(getattr(self, f.name), f.default)}


def _is_finite(value: object) -> bool:
    """A real number that is neither NaN nor infinite (``bool`` is not taken for one)."""
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool) and math.isfinite(value)


def _is_default(value: object, default: object) -> bool:
    return value is default or (not isinstance(value, np.ndarray) and value == default)
