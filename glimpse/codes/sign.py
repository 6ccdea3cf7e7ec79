"""``sign``: the sign of a random rotation of the centred vectors -- the baseline.

Fit learns only the mean (embeddings such as GeM features are far from zero-mean, and
uncentred signs would be nearly constant) and the per-bit scale used for asymmetric scores.
The rotation is drawn from the seed, not learned: with ``bits <= dim`` it is a Haar-random
matrix with orthonormal columns; with more bits than dimensions, independent random
rotations are stacked.
"""

from __future__ import annotations

import numpy as np

from .base import Binarizer, orthogonal


class SignBinarizer(Binarizer):
    name = "sign"
    version = 1

    def __init__(self, bits: int = 256, seed: int = 0) -> None:
        super().__init__(bits, seed)
        self.mean: np.ndarray | None = None  # (dim,)
        self.rotation: np.ndarray | None = None  # (dim, bits)
        self.scale: np.ndarray | None = None  # (bits,) mean |projection| per bit

    def _fit(self, x: np.ndarray) -> None:
        dim = x.shape[1]
        rng = np.random.default_rng([self.seed, 0x5167])
        blocks = []
        left = self.bits
        while left > 0:
            cols = min(left, dim)
            blocks.append(orthogonal(rng, dim, cols))
            left -= cols
        mean = x.mean(axis=0, dtype=np.float64)
        self.mean = mean.astype(np.float32)
        self.rotation = np.hstack(blocks).astype(np.float32)
        proj = (x - self.mean) @ self.rotation
        self.scale = np.abs(proj).mean(axis=0).astype(np.float32)

    def _project(self, x: np.ndarray) -> np.ndarray:
        return (x - self.mean) @ self.rotation

    def _query_vector(self, x: np.ndarray) -> np.ndarray:
        # x - mean ~ rotation @ (scale * b): score the centred query against that
        # reconstruction. Centring the query too measured better than the plain q.x estimate
        # (real embeddings at 256 bits: recall@10 0.37 vs 0.31; ITQ 0.49 either way).
        return ((x - self.mean) @ self.rotation) * self.scale

    def _params(self) -> dict[str, np.ndarray]:
        return {"mean": self.mean, "rotation": self.rotation, "scale": self.scale}

    def _set_params(self, params: dict[str, np.ndarray], dim: int) -> None:
        mean, rot, scale = params["mean"], params["rotation"], params["scale"]
        if mean.shape != (dim,) or rot.shape != (dim, self.bits) or scale.shape != (self.bits,):
            raise ValueError("sign binarizer file: parameter shapes do not match bits/dim")
        self.mean = mean.astype(np.float32)
        self.rotation = rot.astype(np.float32)
        self.scale = scale.astype(np.float32)
