"""Queries: building query vectors and the results that come back."""

from .build import ImageLike, load_query_image
from .results import SearchResult

__all__ = ["ImageLike", "SearchResult", "load_query_image"]
