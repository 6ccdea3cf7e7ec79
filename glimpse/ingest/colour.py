"""Any Pillow mode to 8-bit RGB (transparency on white, deep greyscale rescaled), and integer reduction."""

from __future__ import annotations

import numpy as np
from PIL import Image

WHITE = (255, 255, 255)


def deep_to_l(im: Image.Image) -> Image.Image:
    """16/32-bit integer or float single-channel -> 8-bit L, rescaled rather than clipped."""
    a = np.asarray(im)
    if a.dtype.kind == "f":
        a = np.nan_to_num(a.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        lo, hi = float(a.min(initial=0.0)), float(a.max(initial=0.0))
        if lo >= 0.0 and hi <= 1.0:
            out = a * 255.0
        else:
            out = (a - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(a)
    else:
        a = a.astype(np.int64)
        lo, hi = int(a.min(initial=0)), int(a.max(initial=0))
        if lo < 0:  # signed data: stretch the range
            out = (a - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(a)
        elif hi <= 255:
            out = a
        else:  # scale by the bit depth actually used (12-bit in 16-bit, full 16-bit...)
            out = a * (255.0 / ((1 << int(hi).bit_length()) - 1))
    return Image.fromarray(np.clip(np.rint(out), 0, 255).astype(np.uint8))


def to_rgb(im: Image.Image) -> Image.Image:
    mode = im.mode
    if mode == "RGB" and "transparency" not in im.info:
        return im
    if mode in ("I", "F") or mode.startswith("I;16"):
        im = deep_to_l(im)
        mode = "L"
    if mode == "LAB":
        from PIL import ImageCms

        rgb = ImageCms.applyTransform(
            im,
            ImageCms.buildTransform(
                ImageCms.createProfile("LAB"), ImageCms.createProfile("sRGB"), "LAB", "RGB"
            ),
        )
        assert rgb is not None
        return rgb
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info:
        rgba = im.convert("RGBA")
        out = Image.new("RGB", im.size, WHITE)
        out.paste(rgba, (0, 0), rgba)  # alpha-composite on white
        return out
    return im.convert("RGB")


def reduce(im: Image.Image, target: int | None) -> Image.Image:
    if target:
        factor = min(im.size) // target
        if factor >= 2:
            im = im.reduce(factor)
    return im
