"""Search: a request -> query vector -> filters -> backend candidates (code scan, re-rank) ->
refinement -> fusion with the words read in the images -> results."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..storage.words import WordHit
from ..query import ImageLike, SearchResult
from ..query.build import QuerySources, build_query
from ..query.filters import Filter
from ..query.request import SearchRequest
from ..query import fusion as fuse
from ..query.words import Phrase, split_word_terms
from ..query.refine import CANDIDATES, refine as refine_candidates


class Searching:
    """``search``: many threads at once; see :meth:`search`."""

    def search(
        self,
        text: str | SearchRequest | None = None,
        image: ImageLike | None = None,
        *,
        vector: np.ndarray | None = None,
        like: int | None = None,
        terms: str | list[tuple[object, float]] | None = None,
        alpha: float | None = None,
        filters: Filter | None = None,
        min_score: float | None = None,
        refine: str | None = None,
        k: int = 10,
        exact: bool = False,
        oversample: int | None = None,
        rerank: bool | None = None,
        scoring: str | None = None,
        adapted: bool = True,
        fusion: str = "calibrated",
    ) -> list[SearchResult]:
        """Top-``k`` images for a query, best first, each with its cosine score.

        The query is one of: ``text``; ``image`` (path, bytes or Pillow image); both, a
        composed query ``norm((1 - alpha) * image + alpha * text)``; a raw ``vector``; ``like``,
        an item id (more like this one, itself left out); or ``terms``, a query-language string
        or ``[(term, weight)]`` (see :mod:`glimpse.query.language`). A composed query leaves
        out its reference image when the collection holds it.

        ``filters`` restrict the candidates before ranking, so ``k`` results come back when
        ``k`` images match. ``min_score`` drops weaker results. ``refine`` re-orders the top
        candidates: ``"aqe"`` or ``"superglobal"`` (off by default: neither helped in
        measurements, see benchmarks/QUERY_NOTES.md). ``adapted=False`` ignores the caption
        adaptation (``glimpse adapt``) for this query. With binary codes in use,
        ``oversample``, ``rerank`` and ``scoring`` tune the two stages for this query, and
        ``exact`` scans every float vector instead (the reference). The work one query may ask
        for is bounded (``k`` <= 1000, 64 terms, ...: :mod:`glimpse.query.limits`); beyond it,
        and for any malformed input, this raises ValueError. Many threads may search at once;
        a thread that writes (``add``, ``remove``, ...) needs its own Collection, as in the server.

        Once the words in the images were read (:meth:`enrich`), a ``text`` query also ranks by
        them: ``fusion`` is ``"calibrated"`` (cosine plus a bounded bonus for the query's words
        found in the picture), ``"rrf"`` or ``"none"`` (see :mod:`glimpse.query.fusion`).
        ``text:"..."`` terms match those words only, and ``Filter(has_text=True)`` keeps the
        images with words.

        A :class:`~glimpse.query.request.SearchRequest` may be given instead of these arguments:
        ``col.search(SearchRequest(text="a cat", k=5))``.
        """
        request = _request(text, SearchRequest(
            image=image, vector=vector, like=like, terms=terms, alpha=alpha, filters=filters, min_score=min_score,
            refine=refine, k=k, exact=exact, oversample=oversample, rerank=rerank, scoring=scoring, adapted=adapted,
            fusion=fusion))
        return self._search(request)

    def _search(self, request: SearchRequest) -> list[SearchResult]:
        k, filters, min_score, fusion = request.k, request.filters, request.min_score, request.fusion
        terms, phrases = split_word_terms(request.terms)
        if phrases and terms is None:
            return self._search_words(phrases, filters, k, min_score)
        # Searches run in parallel (the server answers each request on its own thread): the
        # query's encoding (the model: most of a text or image query's time), the filters' SQL
        # and refinement take no lock, and backend scans share theirs; only a refresh after a
        # commit makes them wait (benchmarks/parallel_search.py measures it).
        with self._fresh_index():  # the encoder of the space the index holds (an upgrade switches it)
            encoder = self.encoder
        dual = self._dual_space(request)  # both spaces while an upgrade's backfill runs
        # With both spaces a query image is encoded, not read as a stored vector that may be a mapped one.
        # Read when a text vector is made: a damaged adaptation file stops text queries alone.
        text_map = self._adapted_texts if request.adapted and self.settings().adapt else None
        sources = QuerySources(self._item_vector, self._item_for_hash if dual is None else
                               dual.item_with_real_new(self._item_for_hash), text_map)
        query = build_query(encoder, sources, text=request.text, image=request.image, vector=request.vector,
                            like=request.like, terms=terms, alpha=request.alpha)
        if dual is not None:
            scored_old = self._scored_in_both(dual, request, terms, query, text_map)
        allowed = self._allowed(filters, phrases)
        if allowed is not None:
            allowed = np.setdiff1d(allowed, np.array(sorted(query.exclude), dtype=np.int64))
            if not len(allowed):
                return []
        lexical = (self._word_hits(request.text, allowed, query.exclude)
                   if query.kind == "text" and fusion != "none" else [])
        want = max(k, CANDIDATES) if request.refining else k
        want = max(want, fuse.RRF_DEPTH) if lexical and fusion == "rrf" else want
        want += 0 if allowed is not None else len(query.exclude)
        with self._fresh_index() as index:
            stage = request.stage(self._index_settings, text_only=query.text_only)
            searched = allowed if dual is None else dual.added_among(allowed)
            if searched is not None and not len(searched):  # every allowed item is scored in the old space
                scores, ids = np.zeros((1, 0), np.float32), np.zeros((1, 0), np.int64)
            else:
                scores, ids = index.search(query.vector.reshape(1, -1), want, allowed=searched, stage=stage,
                                           **self._index_filter(filters, phrases))
        keep = [(int(i), float(s)) for i, s in zip(ids[0], scores[0]) if i >= 0 and int(i) not in query.exclude]
        if dual is not None:
            keep = dual.merged(keep, scored_old, allowed, query.exclude, want)
        if request.refining and len(keep) > 1:
            new_ids, new_scores = refine_candidates(
                request.refine, query.vector, np.array([i for i, _ in keep]), np.array([s for _, s in keep]),
                self._read_vectors)
            keep = list(zip(new_ids.tolist(), new_scores.tolist()))
        if lexical:
            keep = fuse.reciprocal_rank(keep, lexical) if fusion == "rrf" else fuse.calibrated(
                keep, lexical, lambda ids: self._read_vectors(ids) @ query.vector if dual is None else
                dual.rescored(ids, self._read_vectors(ids) @ query.vector, scored_old))
        # float16 vectors put a self-score a hair past 1: shown as the cosine it is, once the order is set
        shown = [(i, min(max(s, -1.0), 1.0)) for i, s in keep[:k]]
        hits = [(i, s) for i, s in shown if min_score is None or s >= min_score]
        paths = self._paths_for([i for i, _ in hits])
        return [SearchResult(i, paths[i], s) for i, s in hits if i in paths]

    def _item_for_hash(self, content_hash: str) -> int | None:
        """The item with this content, if the collection holds it (its stored vector is the query's)."""
        return self._meta.item_for_hash(content_hash)

    def _index_filter(self, filters: Filter | None, phrases: list[Phrase]) -> dict:
        """Filters the backend applies itself (``_allowed`` then leaves them out); none here."""
        return {}

    def _paths_for(self, item_ids: list[int]) -> dict[int, str]:
        return self._meta.paths_for(item_ids)

    def _allowed(self, filters: Filter | None, phrases: list[Phrase]) -> np.ndarray | None:
        """The item ids that filters and ``text:`` phrases let through; None when all pass."""
        allowed = None
        if filters is not None and not filters.is_empty():
            allowed = self._matching(filters)
            if filters.has_text is not None:
                with_text = np.array(self._words.items_with_text(), dtype=np.int64)
                if filters.has_text:
                    allowed = with_text if allowed is None else np.intersect1d(allowed, with_text)
                else:
                    allowed = np.setdiff1d(self._all_items() if allowed is None else allowed, with_text)
        for phrase, sign in phrases:
            found = np.array([h.item_id for h in self._words.search(phrase, phrase=True)], dtype=np.int64)
            if sign > 0:
                allowed = found if allowed is None else np.intersect1d(allowed, found)
            else:
                allowed = np.setdiff1d(self._all_items() if allowed is None else allowed, found)
        return allowed

    def _matching(self, filters: Filter) -> np.ndarray | None:
        """The items that pass ``filters`` (its words aside); None where the backend applies them itself."""
        conditions = filters.conditions() if self.has_files else filters.key_conditions()
        return np.array(self._meta.matching_items(conditions), dtype=np.int64)

    def _all_items(self) -> np.ndarray:
        return np.array(self._meta.item_ids(), dtype=np.int64)

    def _word_hits(self, text: str, allowed: np.ndarray | None, exclude: set[int]) -> list[WordHit]:
        """Matches of a text query in the words read in the images, best first (BM25)."""
        hits = self._words.search(fuse.lexical_text(text), limit=None if allowed is not None or exclude else fuse.RRF_DEPTH)
        keep = set(allowed.tolist()) if allowed is not None else None
        return [h for h in hits if h.item_id not in exclude and (keep is None or h.item_id in keep)][:fuse.RRF_DEPTH]

    def _search_words(self, phrases: list[Phrase], filters: Filter | None, k: int,
                      min_score: float | None) -> list[SearchResult]:
        """A query of ``text:`` terms only: images whose words hold the phrases, by BM25."""
        allowed = self._allowed(filters, phrases)
        scores: dict[int, float] = {}
        for phrase, sign in phrases:
            if sign > 0:
                for hit in self._words.search(phrase, phrase=True):
                    scores[hit.item_id] = scores.get(hit.item_id, 0.0) + hit.bm25
        if not scores:  # only negative phrases: every other image, in id order
            scores = dict.fromkeys((allowed if allowed is not None else self._all_items()).tolist(), 0.0)
        keep = set(allowed.tolist()) if allowed is not None else set(scores)
        ranked = sorted(((i, s) for i, s in scores.items() if i in keep), key=lambda x: (-x[1], x[0]))
        hits = [(i, s) for i, s in ranked[:k] if min_score is None or s >= min_score]
        paths = self._paths_for([i for i, _ in hits])
        return [SearchResult(i, paths[i], s) for i, s in hits if i in paths]


def _request(first: str | SearchRequest | None, rest: SearchRequest) -> SearchRequest:
    """The request of a ``search`` call: one given whole, or the arguments as one."""
    if not isinstance(first, SearchRequest):
        return replace(rest, text=first)
    if rest.given():
        raise ValueError(f"give a SearchRequest alone, not with other arguments ({', '.join(sorted(rest.given()))})")
    return first
