"""Collections of precomputed vectors: embeddings made elsewhere, added under the user's keys."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

import numpy as np
import numpy.typing as npt

from ..encoders import to_float32, unit_length
from ..encoders.precomputed import PRECOMPUTED
from ..settings import check_callback, check_count
from ..storage.metadata import FileLink, NewItem
from ..vectorfiles import NpyRows
from .reports import ProgressFn


#: Rows per commit of ``add_vectors``: 16,384 x 1664-d float32 is 109 MB in flight.
VECTOR_BATCH = 16384
#: What a key may not hold: control characters, and lone surrogates (not storable as UTF-8).
_UNSHOWABLE = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")


class Importing:
    """``add_vectors``: rows checked whole first, then committed batch by batch as ingest commits."""

    def add_vectors(self, vectors: npt.ArrayLike, keys: Sequence[str], *, batch_size: int = VECTOR_BATCH,
                    progress: ProgressFn | None = None) -> np.ndarray:
        """Add embeddings computed elsewhere, one per key; returns their item ids (int64, in order).

        Only for a collection opened with ``encoder="precomputed", dim=D``. ``vectors`` is any
        (n, D) float array (a ``numpy.load(..., mmap_mode="r")`` map or a :class:`~glimpse.vectorfiles.NpyRows`
        is read batch by batch, so it need not fit in RAM). Rows must be finite and not all zero; each is L2-normalised on
        the way in, because search ranks by inner product and reports it as a cosine.
        ``keys`` are the user's names for the rows, unique strings (not only spaces), shown where an
        image collection shows paths (filters match them with ``path_glob``/``path_prefix``).
        A key the collection already holds gets the new vector, under a new id.

        Everything is checked before anything is written. Then, like ``add``, every
        ``batch_size`` rows are made durable in the vector file and visible in one SQLite
        transaction, so a kill leaves the batches committed before it.
        """
        if self.has_files:
            raise ValueError(f"add_vectors needs a collection of precomputed vectors (encoder='precomputed'); "
                             f"this one embeds image files with {self.encoder.name}: index them instead")
        check_count("batch_size", batch_size)
        check_callback("progress", progress)
        keys = _checked_keys(keys)
        vectors = vectors if isinstance(vectors, (np.ndarray, NpyRows)) else np.asarray(vectors)
        if vectors.dtype.kind not in "fiuO":  # complex would lose its imaginary part; text would parse as numbers
            raise ValueError(f"vectors must hold real numbers, not {vectors.dtype} values")
        if vectors.ndim != 2 or vectors.shape[1] != self.encoder.dim or len(vectors) != len(keys):
            raise ValueError(f"expected vectors of shape ({len(keys)}, {self.encoder.dim}) (one {self.encoder.dim}-d "
                             f"row per key), got {vectors.shape}")
        for start in range(0, len(keys), batch_size):
            _unit_rows(vectors[start : start + batch_size], start)  # refuse bad rows before any write
        ids = np.empty(len(keys), np.int64)
        with self._lock:
            self._refresh()
            meta = self._meta.get_meta()
            rows = int(meta.get("rows", 0))
            serial = int(meta.get("next_id", rows))  # never reused; rows are, after a compaction
            for start in range(0, len(keys), batch_size):
                batch = _unit_rows(vectors[start : start + batch_size], start)
                made = [self._vector_item_id(key, serial + start + i) for i, key in enumerate(keys[start : start + len(batch)])]
                items = [NewItem(item_id, f"vector:{item_id}", 0, 0, row=rows + i) for i, item_id in enumerate(made)]
                links = [FileLink(key, item.hash, 0, 0) for key, item in zip(keys[start : start + len(batch)], items)]
                ids[start : start + len(batch)] = [item.id for item in items]
                rows, _ = self._commit_rows(rows, items, batch, links)
                if progress:
                    progress(start + len(batch), len(keys))
            self._fit_codes()
            self._persist_index()
            self._keep_items()
        return ids

    def _vector_item_id(self, key: str, serial: int) -> int:
        """The id of a precomputed vector, the ``serial``-th added (another backend may derive it from the key)."""
        return serial

    @property
    def has_files(self) -> bool:
        """False for a collection of precomputed vectors: its items are keys, with no image file."""
        return self.encoder.name != PRECOMPUTED


def _checked_keys(keys: Sequence[str]) -> list[str]:
    """The keys of ``add_vectors`` as a list, or a ValueError naming the first bad one."""
    if isinstance(keys, (str, bytes)) or not isinstance(keys, Iterable):
        what = "one string" if isinstance(keys, (str, bytes)) else type(keys).__name__
        raise ValueError(f"keys must be a list of strings, one per vector, not {what}")
    keys = list(keys)
    seen: set[str] = set()
    for row, key in enumerate(keys):
        if not isinstance(key, str) or not key.strip():
            raise ValueError(f"key {row} must be a string with more than spaces in it, got {key!r}")
        if key in seen:
            raise ValueError(f"key {key!r} is given twice (rows {keys.index(key)} and {row}): each vector needs its own key")
        seen.add(key)
    bad = next((row for row, key in enumerate(keys) if _UNSHOWABLE.search(key)), None)
    if bad is not None:
        raise ValueError(f"key {bad} ({keys[bad]!r}) holds control characters or invalid Unicode: keys are shown as paths")
    return keys


def _unit_rows(batch, first_row: int) -> np.ndarray:
    """float32 rows of unit length, or a ValueError naming the first unusable row."""
    x = to_float32(batch)  # too large for float32 -> inf, refused below
    bad = ~np.isfinite(x).all(axis=1)
    if bad.any():
        raise ValueError(f"vector {first_row + int(np.argmax(bad))} holds NaN or infinite values "
                         "(or numbers too large for float32)")
    zero = ~x.any(axis=1)
    if zero.any():
        raise ValueError(f"vector {first_row + int(np.argmax(zero))} is all zeros: it has no direction to search by")
    return unit_length(x)
