"""Binarizers that are one centred linear map: ``code = sign((x - mean) @ projection)``.

``sign`` and ``itq`` differ only in how they choose ``projection``; storing, encoding and
asymmetric scoring are the same and live here.
"""

from __future__ import annotations

import numpy as np

from .base import Binarizer


class LinearBinarizer(Binarizer):
    def __init__(self, bits: int = 256, seed: int = 0) -> None:
        super().__init__(bits, seed)
        self.mean: np.ndarray | None = None  # (dim,)
        self.projection: np.ndarray | None = None  # (dim, bits)
        self.scale: np.ndarray | None = None  # (bits,) mean |projection| per bit

    def _set_projection(self, x: np.ndarray, mean: np.ndarray, projection: np.ndarray) -> None:
        self.mean = mean.astype(np.float32)
        self.projection = projection.astype(np.float32)
        self.scale = np.abs((x - self.mean) @ self.projection).mean(axis=0).astype(np.float32)

    def _project(self, x: np.ndarray) -> np.ndarray:
        return (x - self.mean) @ self.projection

    def _query_vector(self, x: np.ndarray) -> np.ndarray:
        # x - mean ~ projection @ (scale * b): score the centred query against that
        # reconstruction. Centring the query too measured better than the plain q.x estimate
        # (real embeddings at 256 bits: sign recall@10 0.37 vs 0.31; ITQ 0.49 either way).
        return self._project(x) * self.scale

    def _params(self) -> dict[str, np.ndarray]:
        return {"mean": self.mean, "projection": self.projection, "scale": self.scale}

    def _set_params(self, params: dict[str, np.ndarray], dim: int) -> None:
        mean, proj, scale = params["mean"], params["projection"], params["scale"]
        if mean.shape != (dim,) or proj.shape != (dim, self.bits) or scale.shape != (self.bits,):
            raise ValueError(f"{self.name} binarizer file: parameter shapes do not match bits/dim")
        self.mean = mean.astype(np.float32)
        self.projection = proj.astype(np.float32)
        self.scale = scale.astype(np.float32)
