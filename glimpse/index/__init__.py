"""Storage: metadata (SQLite), vectors (memory-mapped float16) and search backends."""

from .base import VectorIndex
from .flat import FlatIndex
from .lock import CollectionLockedError, WriteLock
from .metadata import Metadata
from .vectors import VectorStore

__all__ = ["CollectionLockedError", "FlatIndex", "Metadata", "VectorIndex", "VectorStore", "WriteLock"]
