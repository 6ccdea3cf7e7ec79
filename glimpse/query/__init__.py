"""Queries: building query vectors and the results that come back."""

from .build import ImageLike, encode_query, load_query_image
from .results import SearchResult

__all__ = ["ImageLike", "SearchResult", "encode_query", "load_query_image"]
