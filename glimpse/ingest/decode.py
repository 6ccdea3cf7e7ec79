"""Decode image bytes into RGB Pillow images, safely."""

from __future__ import annotations

import io

from PIL import Image, ImageOps

DEFAULT_MAX_PIXELS = 100_000_000


class DecodeError(Exception):
    """A file that is not a readable image; ``reason`` is shown to the user."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def decode_image(data: bytes, target: int | None = None, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Bytes -> RGB image with EXIF orientation applied.

    With ``target``, JPEGs are decoded at a reduced scale (draft mode) whose short side
    stays at least ``target`` pixels. Returns the image and keeps the original size in
    ``image.info['original_size']``.
    """
    if not data:
        raise DecodeError("empty file")
    try:
        im = Image.open(io.BytesIO(data))
        width, height = im.size
        if width * height > max_pixels:
            raise DecodeError(f"image too large: {width}x{height} pixels exceeds the limit of {max_pixels:,}")
        if target and im.format == "JPEG":
            scale = max(1, min(width, height) // target)
            im.draft("RGB", (width // scale, height // scale))
        im = ImageOps.exif_transpose(im)
        im = im.convert("RGB")
    except DecodeError:
        raise
    except Exception as exc:  # Pillow raises many types for bad data
        raise DecodeError(f"cannot decode image: {exc}") from None
    im.info["original_size"] = (width, height)
    return im
