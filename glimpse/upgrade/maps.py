"""Linear maps between two encoders' image spaces, fitted on images embedded by both.

Two kinds compete on a held-out share of the sample: ``orthogonal`` (Procrustes: the
rotation, or for dimensions that differ the semi-orthogonal matrix, that best aligns the two
samples; it keeps angles, so it cannot overfit a small sample) and ``ridge`` (least squares
with a penalty chosen on the same held-out share: it can also rescale directions). The one
whose mapped vectors lie closest to their true new vectors (mean cosine, then top-1
agreement) is refitted on the whole sample and kept, with its held-out figures. Cosine
first: top-1 among a few dozen held-out pairs saturates (an orthogonal map with cosine 0.68
tied a ridge map with 0.80 on it, and searched worse: benchmarks/upgrade.py).
"""

from __future__ import annotations

import io
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..encoders import l2_normalize

KINDS = ("orthogonal", "ridge")
#: Ridge penalties tried, as shares of the sample's mean squared norm per dimension.
PENALTIES = (0.01, 0.1, 0.3, 1.0, 3.0)
HOLDOUT = 0.2
#: Below this many pairs there is no held-out share worth measuring: orthogonal, unmeasured.
MIN_MEASURED = 10


@dataclass(frozen=True)
class MapQuality:
    """How a map did on held-out pairs it was not fitted on."""

    top1: float  # share of mapped vectors whose nearest true new vector is their own
    cosine: float  # mean cosine between a mapped vector and its true new vector
    pairs: int  # held-out pairs measured

    def key(self) -> tuple[float, float]:
        return self.cosine, self.top1


@dataclass
class SpaceMap:
    """``x -> normalise(x @ matrix)``: vectors of one space into another (dims may differ)."""

    kind: str
    matrix: np.ndarray  # (dim from, dim to) float32

    def __call__(self, vectors: np.ndarray) -> np.ndarray:
        return l2_normalize(np.asarray(vectors, np.float32) @ self.matrix)

    def save(self, path: Path) -> None:
        """Written beside ``path``, made durable, then renamed over it: never torn."""
        buffer = io.BytesIO()
        np.savez(buffer, matrix=self.matrix, kind=np.array(self.kind))
        tmp = path.with_name(f".{path.name}.tmp")
        with open(tmp, "wb") as f:
            f.write(buffer.getvalue())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> SpaceMap:
        with np.load(path) as data:
            return cls(str(data["kind"]), data["matrix"].astype(np.float32))


def fit_kind(kind: str, x: np.ndarray, y: np.ndarray, penalty: float = 0.1) -> SpaceMap:
    """Fit one kind of map from rows ``x`` to rows ``y`` (paired)."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if kind == "orthogonal":
        # argmin ||xW - y|| over W with orthonormal rows or columns: U V^T of the SVD of x^T y.
        u, _, vt = np.linalg.svd(x.T @ y, full_matrices=False)
        matrix = u @ vt
    elif kind == "ridge":
        scale = penalty * float((x * x).sum()) / x.shape[1]
        matrix = np.linalg.solve(x.T @ x + scale * np.eye(x.shape[1]), x.T @ y)
    else:
        raise ValueError(f"unknown map {kind!r}: use one of {', '.join(KINDS)}")
    return SpaceMap(kind, matrix.astype(np.float32))


def measure(space_map: SpaceMap, x: np.ndarray, y: np.ndarray) -> MapQuality:
    mapped = space_map(x)
    truth = l2_normalize(y)
    scores = mapped @ truth.T
    top1 = float((scores.argmax(axis=1) == np.arange(len(x))).mean())
    return MapQuality(top1, float(np.diag(scores).mean()), len(x))


def fit_map(x: np.ndarray, y: np.ndarray, seed: int = 0) -> tuple[SpaceMap, MapQuality | None, dict]:
    """The best map from ``x`` to ``y``, its held-out quality, and every candidate's figures.

    Candidates are fitted on a seeded 80% of the pairs and measured on the rest; the winner
    is refitted on all of them."""
    n = len(x)
    if n < MIN_MEASURED:
        return fit_kind("orthogonal", x, y), None, {}
    held = np.random.default_rng(seed).permutation(n)[: max(2, round(HOLDOUT * n))]
    test = np.zeros(n, bool)
    test[held] = True
    candidates = {"orthogonal": fit_kind("orthogonal", x[~test], y[~test])}
    for penalty in PENALTIES:
        candidates[f"ridge:{penalty:g}"] = fit_kind("ridge", x[~test], y[~test], penalty)
    figures = {name: measure(m, x[test], y[test]) for name, m in candidates.items()}
    best = max(figures, key=lambda name: figures[name].key())
    kind, _, penalty = best.partition(":")
    chosen = fit_kind(kind, x, y, float(penalty or 0.1))
    chosen.kind = best  # "ridge:1" names its penalty
    return chosen, figures[best], {name: asdict(q) for name, q in figures.items()}
