"""Embed an evaluation's images and texts once, and keep the vectors on disk.

Scoring a configuration takes seconds; embedding a dataset takes the model minutes. So the
vectors of every image list, generated image set (augmented copies) and text list are cached
under ``<cache>/<encoder>-v<version>-<dim>d[-<variant>]/`` as ``.npz`` files named by a key of what went in:
absolute paths with size and mtime for files (a changed file is re-embedded), the texts
themselves, or the generator's description. Vectors are stored as float16 and used as float32
rounded from it, exactly as a collection stores and ranks them.

Each cache file also carries a content fingerprint (BLAKE2b of the files' bytes, as ingest
hashes them), which the report records so a run can be matched to its data.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from ..atomic import write_atomic
from ..encoders import Encoder
from ..ingest import prepare_files, stat_entry

#: Called with (done, total) while embedding.
ProgressFn = Callable[[int, int], None]

BATCH = 32


def default_cache_dir() -> Path:
    return Path(os.environ.get("GLIMPSE_EVAL_CACHE", "~/.glimpse/eval")).expanduser()


def digest(parts: Sequence[str]) -> str:
    h = hashlib.blake2b(digest_size=16)
    for part in parts:
        h.update(part.encode("utf-8", "surrogateescape"))
        h.update(b"\0")
    return h.hexdigest()


class EmbeddingCache:
    """Vectors of one encoder, cached by what was embedded."""

    def __init__(self, encoder: Encoder, root: str | os.PathLike | None = None):
        self.encoder = encoder
        base = Path(root).expanduser() if root is not None else default_cache_dir()
        variant = f"-{encoder.variant}" if encoder.variant else ""  # int8 and fp32 vectors differ
        self.root = base / f"{encoder.name}-v{encoder.version}-{encoder.dim}d{variant}"

    # -- public -----------------------------------------------------------------------------
    def images(self, paths: Sequence[Path], progress: ProgressFn | None = None) -> tuple[np.ndarray, str]:
        """Vectors (n, dim) of image files, in order, and their content fingerprint.

        Raises ValueError naming the files that cannot be read: a dataset with holes would
        silently change every figure.
        """
        entries = []
        missing = []
        for p in paths:
            try:
                entries.append(stat_entry(Path(p)))
            except OSError:
                missing.append(str(p))
        if missing:
            raise ValueError(_list_problem("image files are missing", missing))
        key = digest([f"{e.path}|{e.size}|{e.mtime_ns}" for e in entries])
        cached = self._load("images", key)
        if cached is not None:
            return cached
        vectors = np.zeros((len(entries), self.encoder.dim), np.float32)
        hashes: list[str] = []
        first_of: dict[str, int] = {}
        bad: list[str] = []
        batch: list[np.ndarray] = []
        slots: list[int] = []

        def flush() -> None:
            if batch:
                vectors[slots] = self.encoder.encode_prepared(np.stack(batch))
                batch.clear()
                slots.clear()

        for i, prepared in enumerate(prepare_files(entries, self.encoder.prepare, target=self.encoder.image_size)):
            if prepared.error is not None:
                bad.append(f"{prepared.entry.path}: {prepared.error}")
            hashes.append(prepared.hash or "")
            if prepared.array is not None:
                first_of[prepared.hash] = i
                batch.append(prepared.array)
                slots.append(i)
            if len(batch) >= BATCH:
                flush()
            if progress:
                progress(i + 1, len(entries))
        if bad:
            raise ValueError(_list_problem("image files cannot be decoded", bad))
        flush()
        for i, h in enumerate(hashes):  # identical files were decoded once: copy their vector
            if first_of.get(h, i) != i:
                vectors[i] = vectors[first_of[h]]
        fingerprint = digest(hashes)
        return self._save("images", key, vectors, fingerprint)

    def generated(self, key_parts: Sequence[str], count: int, make: Callable[[int], Image.Image],
                  progress: ProgressFn | None = None) -> tuple[np.ndarray, str]:
        """Vectors of ``count`` pictures ``make(i)`` builds (augmented copies, crops...).

        ``key_parts`` must describe everything ``make`` depends on (sources' fingerprint,
        seed, augmentation version): it is the cache key.
        """
        key = digest([*key_parts, str(count)])
        cached = self._load("generated", key)
        if cached is not None:
            return cached
        vectors = np.zeros((count, self.encoder.dim), np.float32)
        for start in range(0, count, BATCH):
            stop = min(count, start + BATCH)
            vectors[start:stop] = self.encoder.encode_images([make(i) for i in range(start, stop)])
            if progress:
                progress(stop, count)
        return self._save("generated", key, vectors, key)

    def texts(self, texts: Sequence[str], progress: ProgressFn | None = None) -> tuple[np.ndarray, str]:
        # An encoder whose text vectors change without its image vectors (lite0-minilm's text_version)
        # keeps its folder, so the version goes in the key.
        text_version = getattr(self.encoder, "text_version", None)
        key = digest(texts if text_version is None else [f"text v{text_version}", *texts])
        cached = self._load("texts", key)
        if cached is not None:
            return cached
        vectors = np.zeros((len(texts), self.encoder.dim), np.float32)
        for start in range(0, len(texts), BATCH * 4):
            stop = min(len(texts), start + BATCH * 4)
            vectors[start:stop] = self.encoder.encode_texts(list(texts[start:stop]))
            if progress:
                progress(stop, len(texts))
        return self._save("texts", key, vectors, key)

    # -- storage ----------------------------------------------------------------------------
    def _file(self, kind: str, key: str) -> Path:
        return self.root / f"{kind}-{key}.npz"

    def _load(self, kind: str, key: str) -> tuple[np.ndarray, str] | None:
        file = self._file(kind, key)
        if not file.exists():
            return None
        try:
            with np.load(file, allow_pickle=False) as z:
                return z["vectors"].astype(np.float32), str(z["fingerprint"])
        except (OSError, ValueError, KeyError):
            return None  # a damaged cache file is rebuilt, never trusted

    def _save(self, kind: str, key: str, vectors: np.ndarray, fingerprint: str) -> tuple[np.ndarray, str]:
        stored = vectors.astype(np.float16)
        write_atomic(self._file(kind, key), lambda f: np.savez(f, vectors=stored, fingerprint=np.array(fingerprint)))
        return stored.astype(np.float32), fingerprint


def _list_problem(what: str, items: list[str], shown: int = 5) -> str:
    more = f" (and {len(items) - shown} more)" if len(items) > shown else ""
    return f"{len(items)} {what}: " + "; ".join(items[:shown]) + more
