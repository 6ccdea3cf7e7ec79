"""Turn an HTTP search body (JSON, plus any uploaded images) into the engine's :class:`SearchRequest`.

Nothing a client sends is ever read from the server's disk: image terms are uploads (checked
against the upload limits before they get here) or item ids, and a query-language string that
names an image path is refused.
"""

from __future__ import annotations

import numpy as np
from ..collection import Collection
from ..query.filters import Filter
from ..query.language import parse_query
from ..query.request import SearchRequest
from .models import SearchBody, Term


class QueryError(ValueError):
    """A request that cannot become a search; ``status`` is the HTTP code to answer with."""

    def __init__(self, message: str, status: int = 422):
        super().__init__(message)
        self.status = status


def search_request(col: Collection, req: SearchBody, uploads: list[bytes]) -> SearchRequest:
    """The engine's request for ``req`` (checked, but not run).

    Raises QueryError (422, or 404 for an item id the collection does not hold) and
    ValueError (a malformed query string or filter, or an option the request refuses).
    """
    args: dict = req.model_dump(include={"k", "exact", "oversample", "rerank", "scoring", "alpha", "min_score",
                                         "refine", "adapted", "fusion"})
    if req.text is not None:
        args["text"] = req.text
    if req.vector is not None:
        with np.errstate(over="ignore"):  # too large for float32 becomes inf, refused just below
            args["vector"] = np.asarray(req.vector, dtype=np.float32)
        if not np.isfinite(args["vector"]).all():
            raise QueryError("the query vector holds NaN or infinite values (or numbers too large for float32)")
    if req.like is not None:
        args["like"] = _known(col, req.like)
    if req.terms is not None:
        args["terms"] = _terms(col, req.terms, uploads)
    elif uploads:
        if len(uploads) > 1:
            raise QueryError("several images need terms that say how to weigh them (upload: 0, upload: 1, ...)")
        args["image"] = uploads[0]
    if not any(key in args for key in ("text", "vector", "like", "terms", "image")):
        raise QueryError("give something to search for: text, an image, like (an item id), vector or terms")
    if req.filters is not None:
        args["filters"] = Filter.from_dict(req.filters.model_dump(exclude_none=True))
    return SearchRequest(**args)


def _known(col: Collection, item_id: int) -> int:
    try:
        col.item(item_id)
    except KeyError:
        raise QueryError(f"no image with id {item_id} in this collection", status=404) from None
    return item_id


def _terms(col: Collection, terms: str | list[Term], uploads: list[bytes]) -> list[tuple[object, float]]:
    if isinstance(terms, str):
        parsed = parse_query(terms)  # QuerySyntaxError is a ValueError: a 422 with a caret under the spot
        if any(t.kind == "image" for t in parsed):
            raise QueryError("image paths are not accepted over HTTP: upload the image (upload: N) or use an item id (#12)")
        pairs = [(t.value, t.weight) for t in parsed]
    else:
        pairs = []
        for term in terms:
            if term.upload is not None:
                if term.upload >= len(uploads):
                    raise QueryError(f"a term refers to upload {term.upload}, but {len(uploads)} image(s) came with the query")
                pairs.append((uploads[term.upload], term.weight))
            else:
                pairs.append((term.text if term.text is not None else term.id, term.weight))
    for value, _ in pairs:
        if isinstance(value, int):
            _known(col, value)
    return pairs
