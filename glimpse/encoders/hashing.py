"""A tiny deterministic encoder for fast tests: no model, no weights, milliseconds.

Images: a 16x16 colour thumbnail projected by a fixed random matrix, so near-duplicate
images land close together. Texts: bag of hashed words. It is *not* a semantic model and
is never the default for users.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

import numpy as np
from PIL import Image

from ..settings import check_count
from .base import Encoder, l2_normalize

_THUMB = 16
#: Its projection is 768 x dim floats: 12 MiB at this size.
MAX_DIM = 4096


class HashEncoder(Encoder):
    name = "hash"
    version = "1"
    image_size = _THUMB

    def __init__(self, dim: int = 64, seed: int = 0):
        # Checked here, not by numpy: a 0-d encoder would start an upgrade that can never switch.
        self.dim, self.seed = check_count("dim", dim, 1, MAX_DIM), check_count("seed", seed, 0)
        rng = np.random.default_rng(seed)
        self._proj = rng.standard_normal((_THUMB * _THUMB * 3, dim)).astype(np.float32)
        #: Number of images embedded so far; tests use it to prove work was skipped.
        self.images_encoded = 0

    @property
    def options(self) -> dict[str, int]:
        # Only those that differ from the defaults, so collections made before record none.
        return {k: v for k, v in (("dim", self.dim), ("seed", self.seed)) if v != {"dim": 64, "seed": 0}[k]}

    def prepare(self, image: Image.Image) -> np.ndarray:
        small = image.convert("RGB").resize((_THUMB, _THUMB), Image.Resampling.BILINEAR)
        return np.asarray(small, dtype=np.float32).reshape(-1) / 255.0

    def encode_prepared(self, batch: np.ndarray) -> np.ndarray:
        self.images_encoded += len(batch)
        centred = batch - batch.mean(axis=1, keepdims=True)
        # In float64, rounded once: the same bits whatever the batch (float32 BLAS rounds by batch
        # shape), so tests can compare collections whose images were embedded in other batches.
        return l2_normalize((centred.astype(np.float64) @ self._proj).astype(np.float32))

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), np.float32)
        for row, text in enumerate(texts):
            for word in re.findall(r"\w+", text.lower()):
                h = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "little")
                out[row, h % self.dim] += 1.0 if (h >> 32) & 1 else -1.0
        return l2_normalize(out)
