"""Caption adaptation: learn how a collection's captions word things, so text queries find its images."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from ..metrics import recall_at_k
from ..query.adapt import FORMAT as ADAPT_FORMAT, KINDS as ADAPT_KINDS, MIN_PAIRS, TextAdapter, fit_adapter, held_out_split, read_captions, sidecar_caption
from ..settings import check_callback, check_count
from ..upgrade import state as upgrade_state
from .reports import AdaptReport, ProgressFn


class Adapting:
    """``adapt`` and ``remove_adapt``; the loaded text map."""

    def adapt(
        self,
        captions: str | os.PathLike | None = None,
        *,
        kind: str = "contrastive",
        holdout: float = 0.2,
        seed: int = 0,
        progress: ProgressFn | None = None,
    ) -> AdaptReport:
        """Learn how this collection's captions word things, so text queries find its images.

        ``captions``: a TSV (``image<TAB>caption``, paths relative to the TSV); without it,
        sidecar ``photo.jpg.txt``/``photo.txt`` (or XMP ``dc:description``) files next to the indexed images. A seeded
        ``holdout`` share of the captioned images is first kept out to report R@10 before and
        after on them; the stored map is then trained on every pair. Replaces any earlier map.
        """
        started = time.perf_counter()
        if isinstance(holdout, bool) or not isinstance(holdout, (int, float)) or not 0.0 <= holdout < 1.0:
            raise ValueError(f"holdout must be a share in [0, 1), not {holdout!r}")
        check_count("seed", seed, 0)
        check_callback("progress", progress)
        if captions is not None and not isinstance(captions, (str, os.PathLike)):
            raise ValueError(f"captions must be the path of a TSV file, not {type(captions).__name__}")
        if kind not in ADAPT_KINDS:
            raise ValueError(f"unknown adaptation {kind!r}: use one of {', '.join(ADAPT_KINDS)}")
        if not self.has_files:
            raise ValueError("this collection holds precomputed vectors and has no text model for captions to adapt")
        # The lock first: a second writer must hear "locked" now, not after minutes of training.
        with self._lock:
            report = self._adapt(captions, kind, holdout, seed, progress)
        report.seconds = time.perf_counter() - started
        return report

    def _adapt(self, captions, kind: str, holdout: float, seed: int, progress: ProgressFn | None) -> AdaptReport:
        ids, texts, missing = self._captioned(captions)
        if not ids:
            where = f"in {captions}" if captions is not None else "as .txt or .xmp files next to the indexed images"
            raise ValueError(f"no captioned image {where} is in this collection"
                             + (f" ({missing} captions name images it does not hold: index them first)" if missing else ""))
        self._ensure_index()
        ids_arr = np.array(ids, dtype=np.int64)
        text_vectors = self.encoder.encode_texts(texts)
        image_vectors = self._read_vectors(ids_arr)
        report = AdaptReport(kind=kind, pairs=len(ids), missing=missing)
        items = np.unique(ids_arr)
        held = held_out_split(len(items), holdout, seed)
        test = np.isin(ids_arr, items[held])
        if holdout and test.any() and (~test).sum() >= MIN_PAIRS:
            trial = fit_adapter(text_vectors[~test], image_vectors[~test], kind, seed)
            gallery = items[held]
            relevant = np.searchsorted(gallery, ids_arr[test])
            gallery_vectors = self._read_vectors(gallery)
            report.holdout_images = len(gallery)
            report.before = recall_at_k(text_vectors[test] @ gallery_vectors.T, relevant, 10)
            report.after = recall_at_k(trial(text_vectors[test]) @ gallery_vectors.T, relevant, 10)
        adapter = fit_adapter(text_vectors, image_vectors, kind, seed, progress)
        previous = self.settings().adapt
        kept = (upgrade_state.active(self._meta.get_meta()) or {}).get("adapt")  # the old space's, for an abort
        version = 1 + max((int(c["version"]) for c in (previous, kept) if c), default=0)
        name = f"adapt-{version}.npz"
        adapter.save(self.path / name)
        self._meta.set_meta(adapt={
            "version": version, "file": name, "kind": kind, "format": ADAPT_FORMAT,
            "pairs": len(ids), "trained": time.time(), "holdout_r10": [report.before, report.after],
        })
        self._drop_stale_adapters(name)
        report.version = version
        return report

    def _captioned(self, captions) -> tuple[list[int], list[str], int]:
        """(item ids, their captions, how many captions name no image here): from the TSV
        ``captions``, else from the sidecar captions of the indexed files."""
        pairs = read_captions(captions) if captions is not None else [
            (Path(p), text) for p in sorted(self._meta.file_records()) if (text := sidecar_caption(p))]
        items = self._items_for_paths([str(path) for path, _ in pairs])
        ids = [item for item in items if item is not None]
        texts = [text for (_, text), item in zip(pairs, items) if item is not None]
        return ids, texts, len(pairs) - len(ids)

    def _items_for_paths(self, paths: list[str]) -> list[int | None]:
        """The item each file shows (None: no such file here)."""
        return [self._meta.item_for_path(path) for path in paths]

    def remove_adapt(self) -> bool:
        """Forget the caption adaptation; text queries go back to the plain encoder. True if one was there."""
        with self._lock:
            previous = self.settings().adapt
            if not previous:
                return False
            self._meta.delete_meta("adapt")
            self._drop_stale_adapters(None)
        return True

    def _drop_stale_adapters(self, keep: str | None) -> None:
        """Adapter files the metadata does not name: the one replaced, and those a killed run left
        (saved but never committed, committed but the previous one not yet deleted, half-written).
        An upgrade under way keeps the old space's one, for an abort to restore."""
        keep_names = {keep} | self._upgrade_files()
        for old in [*self.path.glob("adapt-*.npz"), *self.path.glob(".adapt-*.tmp")]:
            if old.name not in keep_names:
                old.unlink(missing_ok=True)

    def _text_map(self) -> TextAdapter | None:
        config = self.settings().adapt
        if not config:
            return None
        if self._adapter is None or self._adapter[0] != config["version"]:
            self._adapter = (config["version"], TextAdapter.load(self.path / config["file"]))
        return self._adapter[1]

    def _adapted_texts(self, vectors: np.ndarray) -> np.ndarray:
        adapter = self._text_map()
        return vectors if adapter is None else adapter(vectors)
