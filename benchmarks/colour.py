"""Does a colour-name channel computed from pixels (no model) help the bridge's semantic half?

    nice -n 10 python benchmarks/colour.py [--data ../shared/data/captioned-dev]

An image's semantic vector (the ImageNet-class half of the default encoder) gets
``beta * sum_c share_c * MiniLM(colour name c)`` added before it is normalised again, where
``share_c`` is the share of the image's pixels of basic colour c (11 names, from HSV rules).
Text queries are unchanged (MiniLM of the words, which name colours already). Measured from
the vectors ``glimpse eval`` cached (``glimpse eval captioned`` and ``glimpse eval copydetect``
on the same folder first): text->image R@1/R@10/median rank on the full captions and on their
first sentences, and copy->original R@1/R@10 on the 3,428 edited copies (the colour edit
included), since a channel that helps text must not cost image->image. Results and the
decision: benchmarks/QUALITY_NOTES.md.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from glimpse.encoders import bridge, create_encoder  # noqa: E402
from glimpse.eval.datasets import load_captioned, load_copydetect, open_image  # noqa: E402
from glimpse.eval.embed import EmbeddingCache  # noqa: E402
from glimpse.metrics import median_rank, recall_at_k  # noqa: E402

COLOURS = ("red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black", "white", "gray")
BETAS = (0.0, 0.2, 0.5, 1.0, 2.0)


def colour_shares(image: Image.Image) -> np.ndarray:
    """Share of the pixels of each of ``COLOURS`` (basic colour terms by hue, saturation, value)."""
    hsv = np.asarray(image.convert("RGB").resize((64, 64)).convert("HSV"), dtype=np.float32) / 255.0
    h, s, v = (hsv[..., i].ravel() for i in range(3))
    deg = h * 360.0
    name = np.full(h.shape, -1)
    chromatic = (s >= 0.2) & (v >= 0.2)
    hues = [("red", 0, 15), ("orange", 15, 40), ("yellow", 40, 70), ("green", 70, 170), ("blue", 170, 260),
            ("purple", 260, 300), ("pink", 300, 345), ("red", 345, 361)]
    for colour, lo, hi in hues:
        name[chromatic & (deg >= lo) & (deg < hi)] = COLOURS.index(colour)
    name[chromatic & (deg >= 10) & (deg < 45) & (v < 0.6)] = COLOURS.index("brown")
    name[chromatic & ((deg < 15) | (deg >= 300)) & (s < 0.5) & (v > 0.7)] = COLOURS.index("pink")
    name[v < 0.2] = COLOURS.index("black")
    name[(s < 0.2) & (v >= 0.2)] = COLOURS.index("gray")
    name[(s < 0.15) & (v > 0.85)] = COLOURS.index("white")
    return np.bincount(name, minlength=len(COLOURS)).astype(np.float32) / len(name)


def with_colour(vectors: np.ndarray, shares: np.ndarray, names: np.ndarray, beta: float) -> np.ndarray:
    """Image vectors with ``beta`` of the colour channel added to the semantic half."""
    w_v = bridge.VISUAL_WEIGHT
    w_s = float(np.sqrt(1.0 - w_v**2))
    visual, semantic = vectors[:, : bridge.VISUAL_DIM], vectors[:, bridge.VISUAL_DIM :] / w_s
    semantic = semantic + beta * shares @ names
    semantic /= np.linalg.norm(semantic, axis=1, keepdims=True)
    return np.concatenate([visual, w_s * semantic], axis=1).astype(np.float32)


def first_sentence(text: str) -> str:
    return re.split(r"(?<=[.!?])\s+", text.strip())[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "captioned-dev")
    ap.add_argument("--cache", type=Path, default=None, help="glimpse eval's cache (default: its default)")
    args = ap.parse_args()
    encoder = create_encoder()
    store = EmbeddingCache(encoder, args.cache)
    captioned = load_captioned(args.data).tasks[0]
    paths = captioned.database.paths
    images, _ = store.images(paths)
    captions, _ = store.texts(captioned.queries.texts)
    short, _ = store.texts([first_sentence(c) for c in captioned.queries.texts])
    owner = np.array([int(p[0]) for p in captioned.judgements[""].positives])
    shares = np.stack([colour_shares(open_image(p)) for p in paths])
    names = encoder.encode_texts(list(COLOURS))[:, bridge.VISUAL_DIM :]
    # As the class prompts are: centred on their mean, so the shared "colour word" direction adds nothing.
    variants = {"raw": names, "centred": names - names.mean(axis=0)}
    # White, grey and black cover 71% of the pixels on average and say little: hue names only.
    chromatic = names.copy()
    chromatic[[COLOURS.index(c) for c in ("black", "white", "gray")]] = 0.0
    variants["hues only"] = chromatic

    copies_task = load_copydetect(args.data / "images").tasks[0]
    copy_paths = copies_task.database.paths
    row_of = {Path(p).resolve(): i for i, p in enumerate(paths)}
    order = np.array([row_of[Path(p).resolve()] for p in copy_paths])  # copydetect's items in captioned order
    items = copies_task.queries
    copies, _ = store.generated(items.key, len(items), items.make)
    copy_shares = np.stack([colour_shares(items.make(i)) for i in range(len(items))])
    originals = order[np.array([int(p[0]) for p in copies_task.judgements[""].positives])]
    kinds = {k: rows for k, rows in copies_task.breakdown.items() if len(rows)}

    print(f"colour shares: mean over the photos {dict(zip(COLOURS, shares.mean(0).round(3)))}")
    print("names, beta | captions R@1 R@10 median | first sentence R@1 R@10 median | copies R@1 R@10 | colour-edit copies R@1")
    for (variant, vectors), beta in [(v, b) for v in variants.items() for b in BETAS]:
        if beta == 0 and variant != "raw":
            continue
        db = with_colour(images, shares, vectors, beta)
        q = with_colour(copies, copy_shares, vectors, beta)
        cells = []
        for texts in (captions, short):
            s = texts @ db.T
            r = recall_at_k(s, owner, [1, 10])
            cells.append(f"{r[1]:.3f} {r[10]:.3f} {median_rank(s, owner):4.0f}")
        s = q @ db.T
        r = recall_at_k(s, originals, [1, 10])
        colour = recall_at_k(s[kinds["colour"]], originals[kinds["colour"]], 1)
        print(f"{variant} {beta:3.1f} | {cells[0]} | {cells[1]} | {r[1]:.3f} {r[10]:.3f} | {colour:.3f}", flush=True)


if __name__ == "__main__":
    main()
