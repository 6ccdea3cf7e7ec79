"""A collection: one directory holding metadata, vectors and the search backend's files.

Data flows one way: files -> ingest (scan, read, hash, decode) -> encoder -> vector file
-> metadata commit -> live search backend. Each batch becomes visible in one SQLite
transaction after its vectors are durable, so a kill at any moment leaves the last
committed state. :class:`Collection` (``facade``) joins the jobs, one module each: opening
(``opening``), ingest (``ingest``, ``precomputed``), live index upkeep and compaction
(``live``), code settings (``codes``), caption adaptation (``adapt``) and search (``search``).
"""

from ..settings import CollectionSettings, ScanOptions
from .facade import Collection
from .layout import DB_NAME, LOCK_NAME, VECTORS_NAME
from .opening import EncoderMismatchError, open_collection
from .reports import AdaptReport, CollectionStats, IndexReport, ProgressFn

__all__ = [
    "DB_NAME", "LOCK_NAME", "VECTORS_NAME", "AdaptReport", "Collection", "CollectionSettings", "CollectionStats",
    "EncoderMismatchError", "IndexReport", "ProgressFn", "ScanOptions", "open_collection",
]
