"""JPEG thumbnails, made once per (item id, size) and kept in the collection directory.

An item id names one content for the life of the collection (ids are never reused), so a
cached thumbnail never goes stale; removals prune the thumbnails of the items they drop. Files are written to a temporary name and renamed, so
a reader never sees half a JPEG, and two requests racing for one thumbnail both succeed.
A thumbnail is served as the bytes read here, never as a path read later: a removal may
prune the file in between.
"""

from __future__ import annotations

import io
import os
import stat
from collections.abc import Callable
from pathlib import Path

from PIL import Image

from ..atomic import write_atomic
from ..collection.layout import THUMBNAIL_DIR
from ..ingest import decode_image



class ThumbnailCache:
    def __init__(self, collection_dir: Path, max_pixels: int):
        self.root = Path(collection_dir) / THUMBNAIL_DIR
        self.max_pixels = max_pixels

    def path(self, item_id: int, size: int) -> Path:
        return self.root / str(size) / f"{item_id}.jpg"

    def get(self, item_id: int, size: int, read: Callable[[], bytes]) -> bytes:
        """The cached thumbnail's JPEG bytes, made from ``read()`` (the original's bytes) when missing.

        Raises what ``read`` raises, and DecodeError when the bytes are not a usable image.
        """
        target = self.path(item_id, size)
        cached = _whole_jpeg(target)
        if cached is not None:
            return cached
        # Decode at reduced scale where the format allows it (JPEG draft), then fit the box.
        image = decode_image(read(), target=size, max_pixels=self.max_pixels)
        image.thumbnail((size, size), Image.Resampling.LANCZOS)
        jpeg = io.BytesIO()
        image.save(jpeg, "JPEG", quality=85, optimize=True)
        write_atomic(target, jpeg.getvalue())
        return jpeg.getvalue()

    def prune(self, live: set[int]) -> int:
        """Delete the thumbnails of items that are gone; returns how many files went."""
        gone = 0
        for file in self.root.glob("*/*.jpg"):
            if file.stem.isdigit() and int(file.stem) not in live:
                file.unlink(missing_ok=True)
                gone += 1
        return gone


def _whole_jpeg(path: Path) -> bytes | None:
    """The cached thumbnail's bytes when it is one to serve: a plain file (a link could lead
    anywhere) that starts and ends as a JPEG does; else None, and it is made again: one emptied or
    cut short was served as a broken image, and a folder in its place was a 500. Read whole, not
    sent by name, so a removal pruning it meanwhile cannot break the answer."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return None
    with open(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        data = f.read()
    return data if data[:2] == b"\xff\xd8" and data[-2:] == b"\xff\xd9" else None
