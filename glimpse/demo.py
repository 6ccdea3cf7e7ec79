"""``glimpse demo``: index a few real photos and show text and image searches, offline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from .extras import require

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


def write_samples(folder: Path) -> list[Path]:
    """Save scikit-image's sample photos as JPEG/PNG files in ``folder``."""
    require("demo", "glimpse demo without a folder of your own")
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


def run_demo(collection: Path, folder: Path | None, encoder: str | None) -> None:
    import glimpse

    from .cli import console, print_results, run_index

    if folder is None:
        folder = collection / "samples"
        console.print(f"writing scikit-image's sample photos to [bold]{folder}[/]")
        write_samples(folder)
    col = glimpse.open(collection, encoder=encoder)
    console.print(f"indexing [bold]{folder}[/] into [bold]{col.path}[/] with {col.encoder.name}")
    run_index(col, [str(folder)], prune=True)
    for text in TEXT_QUERIES:
        print_results(col.search(text=text, k=3), title=f"text: {text!r}")
    images = sorted(p for p in folder.iterdir() if p.is_file())[:2]
    for image in images:
        print_results(col.search(image=image, k=3), title=f"image: like {image.name}")
    console.print(f"\nnext: [bold]glimpse search \"your words\" -c {col.path}[/]"
                  f"\n      [bold]glimpse serve {col.path}[/]  (the web page, http://127.0.0.1:8000/)")
