"""Ingest: find files, read and decode them in parallel with the model."""

from .decode import DecodeError, decode_image
from .pipeline import Prepared, content_hash, prepare_files
from .scan import IMAGE_EXTENSIONS, FileEntry, scan, stat_entry

__all__ = [
    "IMAGE_EXTENSIONS",
    "DecodeError",
    "FileEntry",
    "Prepared",
    "content_hash",
    "decode_image",
    "prepare_files",
    "scan",
    "stat_entry",
]
