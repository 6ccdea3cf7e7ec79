"""Fusing several query vectors into one: composed image+text queries and weighted terms.

Composed query (training-free, after WeiMoCIR): ``q = norm((1 - alpha) * v + alpha * t)`` for
a reference image vector ``v`` and a modification text vector ``t``. The direction-vector
variant (after PDV) instead moves the image along the text's direction away from the
image's own text-space part, ``q = norm(v + beta * (t - norm(v_text)))``; it measured worse
on captioned-dev (``benchmarks/QUERY_NOTES.md``), so it is kept for the benchmark only.

Weighted terms: ``q = norm(sum_i w_i * v_i)`` over unit vectors, so ``-`` terms pull away.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: Text weight of a composed query, measured on captioned-dev (benchmarks/QUERY_NOTES.md).
DEFAULT_ALPHA = 0.6


def _unit(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float32)
    n = float(np.linalg.norm(v))
    if n == 0.0 or not np.isfinite(n):
        raise ValueError("the query adds up to nothing (terms cancel out or are empty)")
    return v / n


def compose(image: np.ndarray, text: np.ndarray, alpha: float = DEFAULT_ALPHA) -> np.ndarray:
    """WeiMoCIR fusion of one reference image vector and one text vector."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be between 0 (image only) and 1 (text only), got {alpha}")
    return _unit((1.0 - alpha) * _unit(image) + alpha * _unit(text))


def compose_direction(image: np.ndarray, text: np.ndarray, beta: float, text_dims: slice) -> np.ndarray:
    """PDV-style fusion: move the image along ``text - (the image's part in the text dims)``."""
    v = _unit(image)
    own = np.zeros_like(v)
    own[text_dims] = v[text_dims]
    return _unit(v + beta * (_unit(text) - _unit(own)))


def combine(vectors: Sequence[np.ndarray], weights: Sequence[float]) -> np.ndarray:
    """Weighted sum of unit vectors, normalised: the vector of a list of signed terms."""
    if len(vectors) != len(weights) or not len(vectors):
        raise ValueError("give one weight per vector, and at least one vector")
    # Only the weights' ratios matter: scaled to at most 1, huge ones do not overflow float32
    # (1e308 + 1e308 was inf) and tiny ones do not vanish (1e-320 times a unit vector was 0).
    largest = max(abs(float(w)) for w in weights)
    return _unit(sum((float(w) / largest) * _unit(v) for v, w in zip(vectors, weights)))
