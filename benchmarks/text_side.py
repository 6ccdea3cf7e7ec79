"""How should lite0-minilm turn a long caption into its text vector? Query-time only: image vectors stay.

    nice -n 10 python benchmarks/text_side.py [--data ../shared/data/captioned-dev]

Each caption's vector is ``w * MiniLM(caption) + (1 - w) * norm(sum_k d**k MiniLM(sentence_k))``,
normalised, for several whole-text weights ``w`` and sentence decays ``d`` (w = 1: the whole
caption alone, as before). Against overfitting, the images are split as ``glimpse eval --adapt``
splits them (seed 0): a setting is chosen on the first half (its captions against its images) and
reported on the other half, on all 857, and on the other half after ``glimpse adapt``
(ridge, contrastive) trained on the first half with the same text vectors. Image vectors come from
``glimpse eval``'s cache (float16, as collections store them). Results: benchmarks/QUALITY_NOTES.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from glimpse.encoders import bridge, create_encoder, l2_normalize  # noqa: E402
from glimpse.eval.datasets import load_captioned  # noqa: E402
from glimpse.eval.embed import EmbeddingCache  # noqa: E402
from glimpse.metrics import median_of_ranks, ranks  # noqa: E402
from glimpse.query.adapt import fit_adapter, held_out_split  # noqa: E402

#: (whole-text weight, sentence decay); (1.0, 0.0) is the caption alone.
SETTINGS = ((1.0, 0.0), (0.0, 1.0), (0.0, 0.7), (0.0, 0.5), (0.5, 0.5), (0.25, 0.7), (0.25, 0.5))


def figures(texts: np.ndarray, images: np.ndarray) -> str:
    """R@1 / R@10, median rank of caption i finding image i."""
    first = ranks(texts @ images.T, np.arange(len(texts)))
    return f"{np.mean(first <= 1):.3f} / {np.mean(first <= 10):.3f}, {median_of_ranks(first):.0f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "captioned-dev")
    ap.add_argument("--cache", type=Path, default=None, help="glimpse eval's cache (default: its default)")
    args = ap.parse_args()
    encoder = create_encoder("lite0-minilm")
    task = load_captioned(args.data).tasks[0]
    owner = np.array([int(p[0]) for p in task.judgements[""].positives])
    images, _ = EmbeddingCache(encoder, args.cache).images(task.database.paths)
    images = images[owner]  # row i: caption i's image
    captions = list(task.queries.texts)
    whole = encoder._encode_minilm(captions)
    sentences = [bridge.split_sentences(c) for c in captions]
    flat = encoder._encode_minilm([s for parts in sentences for s in parts])
    position = np.concatenate([np.arange(len(parts)) for parts in sentences])
    caption_of = np.repeat(np.arange(len(captions)), [len(parts) for parts in sentences])
    train = ~held_out_split(len(images), 0.5, 0)[owner]
    tune, held = np.flatnonzero(train), np.flatnonzero(~train)
    print("| whole weight, sentence decay | tuning half | other half | all | other half, ridge | other half, contrastive |")
    print("|---|---|---|---|---|---|")
    for w, d in SETTINGS:
        mixed = np.zeros_like(whole)
        np.add.at(mixed, caption_of, flat * (d**position)[:, None])
        semantic = l2_normalize(w * whole + (1.0 - w) * l2_normalize(mixed))
        texts = np.zeros_like(images)
        texts[:, bridge.VISUAL_DIM :] = semantic
        texts = texts.astype(np.float16).astype(np.float32)  # as glimpse eval's cache holds them
        cells = [figures(texts[tune], images[tune]), figures(texts[held], images[held]), figures(texts, images)]
        for kind in ("ridge", "contrastive"):
            adapter = fit_adapter(texts[tune], images[tune], kind=kind, seed=0)
            cells.append(figures(adapter(texts[held]), images[held]))
        print(f"| {w}, {d} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
