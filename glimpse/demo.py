"""``glimpse demo``: a few real photos and the searches to show on them, offline.

Built on the Python API only; the command line (``glimpse.cli.serve``) prints what it returns.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from .collection import Collection
from .extras import require
from .query import SearchResult

#: scikit-image ships these photographs inside its wheel (others need a download).
SAMPLES = {
    "chelsea": "chelsea",
    "coffee": "coffee",
    "rocket": "rocket",
    "astronaut": "astronaut",
    "motorcycle": "stereo_motorcycle",
    "hubble_deep_field": "hubble_deep_field",
    "immunohistochemistry": "immunohistochemistry",
    "colorwheel": "colorwheel",
    "retina": "retina",
    "logo": "logo",
    "camera": "camera",
    "coins": "coins",
    "moon": "moon",
    "page": "page",
    "brick": "brick",
    "grass": "grass",
}

TEXT_QUERIES = ["a cat", "a cup of coffee", "a rocket launch", "a motorcycle", "coins"]


#: What needs the demo extra (scikit-image), as its error message names it.
SAMPLES_FEATURE = "glimpse demo without a folder of your own"


def write_samples(folder: Path) -> list[Path]:
    """Save scikit-image's sample photos as JPEG/PNG files in ``folder``."""
    require("demo", SAMPLES_FEATURE)
    import skimage.data

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, loader in SAMPLES.items():
        array = getattr(skimage.data, loader)()
        if isinstance(array, tuple):  # stereo pairs: keep the left view
            array = array[0]
        array = np.asarray(array)
        image = Image.fromarray(array)
        path = folder / (f"{name}.png" if image.mode == "RGBA" else f"{name}.jpg")
        if not path.exists():
            image.save(path, quality=92) if path.suffix == ".jpg" else image.save(path)
        written.append(path)
    return written


def demo_searches(col: Collection, folder: Path) -> Iterator[tuple[str, list[SearchResult]]]:
    """(title, top results) of a few text searches, then of searches by the folder's first two usable images."""
    for text in TEXT_QUERIES:
        yield f"text: {text!r}", col.search(text=text, k=3)
    shown = 0
    for image in sorted(p for p in folder.iterdir() if p.is_file()):
        if shown == 2:
            break
        try:
            results = col.search(image=image, k=3)
        except ValueError:  # not an image, or one that could not be indexed either (see glimpse info --errors)
            continue
        shown += 1
        yield f"image: like {image.name}", results
