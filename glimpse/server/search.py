"""Turn an HTTP search request (JSON, plus any uploaded images) into one ``Collection.search`` call.

Nothing a client sends is ever read from the server's disk: image terms are uploads (bytes,
decoded here under the upload limits) or item ids, and a query-language string that names
an image path is refused.
"""

from __future__ import annotations

import inspect
import math

import numpy as np
from PIL import Image

from ..collection import Collection
from .models import SearchRequest, Term


class QueryError(ValueError):
    """A request that cannot become a search; ``status`` is the HTTP code to answer with."""

    def __init__(self, message: str, status: int = 422):
        super().__init__(message)
        self.status = status


def search_arguments(col: Collection, req: SearchRequest, uploads: list[Image.Image]) -> dict:
    """Keyword arguments for ``col.search`` (checked, but not run)."""
    args: dict = {"k": req.k, "exact": req.exact, "oversample": req.oversample, "rerank": req.rerank}
    if req.text is not None:
        if not req.text.strip():
            raise QueryError("the text query is empty")
        args["text"] = req.text
    if req.vector is not None:
        if not all(math.isfinite(x) for x in req.vector):
            raise QueryError("the query vector holds NaN or infinite values")
        args["vector"] = np.asarray(req.vector, dtype=np.float32)
    if req.like is not None:
        args["like"] = req.like
    if req.terms is not None:
        args["terms"] = _terms(req.terms, uploads)
    elif uploads:
        if len(uploads) > 1:
            raise QueryError("several images need terms that say how to weigh them (upload: 0, upload: 1, ...)")
        args["image"] = uploads[0]
    if not any(key in args for key in ("text", "vector", "like", "terms", "image")):
        raise QueryError("give something to search for: text, an image, like (an item id), vector or terms")
    if req.alpha is not None:
        args["alpha"] = req.alpha
    if req.filters is not None:
        args["filters"] = _filter(req.filters.model_dump(exclude_none=True))
    if req.min_score is not None:
        args["min_score"] = req.min_score
    if req.refine is not None:
        args["refine"] = req.refine
    missing = sorted(set(args) - set(inspect.signature(col.search).parameters))
    if missing:
        raise QueryError(f"not supported by this version of glimpse yet: {', '.join(missing)}", status=501)
    return args


def _terms(terms: str | list[Term], uploads: list[Image.Image]) -> list[tuple[object, float]]:
    if isinstance(terms, str):
        from ..query.language import parse_query

        parsed = parse_query(terms)  # QuerySyntaxError is a ValueError: a 422 with the caret
        if any(t.kind == "image" for t in parsed):
            raise QueryError("image paths are not accepted over HTTP: upload the image (upload: N) or use an item id (#12)")
        return [(t.value, t.weight) for t in parsed]
    out: list[tuple[object, float]] = []
    for term in terms:
        if term.upload is not None:
            if term.upload >= len(uploads):
                raise QueryError(f"term refers to upload {term.upload}, but {len(uploads)} image(s) were uploaded")
            out.append((uploads[term.upload], term.weight))
        else:
            out.append((term.text if term.text is not None else term.id, term.weight))
    if not any(weight > 0 for _, weight in out):
        raise QueryError("terms need at least one positive weight")
    return out


def _filter(fields: dict):
    from ..query.filters import Filter

    return Filter.from_dict(fields)
