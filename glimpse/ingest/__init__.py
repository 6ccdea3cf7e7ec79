"""Ingest: find files, read and decode them in parallel with the model."""

from .decode import DEFAULT_MAX_PIXELS, HEIC_MISSING_REASON, DecodeError, decode_image, heif_available, image_pixels
from .pipeline import DEFAULT_MAX_BYTES, Prepared, content_hash, prepare_files
from .scan import IMAGE_EXTENSIONS, FileEntry, absolute, glob_match, scan, stat_entry

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_PIXELS",
    "HEIC_MISSING_REASON",
    "IMAGE_EXTENSIONS",
    "DecodeError",
    "FileEntry",
    "Prepared",
    "absolute",
    "content_hash",
    "decode_image",
    "glob_match",
    "heif_available",
    "image_pixels",
    "prepare_files",
    "scan",
    "stat_entry",
]
