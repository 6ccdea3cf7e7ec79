"""Queries: the one search request, building its query vector, filters, refinement, and the results."""

from .build import ImageLike, load_query_image
from .request import SearchRequest
from .results import SearchResult

__all__ = ["ImageLike", "SearchRequest", "SearchResult", "load_query_image"]
