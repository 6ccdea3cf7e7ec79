"""The words in the pictures as an evaluation channel: OCR once per image set, then fusion.

``glimpse eval captioned --ocr`` reads every database image with the collection's OCR
(:mod:`glimpse.enrich.ocr`) once, keeping the words in the evaluation cache (the pass is
slow: seconds per photo on two cores, so it saves as it goes and resumes after a kill). Text
queries are then fused with those words by the collection's own code: a precomputed-vector
collection holds the images under ids 0..n-1, its word index (SQLite FTS5, BM25) answers
the lookups, and :mod:`glimpse.query.fusion` merges the lists, as ``Collection.search`` does.

A complete ranking is needed for the metrics, so each query's ranking is the fused list
first (for ``calibrated``, every item: the cosine plus the word bonus is defined for all;
for ``rrf``, the union of both lists ``RRF_DEPTH`` deep), then every other item below it in
the configuration's own order.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from ..atomic import write_atomic
from ..enrich.ocr import ENGINE, Reader, rapidocr_reader, read_words
from ..storage.words import Word, WordIndex
from ..collection import DB_NAME
from ..ingest import content_hash
from ..query import fusion as fuse
from .configs import head_first
from .embed import ProgressFn, digest

#: Images read between two saves of the OCR cache.
SAVE_EVERY = 20


def ocr_words(paths: Sequence[Path], root: Path, reader: Reader | None = None,
              progress: ProgressFn | None = None) -> list[list[Word]]:
    """The words read in each image of ``paths``, from the cache under ``root`` where it has them."""
    stamps = []
    for p in paths:
        st = Path(p).stat()
        stamps.append(f"{Path(p).resolve()}|{st.st_size}|{st.st_mtime_ns}")
    file = Path(root) / f"ocr-{digest([ENGINE, *stamps])}.json"
    try:
        done = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        done = []
    found: list[list[Word] | None] = [[Word(**w) for w in item] for item in done][: len(paths)]
    reader = reader if reader is not None or len(found) == len(paths) else rapidocr_reader()
    for i in range(len(found), len(paths)):
        data = Path(paths[i]).read_bytes()
        words, error = read_words(reader, [(str(paths[i]), content_hash(data))])
        if words is None:
            raise ValueError(f"cannot read the words in {paths[i]}: {error}")
        found.append(words)
        if (i + 1) % SAVE_EVERY == 0 or i + 1 == len(paths):
            write_atomic(file, json.dumps([[w.to_dict() for w in item] for item in found]).encode())
        if progress:
            progress(i + 1, len(paths))
    return found


class WordChannel:
    """The words of a gallery, in a collection's word index, for fusing text queries."""

    def __init__(self, words: Sequence[Sequence[Word]], dim: int):
        import glimpse

        self._tmp = tempfile.TemporaryDirectory(prefix="glimpse-eval-words-")
        self._collection = glimpse.open(Path(self._tmp.name) / "col", encoder="precomputed", dim=dim)
        # The items only need to exist for the word index; their vectors are never searched.
        rows = np.random.default_rng(0).standard_normal((len(words), dim)).astype(np.float32)
        ids = self._collection.add_vectors(rows, [f"{i}" for i in range(len(words))])
        self._index = WordIndex(self._collection.path / DB_NAME)
        for item, found in zip(ids.tolist(), words):
            self._index.save(item, list(found), ENGINE)
        self._id = {int(item): n for n, item in enumerate(ids.tolist())}

    def close(self) -> None:
        self._index.close()
        self._collection.close()
        self._tmp.cleanup()

    def fused(self, text: str, base: np.ndarray, fusion: str, database: Callable[[np.ndarray], np.ndarray],
              query: np.ndarray) -> np.ndarray:
        """One query's scores over every item: ``base`` (the configuration's) fused with the words."""
        hits = self._index.search(fuse.lexical_text(text), limit=fuse.RRF_DEPTH)
        hits = [h._replace(item_id=self._id[h.item_id]) for h in hits]
        if fusion == "none" or not hits:
            return base
        if fusion == "calibrated":
            order = np.argsort(-base, kind="stable")
            keep = list(zip(order.tolist(), base[order].tolist()))
            ranked = fuse.calibrated(keep, hits, lambda ids: database(ids) @ query)
        else:
            order = np.argsort(-base, kind="stable")[: fuse.RRF_DEPTH]
            ranked = fuse.reciprocal_rank(list(zip(order.tolist(), base[order].tolist())), hits)
        return head_first(base, np.array([i for i, _ in ranked], dtype=np.int64),
                          np.array([s for _, s in ranked], dtype=np.float32))
