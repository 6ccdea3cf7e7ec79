"""Linear maps between two encoders' image spaces, fitted on images embedded by both.

What a map is fitted on (:class:`Pairs`): the sampled images through both encoders, extra
views of them (:mod:`.views`: more pairs, and ones that show how edited copies move), and
texts through both text towers (XBT's idea: text queries are the new text tower's, so a map
that also carries old texts onto new texts keeps mapped images ranking for text).

Candidates: ``orthogonal`` (Procrustes: the rotation, or for dimensions that differ the
semi-orthogonal matrix, that best aligns the pairs; it keeps angles, so it cannot overfit) and
``ridge`` (least squares with a penalty; it can also rescale directions), each with and
without the text pairs. Each is measured by k-fold cross-validation over the whole sample (a
held-out 20% saturated: a few dozen pairs cannot tell maps apart), the way it is searched:
each image's true new vector queries the out-of-fold mapped sample (mean reciprocal rank of its
own), and new-encoder texts score the mapped sample as they score the true one (correlation).
The best by their product is refitted on every pair, then calibrated (:func:`calibrate`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..atomic import write_atomic
from ..encoders import l2_normalize
from ..storage.arrays import read_arrays
from .state import UPGRADE_REMEDY

KINDS = ("orthogonal", "ridge")
#: Ridge penalties tried, as shares of the pairs' mean squared norm per dimension.
PENALTIES = (0.3, 1.0, 3.0)
#: Weights of the text pairs tried (0: images only).
TEXT_WEIGHTS = (0.0, 0.3)
FOLDS = 5
#: Below this many sampled images there is nothing worth cross-validating: the map is ridge (an
#: orthogonal map fitted on so few pairs turns every other direction at random), unmeasured.
MIN_MEASURED = 10
SMALL_SAMPLE = ("ridge", 1.0, 0.3)


@dataclass(frozen=True)
class MapQuality:
    """How a map did on sampled images it was not fitted on (k-fold)."""

    top1: float  # share of true new vectors whose nearest mapped vector is their own image's
    mrr: float  # mean reciprocal rank of that own mapped vector
    cosine: float  # mean cosine between a mapped vector and its true new vector
    text: float | None  # mean correlation of new texts' scores on mapped and on true vectors
    pairs: int  # sampled images measured

    def key(self) -> float:
        return self.mrr * (1.0 if self.text is None else max(self.text, 0.0))


@dataclass
class Pairs:
    """Rows embedded by both encoders: ``x`` old, ``y`` new. ``group`` ties each row to its sampled
    image (views share their image's), so that a fold holds out an image with its views; the
    text pairs are ``texts`` (old, new) or None."""

    x: np.ndarray
    y: np.ndarray
    group: np.ndarray
    texts: tuple[np.ndarray, np.ndarray] | None = None

    def reversed(self) -> Pairs:
        return Pairs(self.y, self.x, self.group, None if self.texts is None else self.texts[::-1])

    def select(self, keep: np.ndarray) -> Pairs:
        return Pairs(self.x[keep], self.y[keep], self.group[keep], self.texts)

    @property
    def images(self) -> np.ndarray:
        """The rows of the sampled images themselves (the first row of each group)."""
        return np.unique(self.group, return_index=True)[1]


@dataclass
class SpaceMap:
    """``x -> normalise(x @ matrix)``: vectors of one space into another (dims may differ).

    Calibrated (``span``: an orthonormal basis of the new texts' span, ``share``), each mapped
    vector then holds ``share`` of its energy in that span, as the new encoder's own vectors do
    on average (see :func:`calibrate`)."""

    kind: str
    matrix: np.ndarray  # (dim from, dim to) float32
    span: np.ndarray | None = None  # (dim to, rank) float32
    share: float = 0.0

    def __call__(self, vectors: np.ndarray) -> np.ndarray:
        out = l2_normalize(np.asarray(vectors, np.float32) @ self.matrix)
        if self.span is None:
            return out
        text = (out @ self.span) @ self.span.T
        rest = out - text
        return l2_normalize(np.sqrt(self.share) * l2_normalize(text) + np.sqrt(1.0 - self.share) * l2_normalize(rest))

    # A new-space query's scores against mapped vectors, without mapping them: the mapped vector is a
    # weighted sum of unit parts (the texts' span and the rest, orthogonal; or the whole space), so
    # query . self(x) = sum over parts of weight * (x . matrix P q) / |x matrix P|. The norms are the
    # query-independent part (one matrix product per vector, kept by the caller); each query is
    # pulled back once.
    def part_norms(self, vectors: np.ndarray) -> np.ndarray:
        """(n, parts): each vector's norm in each part of the new space once multiplied by the matrix."""
        y = np.asarray(vectors, np.float32) @ self.matrix
        if self.span is None:
            return np.linalg.norm(y, axis=1, keepdims=True)
        text = np.linalg.norm(y @ self.span, axis=1)
        return np.stack([text, np.sqrt(np.maximum((y * y).sum(axis=1) - text**2, 0.0))], axis=1)

    def pulled_back(self, query: np.ndarray) -> np.ndarray:
        """(parts, dim from): a new-space query's weighted parts brought back through the matrix."""
        q = np.asarray(query, np.float32)
        if self.span is None:
            return (self.matrix @ q)[None]
        text = self.span @ (self.span.T @ q)
        return np.stack([np.sqrt(self.share) * (self.matrix @ text), np.sqrt(1.0 - self.share) * (self.matrix @ (q - text))])

    def scores(self, pulled: np.ndarray, vectors: np.ndarray, norms: np.ndarray) -> np.ndarray:
        """``self(vectors) @ query`` from the query ``pulled`` back and the vectors' ``part_norms``."""
        return ((np.asarray(vectors, np.float32) @ pulled.T) / np.maximum(norms, 1e-12)).sum(axis=1)

    def save(self, path: Path) -> None:
        """Written beside ``path``, made durable, then renamed over it (and the rename made durable): never torn."""
        calibration = {} if self.span is None else {"span": self.span, "share": np.array(self.share)}
        write_atomic(path, lambda f: np.savez(f, matrix=self.matrix, kind=np.array(self.kind), **calibration))

    @classmethod
    def load(cls, path: Path) -> SpaceMap:
        data = read_arrays(path, ("kind", "matrix"), UPGRADE_REMEDY)
        span = data["span"].astype(np.float32) if "span" in data else None
        return cls(str(data["kind"]), data["matrix"].astype(np.float32), span,
                   float(data["share"]) if span is not None else 0.0)


Candidate = tuple[str, float, float]  # kind, penalty, text weight


@dataclass
class Moments:
    """``x^T x`` and ``x^T y`` of the image pairs and of the text pairs: every candidate's fit is a
    solve on them, so the folds' candidates share one pass over the pairs."""

    xx: np.ndarray
    xy: np.ndarray
    text: tuple[np.ndarray, np.ndarray] | None

    @classmethod
    def of(cls, pairs: Pairs, text: tuple[np.ndarray, np.ndarray] | None = None) -> Moments:
        """``text``: the text pairs' moments, when known already."""
        x, y = np.asarray(pairs.x, np.float64), np.asarray(pairs.y, np.float64)
        return cls(x.T @ x, x.T @ y, text if text is not None else cls.of_texts(pairs.texts))

    @staticmethod
    def of_texts(texts: tuple[np.ndarray, np.ndarray] | None) -> tuple[np.ndarray, np.ndarray] | None:
        if texts is None:
            return None
        tx, ty = (np.asarray(t, np.float64) for t in texts)
        return tx.T @ tx, tx.T @ ty

    def fit(self, kind: str, penalty: float = 1.0, text_weight: float = 0.0) -> SpaceMap:
        xx, xy = self.xx, self.xy
        if text_weight and self.text is not None:
            xx, xy = xx + text_weight**2 * self.text[0], xy + text_weight**2 * self.text[1]
        if kind == "orthogonal":
            # argmin ||xW - y|| over W with orthonormal rows or columns: U V^T of the SVD of x^T y.
            u, _, vt = np.linalg.svd(xy, full_matrices=False)
            matrix = u @ vt
        elif kind == "ridge":  # the penalty is a share of the image pairs' mean squared norm per dimension
            matrix = np.linalg.solve(xx + penalty * np.trace(self.xx) / len(xx) * np.eye(len(xx)), xy)
        else:
            raise ValueError(f"unknown map {kind!r}: use one of {', '.join(KINDS)}")
        return SpaceMap(kind, matrix.astype(np.float32))


def fit_kind(kind: str, pairs: Pairs, penalty: float = 1.0, text_weight: float = 0.0) -> SpaceMap:
    """Fit one kind of map on ``pairs`` (the text pairs weighted by ``text_weight``)."""
    return Moments.of(pairs).fit(kind, penalty, text_weight)


def out_of_fold(candidates: list[Candidate], pairs: Pairs, seed: int) -> list[np.ndarray]:
    """For each candidate, each sampled image's vector mapped by it fitted on the other folds
    (views follow their image)."""
    images = pairs.images
    fold = np.empty(len(images), np.int64)
    fold[np.random.default_rng(seed).permutation(len(images))] = np.arange(len(images)) % FOLDS
    fold_of_group = dict(zip(pairs.group[images].tolist(), fold.tolist()))
    row_fold = np.array([fold_of_group[g] for g in pairs.group.tolist()])
    mapped = [np.zeros((len(images), pairs.y.shape[1]), np.float32) for _ in candidates]
    text = Moments.of_texts(pairs.texts)
    for f in range(FOLDS):
        held = fold == f
        moments = Moments.of(pairs.select(row_fold != f), text)
        for out, candidate in zip(mapped, candidates):
            out[held] = moments.fit(*candidate)(pairs.x[images[held]])
    return mapped


def measure(mapped: np.ndarray, truth: np.ndarray, texts: np.ndarray | None) -> MapQuality:
    """``mapped`` against ``truth`` (paired rows), as searches see them: see the module's docstring."""
    truth = l2_normalize(truth)
    scores = truth @ mapped.T
    own = np.diag(scores)
    rank = (scores > own[:, None]).sum(axis=1)
    text = None
    if texts is not None:
        a, b = texts @ mapped.T, texts @ truth.T
        a, b = a - a.mean(axis=1, keepdims=True), b - b.mean(axis=1, keepdims=True)
        text = float(((a * b).sum(1) / np.sqrt((a * a).sum(1) * (b * b).sum(1) + 1e-12)).mean())
    return MapQuality(float((rank == 0).mean()), float((1.0 / (1 + rank)).mean()), float(own.mean()), text, len(truth))


def calibrate(space_map: SpaceMap, truth: np.ndarray, texts: np.ndarray | None) -> SpaceMap:
    """Give each mapped vector the share of its energy in the texts' span that true new vectors hold.

    A fitted map predicts some directions better than others, and normalising its output hands
    the poorly predicted directions' energy to the well predicted ones: mapped lite0 -> lite2
    vectors held 0.23 of their energy in MiniLM's text dimensions against the true 0.19, so text
    queries scored them about 10% higher than re-embedded images, which lost to them as the
    backfill advanced. A scale folded into the matrix could only match the sample's mean (the
    share moves with the amount fitted on); this sets every mapped vector's."""
    if texts is None:
        return space_map
    u, s, _ = np.linalg.svd(np.asarray(texts, np.float64).T, full_matrices=False)
    span = u[:, s > 1e-6 * s[0]]
    if span.shape[1] >= span.shape[0]:  # the texts span every direction: there is no share to set
        return space_map
    share = float(((l2_normalize(truth) @ span) ** 2).sum(1).mean())
    return SpaceMap(space_map.kind, space_map.matrix, span.astype(np.float32), share)


def fit_map(pairs: Pairs, seed: int = 0) -> tuple[SpaceMap, MapQuality | None, dict]:
    """The best map for ``pairs``, its cross-validated quality, and every candidate's figures."""
    images = pairs.images
    if len(images) < MIN_MEASURED:
        kind, penalty, weight = SMALL_SAMPLE
        return fit_kind(kind, pairs, penalty, weight), None, {}
    weights = TEXT_WEIGHTS if pairs.texts is not None else (0.0,)
    candidates = [("orthogonal", 1.0, w) for w in weights] + [("ridge", p, w) for p in PENALTIES for w in weights]
    texts = None if pairs.texts is None else l2_normalize(pairs.texts[1])
    truth = pairs.y[images]
    figures = {}
    for (kind, penalty, weight), mapped in zip(candidates, out_of_fold(candidates, pairs, seed)):
        name = kind + (f":{penalty:g}" if kind == "ridge" else "") + (f"+text {weight:g}" if weight else "")
        figures[name] = (kind, penalty, weight, measure(mapped, truth, texts))
    best = max(figures, key=lambda name: figures[name][3].key())
    kind, penalty, weight, quality = figures[best]
    chosen = calibrate(fit_kind(kind, pairs, penalty, weight), truth, texts)
    chosen.kind = best  # "ridge:1+text 0.3" names its penalty and text weight
    return chosen, quality, {name: asdict(f[3]) for name, f in figures.items()}
