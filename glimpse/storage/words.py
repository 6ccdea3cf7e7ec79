"""Words read in the images (OCR), per item with their boxes, and a full-text index over them.

The tables live in the collection's ``metadata.sqlite`` next to the items, created by the first
OCR pass (collections that never ran one are untouched). Item ids are never reused, so words of
an item that was since dropped are simply not returned (every read joins the live items).

* ``ocr_items``: one row per item the OCR has read: the per-item done marker, committed in the
  same transaction as its words, so a killed pass resumes where it stopped.
* ``ocr_words``: the text regions, each with its four corners and the recogniser's confidence.
* ``ocr_fts``: an FTS5 table (rowid = item id) with the trigram tokenizer. OCR often drops the
  spaces between words ("GETSCIENTIFIC"), and trigrams match a query word inside such a run.
  Ranked by BM25.
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import NamedTuple

from .metadata import Closed

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS ocr_items (item_id INTEGER PRIMARY KEY, engine TEXT NOT NULL, "
    "regions INTEGER NOT NULL, at REAL NOT NULL)",
    "CREATE TABLE IF NOT EXISTS ocr_words (item_id INTEGER NOT NULL, n INTEGER NOT NULL, text TEXT NOT NULL, "
    "confidence REAL NOT NULL, box TEXT NOT NULL, PRIMARY KEY (item_id, n))",
    "CREATE VIRTUAL TABLE IF NOT EXISTS ocr_fts USING fts5(text, tokenize='trigram')",
)

#: Query words shorter than a trigram cannot be looked up; these common ones would match noise.
STOPWORDS = frozenset(
    "the and for with are was were this that these those from into onto its his her their our your "
    "has have had there here which who whom what when where while been being also some any all".split()
)
_TOKEN = re.compile(r"\w+")


class WordHit(NamedTuple):
    item_id: int
    bm25: float  # FTS5's BM25, higher is better; its scale drifts with the collection's size
    coverage: float  # share of the query's words found in the image's words, 0-1


@dataclass(frozen=True)
class Word:
    """One text region read in an image."""

    text: str
    box: list[list[float]]  # four (x, y) corners in pixels of the full image, clockwise from top-left
    confidence: float  # the recogniser's, 0-1

    def to_dict(self) -> dict:
        return asdict(self)


def query_tokens(text: str) -> list[str]:
    """The words of a query that the index can look up (lower case, 3+ characters, no stopwords)."""
    out = []
    for token in _TOKEN.findall(text.lower()):
        if len(token) >= 3 and token not in STOPWORDS and token not in out:
            out.append(token)
    return out


def squashed(text: str) -> str:
    """Lower-case letters and digits only: how a phrase is compared when OCR dropped its spaces."""
    return "".join(_TOKEN.findall(text.lower())).replace("_", "")


def coverage(tokens: Sequence[str], text: str) -> float:
    """Share of ``tokens`` found in ``text`` (spaces ignored): 1.0 when the image shows them all."""
    if not tokens:
        return 1.0
    run = squashed(text)
    return sum(t in run for t in tokens) / len(tokens)


class WordIndex:
    """The OCR words of one collection; its own connection to the collection's SQLite file."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._db = sqlite3.connect(self.path, timeout=30, check_same_thread=False, isolation_level=None)
        self._lock = threading.RLock()
        self._ready = False

    def close(self) -> None:
        with self._lock:
            self._db.close()
            self._db = Closed()

    def exists(self) -> bool:
        """Whether an OCR pass ever ran on this collection."""
        if not self._ready:
            with self._lock:
                row = self._db.execute("SELECT 1 FROM sqlite_master WHERE name = 'ocr_fts'").fetchone()
            self._ready = row is not None
        return self._ready

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                if not self._ready:
                    for statement in _SCHEMA:
                        self._db.execute(statement)
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
            self._ready = True

    def _query(self, sql: str, params: Sequence = ()) -> list[tuple]:
        if not self.exists():
            return []
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    # -- writes -------------------------------------------------------------------------
    def save(self, item_id: int, words: Sequence[Word], engine: str) -> None:
        """Store an item's words and mark it read, in one transaction."""
        item_id = int(item_id)
        with self._tx() as db:
            db.execute("DELETE FROM ocr_words WHERE item_id = ?", (item_id,))
            db.execute("DELETE FROM ocr_fts WHERE rowid = ?", (item_id,))
            db.executemany(
                "INSERT INTO ocr_words(item_id, n, text, confidence, box) VALUES(?, ?, ?, ?, ?)",
                [(item_id, n, w.text, float(w.confidence), json.dumps(w.box)) for n, w in enumerate(words)],
            )
            if words:
                db.execute("INSERT INTO ocr_fts(rowid, text) VALUES(?, ?)", (item_id, " ".join(w.text for w in words)))
            db.execute(
                "INSERT INTO ocr_items(item_id, engine, regions, at) VALUES(?, ?, ?, ?) "
                "ON CONFLICT(item_id) DO UPDATE SET engine=excluded.engine, regions=excluded.regions, at=excluded.at",
                (item_id, engine, len(words), time.time()),
            )

    def forget(self, keep: Sequence[int]) -> int:
        """Drop the words of items not in ``keep`` (the live ones); returns how many went."""
        if not self.exists():
            return 0
        gone = sorted(set(self.read_items()) - set(int(i) for i in keep))
        with self._tx() as db:
            for table, column in (("ocr_items", "item_id"), ("ocr_words", "item_id"), ("ocr_fts", "rowid")):
                db.executemany(f"DELETE FROM {table} WHERE {column} = ?", [(i,) for i in gone])
        return len(gone)

    # -- reads --------------------------------------------------------------------------
    def read_items(self) -> list[int]:
        """Ids of the items the OCR has read (with or without words)."""
        return [r[0] for r in self._query("SELECT item_id FROM ocr_items ORDER BY item_id")]

    def items_with_text(self) -> list[int]:
        return [r[0] for r in self._query(
            "SELECT o.item_id FROM ocr_items o JOIN items i ON i.id = o.item_id WHERE o.regions > 0 ORDER BY o.item_id")]

    def words(self, item_id: int) -> list[Word] | None:
        """An item's words in reading order; None when the OCR has not read it."""
        if not self._query("SELECT 1 FROM ocr_items WHERE item_id = ?", (int(item_id),)):
            return None
        rows = self._query("SELECT text, box, confidence FROM ocr_words WHERE item_id = ? ORDER BY n", (int(item_id),))
        return [Word(text, json.loads(box), confidence) for text, box, confidence in rows]

    def search(self, text: str, limit: int | None = None, phrase: bool = False) -> list[WordHit]:
        """Items whose words match ``text``, best first by BM25.

        Any query word matches; with ``phrase``, every word must, in order and adjacent (spaces
        that OCR dropped are forgiven).
        """
        tokens = query_tokens(text)
        if not tokens and not (phrase and squashed(text)):
            return []
        if tokens:
            match = (" AND " if phrase else " OR ").join('"' + t.replace('"', '""') + '"' for t in tokens)
            rows = self._query(
                "SELECT f.rowid, -bm25(ocr_fts), f.text FROM ocr_fts f JOIN items i ON i.id = f.rowid "
                "WHERE ocr_fts MATCH ? ORDER BY bm25(ocr_fts) LIMIT ?",
                (match, -1 if phrase or limit is None else int(limit)),
            )
        else:  # a phrase of short words ("no u turn"): too short for trigrams, compare every text
            rows = self._query("SELECT f.rowid, 1.0, f.text FROM ocr_fts f JOIN items i ON i.id = f.rowid ORDER BY f.rowid")
        if phrase:
            want = squashed(text)
            rows = [r for r in rows if want in squashed(r[2])][:limit]
        return [WordHit(int(i), float(s), coverage(tokens, t)) for i, s, t in rows]
