"""Turn what a user asks (a text, an image) into one query vector."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from ..encoders import Encoder
from ..ingest import DecodeError, decode_image

ImageLike = str | os.PathLike | bytes | Image.Image


def load_query_image(image: ImageLike, target: int | None = None) -> Image.Image:
    """A path, raw bytes or a Pillow image -> RGB image, with the same safety as ingest."""
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    if isinstance(image, bytes):
        data = image
    else:
        path = Path(image).expanduser()
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ValueError(f"cannot read query image {path}: {exc.strerror or exc}") from None
    try:
        return decode_image(data, target=target)
    except DecodeError as exc:
        raise ValueError(f"query image is not usable: {exc.reason}") from None


def encode_query(encoder: Encoder, text: str | None = None, image: ImageLike | None = None) -> np.ndarray:
    """One float32 (dim,) query vector for a text or an image."""
    if (text is None) == (image is None):
        raise ValueError("give exactly one of text= or image= (composed queries come later)")
    if text is not None:
        if not text.strip():
            raise ValueError("the text query is empty")
        return encoder.encode_texts([text])[0]
    picture = load_query_image(image, target=encoder.image_size)
    return encoder.encode_images([picture])[0]
