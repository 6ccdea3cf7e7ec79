"""``sign``: the sign of a random rotation of the centred vectors -- the baseline.

Fit learns only the mean (embeddings such as GeM features are far from zero-mean, and
uncentred signs would be nearly constant) and the per-bit scale used for asymmetric scores.
The rotation is drawn from the seed, not learned: with ``bits <= dim`` it is a Haar-random
matrix with orthonormal columns; with more bits than dimensions, independent random
rotations are stacked.
"""

from __future__ import annotations

import numpy as np

from .base import orthogonal
from .linear import LinearBinarizer


class SignBinarizer(LinearBinarizer):
    name = "sign"
    version = 2  # 2: parameters stored as "projection" (was "rotation")

    def _fit(self, x: np.ndarray) -> None:
        dim = x.shape[1]
        rng = np.random.default_rng([self.seed, 0x5167])
        blocks = []
        left = self.bits
        while left > 0:
            cols = min(left, dim)
            blocks.append(orthogonal(rng, dim, cols))
            left -= cols
        self._set_projection(x, x.mean(axis=0, dtype=np.float64), np.hstack(blocks))
