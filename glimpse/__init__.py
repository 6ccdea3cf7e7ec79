"""glimpse: an image retrieval engine. Index a folder of images, search it by text or image."""

#: The one place the version lives: pyproject.toml reads it for the package metadata.
__version__ = "0.1.0"

from .collection import (
    Collection,
    CollectionStats,
    EncoderMismatchError,
    IndexReport,
    open_collection as open,  # noqa: A001 - ``glimpse.open(path)`` is the public entry point
)
from .storage import CollectionLockedError
from .query import SearchRequest, SearchResult

__all__ = [
    "Collection",
    "CollectionLockedError",
    "CollectionStats",
    "EncoderMismatchError",
    "IndexReport",
    "SearchRequest",
    "SearchResult",
    "__version__",
    "open",
]
