"""The words OCR read in a Milvus collection's images, shared by every worker.

Each read image is one ``words/ID`` row of the shared state (:mod:`.state`): the engine and its
words with their boxes. Searches need a full-text index (BM25 over trigrams, as locally), so each
machine keeps a copy of those rows in SQLite (``words.sqlite`` in its local folder) and brings it
up to date with Milvus at most once a second before it reads it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from ..storage.words import Word, WordHit, WordIndex
from .state import SETTINGS_TTL_S, SharedState

PREFIX = "words/"
FETCH = 256  # rows per request when catching up


class SharedWords(WordIndex):
    """A :class:`WordIndex` whose rows live in Milvus; the SQLite file is this machine's copy.

    Its ``items`` table lists the images with a row in Milvus (what the word index joins on)."""

    def __init__(self, path: Path, state: SharedState):
        super().__init__(path)
        self.state = state
        self._synced = float("-inf")
        with self._lock:
            self._db.execute("CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY)")

    # -- writes -------------------------------------------------------------------------
    def save(self, item_id: int, words: Sequence[Word], engine: str) -> None:
        """Into Milvus, then into this machine's copy."""
        self.state.put({f"{PREFIX}{int(item_id)}": {"engine": engine, "words": [w.to_dict() for w in words]}})
        self._copy(int(item_id), words, engine)

    def _copy(self, item_id: int, words: Sequence[Word], engine: str) -> None:
        super().save(item_id, words, engine)
        with self._lock:
            self._db.execute("INSERT OR IGNORE INTO items(id) VALUES(?)", (item_id,))

    def forget(self, keep: Sequence[int]) -> int:
        """Nothing: ``keep`` lists this worker's images only; words go with their image (:meth:`drop`)."""
        return 0

    def drop(self, item_ids: Sequence[int]) -> None:
        """The words of images that left the collection."""
        if item_ids:
            self.state.delete([f"{PREFIX}{int(i)}" for i in item_ids])
            self._uncopy([int(i) for i in item_ids])

    def _uncopy(self, item_ids: list[int]) -> None:
        with self._tx() as db:
            for table, column in (("ocr_items", "item_id"), ("ocr_words", "item_id"), ("ocr_fts", "rowid"), ("items", "id")):
                db.executemany(f"DELETE FROM {table} WHERE {column} = ?", [(i,) for i in item_ids])

    # -- reads: each brings the copy up to date first -----------------------------------
    def sync(self) -> None:
        """Copy rows that Milvus holds and this machine lacks; drop those Milvus no longer holds."""
        if time.monotonic() - self._synced < SETTINGS_TTL_S:
            return
        shared = {int(key[len(PREFIX):]) for key in self.state.keys(PREFIX)}
        held = set(super().read_items())
        missing = sorted(shared - held)
        for start in range(0, len(missing), FETCH):
            rows = self.state.get([f"{PREFIX}{i}" for i in missing[start : start + FETCH]])
            for key, row in rows.items():
                self._copy(int(key[len(PREFIX):]), [Word(**w) for w in row["words"]], row["engine"])
        if held - shared:
            self._uncopy(sorted(held - shared))
        self._synced = time.monotonic()

    def read_items(self) -> list[int]:
        self.sync()
        return super().read_items()

    def items_with_text(self) -> list[int]:
        self.sync()
        return super().items_with_text()

    def words(self, item_id: int) -> list[Word] | None:
        self.sync()
        return super().words(item_id)

    def search(self, text: str, limit: int | None = None, phrase: bool = False) -> list[WordHit]:
        self.sync()
        return super().search(text, limit, phrase)
