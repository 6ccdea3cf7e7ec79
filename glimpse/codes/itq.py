"""``itq``: PCA to ``bits`` dimensions, then the iterative-quantisation rotation.

Gong & Lazebnik, "Iterative Quantization" (CVPR 2011): after centring and projecting onto
the top ``bits`` principal components V, alternate B = sign(V R) and the orthogonal
Procrustes solution R = argmin ||B - V R|| (an SVD), starting from a seeded random rotation.
The rotation spreads variance evenly over the bits so that each sign loses less.
Needs ``bits <= dim``. The rotation is learned on at most ``sample`` vectors (seeded
subsample); the PCA uses all of them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .base import orthogonal
from .linear import LinearBinarizer


class ITQBinarizer(LinearBinarizer):
    name = "itq"
    version = 1

    def __init__(self, bits: int = 256, seed: int = 0, iterations: int = 50,
                 sample: int = 50_000) -> None:
        super().__init__(bits, seed)
        if iterations < 0:
            raise ValueError(f"iterations must be >= 0, got {iterations}")
        if sample < 1:
            raise ValueError(f"sample must be >= 1, got {sample}")
        self.iterations = int(iterations)
        self.sample = int(sample)

    def options(self) -> dict[str, Any]:
        return {"iterations": self.iterations, "sample": self.sample}

    def min_fit_vectors(self, dim: int) -> int:
        return max(2, self.bits)

    def check_dim(self, dim: int) -> None:
        if self.bits > dim:
            raise ValueError(
                f"itq: {self.bits} bits need at least that many input dimensions, got {dim} "
                "(use 'sign' or 'learned' for more bits than dimensions)"
            )

    def _fit(self, x: np.ndarray) -> None:
        n, dim = x.shape
        rng = np.random.default_rng([self.seed, 0x17A])
        mean = x.mean(axis=0, dtype=np.float64)
        xc = x - mean.astype(np.float32)
        cov = (xc.T.astype(np.float64) @ xc) / n
        evals, evecs = np.linalg.eigh(cov)
        pca = evecs[:, ::-1][:, : self.bits]
        # Fix each component's sign (largest entry positive): eigh's signs are arbitrary.
        pca *= np.sign(pca[np.abs(pca).argmax(axis=0), np.arange(self.bits)])[None, :]
        idx = np.arange(n) if n <= self.sample else np.sort(rng.choice(n, self.sample, replace=False))
        v = xc[idx].astype(np.float64) @ pca
        rot = orthogonal(rng, self.bits, self.bits)
        for _ in range(self.iterations):
            b = np.where(v @ rot >= 0, 1.0, -1.0)
            u, _, wt = np.linalg.svd(b.T @ v)  # maximise tr(B^T V R): R = W U^T
            rot = wt.T @ u.T
        self._set_projection(x, mean, pca @ rot)  # projection = PCA @ rotation
