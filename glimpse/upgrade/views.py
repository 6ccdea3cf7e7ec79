"""Extra views of the sampled images: more pairs for the old->new map at the cost of embedding them.

A sample of a few hundred images leaves a map between spaces of a thousand dimensions or more
underdetermined. Each sampled image, mirrored and cropped, is another image both encoders can
embed: another pair, and one that shows the map how edited copies of an image move in both
spaces (copy queries are such views).
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageOps

from ..encoders import Encoder
from ..ingest import prepare_files
from ..ingest.scan import FileEntry
from .dual import same_text_space
from .maps import Pairs

#: Share of the area a view keeps, and the range of its aspect ratio.
AREA = (0.5, 0.9)
ASPECT = (3 / 4, 4 / 3)
PROMPT = "a photo of a {}."
BATCH = 32


def view(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A seeded crop of ``image`` (AREA of it, anywhere), mirrored left-right."""
    w, h = image.size
    area, aspect = rng.uniform(*AREA), np.exp(rng.uniform(*np.log(ASPECT)))
    cw = max(1, min(w, round(w * np.sqrt(area * aspect))))
    ch = max(1, min(h, round(h * np.sqrt(area / aspect))))
    left, top = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    return ImageOps.mirror(image.convert("RGB").crop((left, top, left + cw, top + ch)))


def prompts() -> list[str]:
    """Texts for the text pairs: one plain prompt per ImageNet class, a broad everyday vocabulary."""
    from ..encoders.bridge import load_class_names

    return [PROMPT.format(name) for name in load_class_names()]


def sample_pairs(old: Encoder, new: Encoder, old_x: np.ndarray, new_y: np.ndarray, files: dict[int, FileEntry],
                 seed: int, workers: int) -> Pairs:
    """The map's pairs: the sampled images (rows of ``old_x`` and ``new_y``), one seeded view of each
    whose file (``files``: by row) can be read, and the prompts through both text towers."""
    xs, ys, group, pending = [old_x], [new_y], [], []
    rows = sorted(files)
    decoded = prepare_files([files[row] for row in rows], np.asarray, target=max(old.image_size, new.image_size),
                            workers=workers)
    for row, p in zip(rows, decoded):
        if p.array is not None:
            pending.append(view(Image.fromarray(p.array), np.random.default_rng([seed, row])))
            group.append(row)
        if len(pending) == BATCH or (row == rows[-1] and pending):  # a batch at a time: views are not kept
            xs.append(old.encode_images(pending))
            ys.append(new.encode_images(pending))
            pending = []
    texts = prompts()
    old_texts = old.encode_texts(texts)
    new_texts = old_texts if same_text_space(old, new) else new.encode_texts(texts)  # lite0-, lite2-minilm: MiniLM's
    x, y = np.concatenate(xs), np.concatenate(ys)
    return Pairs(x, y, np.concatenate([np.arange(len(old_x)), group]).astype(np.int64), (old_texts, new_texts))
