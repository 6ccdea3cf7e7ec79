"""Pseudo-relevance feedback for text queries: does a query expanded by its own top photos rank better?

    nice -n 10 python benchmarks/feedback.py [--data ../shared/data/captioned-dev] [--encoder lite0-minilm]

Average query expansion (Chum et al. 2007; alpha-QE, Radenovic et al. 2018) carried across modalities: a text
query's exact top ``m`` photos are averaged (each weighted by its score to the power ``alpha``), and every photo
is scored again by cos(q, x) + weight * cos(f, x), ``f`` that normalised mean. The text vector of the default
encoder has no visual half; ``f`` brings the visual half of the photos the text found first.

Zero-shot, every caption against all 857 photos; after ``glimpse adapt`` (contrastive), the halves of
``benchmarks/adapt.py`` (seed 0) both ways round, trained on one half, scored on the other's captions against
its photos. Per setting: R@1 / R@10 / median rank and R@10 extrapolated to 2,582 photos (``benchmarks/adapt.py``).
No setting is chosen on held data: the table shows the best setting **on the scored captions themselves**,
an upper bound of what any choice could gain, with its paired standard error. Results:
benchmarks/QUALITY_NOTES.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from adapt import extrapolated_r10  # noqa: E402
from hubness import captioned_arguments, captioned_vectors, per_query  # noqa: E402

from glimpse.metrics import median_of_ranks, ranks  # noqa: E402
from glimpse.query.adapt import Contrastive, fit_adapter, held_out_split  # noqa: E402

OFF = (0, 0.0, 0.0)  # (m, weight, alpha)
GRID = [OFF] + [(m, w, a) for m in (1, 3, 5, 10) for w in (0.1, 0.2, 0.3, 0.5) for a in (0.0, 3.0)]


def expanded(q: np.ndarray, photos: np.ndarray, setting: tuple[int, float, float]) -> np.ndarray:
    """Scores of every photo for each query of ``q`` after feedback from its top ``m``."""
    scores = q @ photos.T
    m, weight, alpha = setting
    if not weight:
        return scores
    top = np.argpartition(-scores, m - 1, axis=1)[:, :m]
    weights = np.maximum(np.take_along_axis(scores, top, 1), 0.0) ** alpha
    mean = np.einsum("qm,qmd->qd", weights, photos[top])
    mean /= np.linalg.norm(mean, axis=1, keepdims=True) + 1e-12
    return scores + weight * (mean @ photos.T)


def figures(q: np.ndarray, photos: np.ndarray, target: np.ndarray, setting) -> dict:
    first = ranks(expanded(q, photos, setting), target)
    return {"r1": float(np.mean(first <= 1)), "r10": float(np.mean(first <= 10)), "median": median_of_ranks(first),
            "ext": extrapolated_r10(first, len(photos)), "per_query": per_query(first, len(photos))}


def report(label: str, q: np.ndarray, photos: np.ndarray, target: np.ndarray) -> None:
    runs = {setting: figures(q, photos, target, setting) for setting in GRID}
    base = runs[OFF]
    best = max(GRID, key=lambda s: runs[s]["ext"])
    for name, setting in (("off", OFF), ("best on these captions", best)):
        f = runs[setting]
        d = f["per_query"] - base["per_query"]
        m, weight, alpha = setting
        what = "-" if setting == OFF else f"top {m}, weight {weight:g}, alpha {alpha:g}"
        print(f"| {label} | {name}: {what} | {f['r1']:.3f} / {f['r10']:.3f}, {f['median']:.0f} | {f['ext']:.3f} | "
              f"{d.mean():+.3f} ± {d.std(ddof=1) / np.sqrt(len(d)):.3f} |", flush=True)


def main() -> None:
    _, photos, texts, owner = captioned_vectors(captioned_arguments(__doc__).parse_args())
    print(f"{len(GRID) - 1} settings\n\n| queries | feedback | R@1 / R@10, median | R@10 at 2,582 | change ± paired SE |\n"
          "|---|---|---|---|---|")
    report(f"zero-shot, all {len(texts)} captions", texts, photos, owner)
    held = held_out_split(len(photos), 0.5, 0)
    for label, train, test in (("adapted on the first half, second", ~held, held),
                               ("adapted on the second half, first", held, ~held)):
        trained = np.flatnonzero(train[owner])
        adapter = fit_adapter(texts[trained], photos[owner[trained]], "contrastive", 0, None, Contrastive())
        scored = np.flatnonzero(test[owner])
        position = np.cumsum(test) - 1  # a photo's row among the scored half's photos
        report(label, adapter(texts[scored]), photos[test], position[owner[scored]])


if __name__ == "__main__":
    main()
