"""Which class names should lite0-minilm's prompts use? Image side: the class vectors images are built from.

    nice -n 10 python benchmarks/class_prompts.py [--data ../shared/data/captioned-dev]

Each variant rebuilds the 1000 class-prompt vectors (the four templates, centred) and scores
text->image by the semantic half (what ranks text queries; the visual half is zero on the text side)
with today's text vectors (sentences mixed in): R@1 / R@10, median rank, on the tuning half and the
other half of ``glimpse eval --adapt``'s split (seed 0) and on all photos. Variants: the ImageNet labels;
the plain-English names of ``glimpse/encoders/data/imagenet_prompt_names.txt`` (kept); hypernyms
("beagle, a type of dog", index ranges written by hand below); "a person wearing a {}" for worn
classes; hypernyms mixed into the class vector. Logits come from the default precision's image model.
Results: benchmarks/QUALITY_NOTES.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from glimpse.encoders import bridge, create_encoder, l2_normalize  # noqa: E402
from glimpse.eval.datasets import load_captioned  # noqa: E402
from glimpse.query.adapt import held_out_split  # noqa: E402
from text_side import figures  # noqa: E402  (this folder is on the path when run as a script)

#: Hypernyms of contiguous runs of ImageNet classes (first, last, kind), by hand from the class list.
KINDS = (
    (0, 1, "fish"), (2, 4, "shark"), (5, 6, "ray"), (7, 24, "bird"), (25, 29, "salamander"), (30, 32, "frog"),
    (33, 37, "turtle"), (38, 48, "lizard"), (49, 50, "crocodile"), (52, 68, "snake"), (70, 77, "spider"),
    (80, 100, "bird"), (107, 117, "sea animal"), (118, 125, "crab"), (127, 146, "bird"), (147, 149, "whale"),
    (151, 268, "dog"), (269, 275, "wild dog"), (277, 280, "fox"), (281, 285, "cat"), (286, 293, "big cat"),
    (294, 297, "bear"), (300, 320, "insect"), (321, 326, "butterfly"), (330, 332, "rabbit"), (333, 338, "rodent"),
    (341, 343, "pig"), (345, 347, "cattle"), (348, 353, "antelope"), (365, 369, "ape"), (370, 384, "monkey"),
    (385, 386, "elephant"), (389, 397, "fish"),
)
#: Classes worn by people (clothes, hats, shoes, masks): a photo of one is usually a photo of a person.
WORN = (399, 400, 411, 433, 439, 445, 451, 452, 457, 459, 461, 465, 474, 490, 501, 502, 514, 515, 518, 524, 529, 552,
        560, 568, 570, 578, 584, 601, 608, 610, 614, 615, 617, 629, 630, 638, 639, 643, 652, 655, 658, 667, 678, 679,
        689, 691, 697, 715, 735, 770, 774, 775, 793, 796, 806, 808, 824, 834, 836, 837, 841, 842, 869, 887, 903, 906)


def prompt_vectors(encoder, names: list[str]) -> np.ndarray:
    total = sum(encoder._encode_minilm([t.format(n) for n in names]) for t in bridge.PROMPT_TEMPLATES)
    return l2_normalize(total)


def semantic(logits: np.ndarray, classes: np.ndarray) -> np.ndarray:
    z = logits / bridge.TEMPERATURE
    p = np.exp(z - z.max(axis=1, keepdims=True))
    return l2_normalize((p / p.sum(axis=1, keepdims=True)) @ (classes - classes.mean(axis=0, keepdims=True)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "captioned-dev")
    args = ap.parse_args()
    encoder = create_encoder("lite0-minilm")
    task = load_captioned(args.data).tasks[0]
    owner = np.array([int(p[0]) for p in task.judgements[""].positives])
    paths = list(task.database.paths)
    logits = np.concatenate([encoder.image_features(np.stack([encoder.prepare(Image.open(p)) for p in
                                                               paths[s : s + 32]]))[1] for s in range(0, len(paths), 32)])
    logits = logits[owner]  # row i: caption i's image
    texts = encoder.text_semantic(list(task.queries.texts))
    train = ~held_out_split(len(paths), 0.5, 0)[owner]
    tune, held = np.flatnonzero(train), np.flatnonzero(~train)
    labels, plain = bridge.load_class_names(), bridge.load_prompt_names()
    hypernym = list(labels)
    for first, last, kind in KINDS:
        for i in range(first, last + 1):
            hypernym[i] = f"{labels[i]}, a type of {kind}"
    worn = [f"person wearing a {n}" if i in WORN else n for i, n in enumerate(labels)]
    kinds_only = prompt_vectors(encoder, [next((k for a, b, k in KINDS if a <= i <= b), n) for i, n in enumerate(labels)])
    base = prompt_vectors(encoder, labels)
    has_kind = np.zeros(len(labels), bool)
    for first, last, _ in KINDS:
        has_kind[first : last + 1] = True
    mixed = base.copy()
    mixed[has_kind] = l2_normalize(base[has_kind] + 0.25 * kinds_only[has_kind])
    variants = {
        "ImageNet labels (before)": base,
        "**plain-English names for 127 labels (kept)**": prompt_vectors(encoder, plain),
        '"beagle, a type of dog" (hypernyms)': prompt_vectors(encoder, hypernym),
        '"a person wearing a jersey" (66 worn classes)': prompt_vectors(encoder, worn),
        "labels + 0.25 x the hypernym's prompt vector": mixed,
    }
    print("| class names in the prompts | tuning half | other half | all |")
    print("|---|---|---|---|")
    for label, classes in variants.items():
        images = semantic(logits, classes)
        cells = [figures(texts[tune], images[tune]), figures(texts[held], images[held]), figures(texts, images)]
        print(f"| {label} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
