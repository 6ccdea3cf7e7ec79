"""Seeded image augmentations that make copy-detection queries from any folder of photos.

Each query is one source image transformed by one *kind* of edit; the kind's strength is
drawn from a generator seeded by (seed, image index, query number), so the same folder and
seed always give the same queries. ``combo`` chains three other kinds. Bump
``AUGMENT_VERSION`` whenever an edit changes: it is part of the embedding cache key.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFont, ImageOps

AUGMENT_VERSION = "1"

WORDS = ("holiday", "sample", "copyright", "2024", "hello", "glimpse", "draft", "photo", "share", "note")


def crop(im: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Keep 30-80% of the area at a random place and aspect ratio."""
    w, h = im.size
    area = rng.uniform(0.3, 0.8)
    aspect = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
    cw = max(8, min(w, round(w * np.sqrt(area * aspect))))
    ch = max(8, min(h, round(h * np.sqrt(area / aspect))))
    x0 = int(rng.integers(0, w - cw + 1))
    y0 = int(rng.integers(0, h - ch + 1))
    return im.crop((x0, y0, x0 + cw, y0 + ch))


def rotate(im: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Rotate by 5-30 degrees either way, or by a right angle (a quarter of the time)."""
    if rng.random() < 0.25:
        return im.rotate(float(rng.choice([90, 180, 270])), expand=True)
    angle = float(rng.uniform(5, 30) * rng.choice([-1, 1]))
    return im.rotate(angle, resample=Image.Resampling.BILINEAR, expand=False)


def rescale(im: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Shrink to 15-50% of the size (down-sampled copies lose detail)."""
    f = rng.uniform(0.15, 0.5)
    return im.resize((max(8, round(im.width * f)), max(8, round(im.height * f))), Image.Resampling.BILINEAR)


def jpeg(im: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Re-encode as JPEG at quality 10-40."""
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=int(rng.integers(10, 41)))
    with Image.open(io.BytesIO(buf.getvalue())) as out:
        return out.convert("RGB")


def colour(im: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Brightness, contrast and saturation each scaled by 0.5-1.5, or greyscale (20%)."""
    if rng.random() < 0.2:
        return ImageOps.grayscale(im).convert("RGB")
    im = ImageEnhance.Brightness(im).enhance(rng.uniform(0.5, 1.5))
    im = ImageEnhance.Contrast(im).enhance(rng.uniform(0.5, 1.5))
    return ImageEnhance.Color(im).enhance(rng.uniform(0.5, 1.5))


def flip(im: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Mirror left-right (80%) or upside down."""
    return ImageOps.mirror(im) if rng.random() < 0.8 else ImageOps.flip(im)


def text(im: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Overlay 1-3 words in a random colour, about a tenth of the image high."""
    out = im.copy()
    draw = ImageDraw.Draw(out)
    size = max(8, int(min(im.size) * rng.uniform(0.08, 0.16)))
    font = ImageFont.load_default(size=size)
    words = " ".join(rng.choice(WORDS, size=int(rng.integers(1, 4))))
    x = int(rng.integers(0, max(1, im.width // 2)))
    y = int(rng.integers(0, max(1, im.height - size)))
    fill = tuple(int(c) for c in rng.integers(0, 256, 3))
    draw.text((x, y), words, fill=fill, font=font, stroke_width=max(1, size // 12), stroke_fill=(0, 0, 0))
    return out


EDITS = {"crop": crop, "rotate": rotate, "rescale": rescale, "jpeg": jpeg, "colour": colour, "flip": flip,
         "text": text}
KINDS = (*EDITS, "combo")


def augment(im: Image.Image, kind: str, rng: np.random.Generator) -> Image.Image:
    """One edit of ``kind`` (or ``combo``: three distinct other kinds, JPEG last if drawn)."""
    im = im.convert("RGB")
    if kind != "combo":
        return EDITS[kind](im, rng)
    names = list(rng.choice(list(EDITS), size=3, replace=False))
    names.sort(key=lambda n: n == "jpeg")  # compression happens last, as when a copy is shared
    for name in names:
        im = EDITS[name](im, rng)
    return im


#: Edited copies per image at most: 8 of each kind (100,000 made a run that never ended).
MAX_PER_IMAGE = 8 * len(KINDS)


def query_kinds(n_images: int, per_image: int) -> list[tuple[int, str]]:
    """(source index, kind) of every query: kinds rotate so each is used equally often."""
    if not 1 <= per_image <= MAX_PER_IMAGE:
        raise ValueError(f"per_image (--per-image) must be from 1 to {MAX_PER_IMAGE} edited copies per image "
                         f"({len(KINDS)} kinds of edit), got {per_image}")
    return [(i, KINDS[(i * per_image + j) % len(KINDS)]) for i in range(n_images) for j in range(per_image)]


def query_rng(seed: int, source: int, number: int) -> np.random.Generator:
    return np.random.default_rng([seed, source, number])
