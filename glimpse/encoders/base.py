"""The encoder interface: images and texts into one vector space."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class EncoderInfo:
    """What a collection records about the encoder that filled it.

    Two encoders are interchangeable only when all three fields match: vectors from
    different models (or versions of one model) are not comparable.
    """

    name: str
    dim: int
    version: str


class Encoder(ABC):
    """Embeds images and texts into one L2-normalised space, so one cosine serves both.

    Image encoding is split in two so that ingest can run the cheap, GIL-releasing part
    (``prepare``: resize and convert one decoded image) in decode worker threads while the
    model runs ``encode_prepared`` on whole batches.
    """

    name: str
    dim: int
    version: str
    #: Side in pixels that ``prepare`` needs at least; decoders may shrink to it early.
    image_size: int = 224
    #: How many ``encode_prepared`` calls ingest may run at once, each from its own thread. An
    #: encoder that spreads one call over its own threads says 2, so they get the next batch's
    #: work while the slowest finishes this one.
    concurrent_batches: int = 1
    #: What else than name and version sets the image vectors' exact values (a precision, a
    #: quantisation): caches of vectors are keyed by it; collections are not (precisions are close).
    variant: str = ""

    @property
    def info(self) -> EncoderInfo:
        return EncoderInfo(self.name, self.dim, self.version)

    def at_version(self, version: str) -> Encoder | None:
        """This model as an earlier ``version`` of it computed vectors (a collection filled then keeps
        its encoder after an upgrade of glimpse), or None where that version cannot be built."""
        return None

    @property
    def options(self) -> dict[str, str]:
        """The constructor options that choose the model, recorded by collections so that a
        later open without options rebuilds the same encoder (device and precision are not)."""
        return {}

    @abstractmethod
    def prepare(self, image: Image.Image) -> np.ndarray:
        """One RGB image -> the model's input array (any fixed shape). Thread-safe."""

    @abstractmethod
    def encode_prepared(self, batch: np.ndarray) -> np.ndarray:
        """A stack of ``prepare`` outputs -> float32 (n, dim), rows L2-normalised."""

    @abstractmethod
    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Texts -> float32 (n, dim), rows L2-normalised."""

    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        if not images:
            return np.zeros((0, self.dim), np.float32)
        return self.encode_prepared(np.stack([self.prepare(im) for im in images]))


def l2_normalize(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), eps)


def to_float32(x: np.ndarray) -> np.ndarray:
    """``x`` as float32 (too large: inf). A wider float's rows (its last axis) are scaled by their
    largest magnitude in their own precision first: a float64 row of 1e-50s (or 1e40s) has a
    direction, which float32 would round to all zeros (or to infinities). NaN and inf stay so."""
    x = np.asarray(x)
    if x.dtype.kind == "f" and x.dtype.itemsize > 4:
        with np.errstate(invalid="ignore"):  # inf / inf: NaN, still refused
            peak = np.abs(x).max(axis=-1, keepdims=True)
            x = x / np.where(peak > 0, peak, 1)
    with np.errstate(over="ignore", invalid="ignore"):
        return x.astype(np.float32)


def unit_length(x: np.ndarray) -> np.ndarray:
    """Rows of ``x`` (none all zeros) at unit length, each scaled by its largest magnitude first:
    squares of 1e30 overflow float32 and those of 1e-30 vanish, which left such a row far from unit
    length (its cosines read 0.0 or 3e-18)."""
    x = np.asarray(x, dtype=np.float32)
    return l2_normalize(x / np.abs(x).max(axis=-1, keepdims=True))
