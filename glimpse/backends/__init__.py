"""Search backends: what answers top-k queries over a collection's vectors.

:class:`SearchBackend` is the interface; :class:`FlatIndex` (exact float search) and
:class:`BinaryIndex` (binary codes, flat or IVF, then the float re-rank) and
:class:`IVFCodesIndex` (coarse lists + RaBitQ residual codes, then the re-rank) implement it.
:func:`open_backend` is the one place that picks a collection's backend from its settings.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..codes import Binarizer
from ..settings import CodeSettings
from .base import CodeStage, SearchBackend
from ..codes.rabitq import RaBitQFit
from .binary import BinaryIndex, ivf_lists
from .exact import RowCheck, lengths_only
from .flat import FlatIndex
from .ivfcodes import IVFCodesIndex


def open_backend(directory: Path, dim: int, codes: CodeSettings | None, binarizer: Binarizer | None,
                 reader: Callable[[np.ndarray], np.ndarray], size: int,
                 check: RowCheck = lengths_only) -> SearchBackend:
    """A collection's backend: exact float search until a binarizer is fitted, then its codes.

    Codes are restored from the newest file this fit made (any generation: their ids say what
    they hold; the caller adds and removes the difference), else start empty, as IVF lists
    once ``size`` vectors make them pay off. ``reader`` reads stored vectors for the re-rank, and
    ``check`` says which of those read are whole (and reports the others).
    """
    if codes is None or binarizer is None:
        return FlatIndex(dim)
    if isinstance(binarizer, RaBitQFit):
        index = IVFCodesIndex.restore(directory, None, dim, binarizer=binarizer) or IVFCodesIndex(binarizer)
    else:
        index = BinaryIndex.restore(directory, None, dim, binarizer=binarizer) or BinaryIndex(binarizer, lists=ivf_lists(size))
    index.reader, index.check, index.oversample, index.rerank = reader, check, codes.oversample, codes.rerank
    return index


__all__ = ["BinaryIndex", "CodeStage", "FlatIndex", "IVFCodesIndex", "SearchBackend", "open_backend"]
