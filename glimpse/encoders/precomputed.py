"""No model at all: a collection of embeddings computed elsewhere (``encoder="precomputed"``).

Its vectors come in through :meth:`glimpse.Collection.add_vectors` (or ``glimpse
import-vectors``) under the user's own keys, and it is searched by ``vector=`` or ``like=``.
Anything that needs a model (a text or image query, image files to index) is refused with a
message that says so.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

from ..settings import check_count
from .base import Encoder

PRECOMPUTED = "precomputed"
#: Far above any embedding in use (a few thousand dims); a row is 2 bytes a dim on disk.
MAX_DIM = 65536


class PrecomputedEncoder(Encoder):
    name = PRECOMPUTED
    version = "1"

    def __init__(self, dim: int | None = None):
        if dim is None:
            raise ValueError("encoder 'precomputed' needs dim=D, the length of the vectors you will add")
        self.dim = check_count("dim", dim, 1, MAX_DIM)  # True was 1, and 10**9 made 2 GB rows

    @property
    def options(self) -> dict[str, int]:
        return {"dim": self.dim}  # recorded: a later open without dim= knows it

    def prepare(self, image: Image.Image) -> np.ndarray:
        raise _no_model("an image")

    def encode_prepared(self, batch: np.ndarray) -> np.ndarray:
        raise _no_model("an image")

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        raise _no_model("a text")


def _no_model(what: str) -> ValueError:
    return ValueError(f"this collection holds precomputed vectors and has no model to embed {what}: "
                      "search it with vector= (a query vector; glimpse search --vector FILE.npy) "
                      "or like= (an item id; glimpse search --like ID)")
