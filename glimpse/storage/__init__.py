"""Storage: what a collection keeps on disk apart from search.

SQLite metadata (items, files, errors, settings), the memory-mapped float16 vector file, the
write lock, reading indexed originals back, the index of words read in the images, and checked reads
of the collection's .npz/.npy files (``arrays``).
"""

from .lock import CollectionLockedError, WriteLock
from .metadata import Metadata
from .vectors import VectorStore

__all__ = ["CollectionLockedError", "Metadata", "VectorStore", "WriteLock"]
