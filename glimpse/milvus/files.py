"""Every worker's files of a Milvus collection: one row per file path in ``NAME_files``, naming
its image (item id), size and date, and the worker that last wrote it.

They are what the image rows are counted against: an image row leaves Milvus only when no file
row names its image any more (:meth:`glimpse.milvus.index.MilvusIndex.remove`), whichever worker
indexed the other files of the same content; ``glimpse info`` counts them, so a removal on any
worker, or a worker that died, leaves no file counted that no longer is.

Each worker writes its file rows after its local commit and before it pushes image rows, and
deletes them after its local removal; a worker killed in between puts right what its rows and
its SQLite disagree on when it next opens the index (:meth:`SharedFiles.reconcile`).

An image row names one file of its image, and filters apply to it in Milvus; the file rows of
images that have several files are also kept in ``NAME_copies``, which a filtered search
queries (:meth:`SharedFiles.copies_passing`) so that an image matches when any of its files does.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from ..collection.ingest import _is_under
from .expr import ids_expression, stored, under
from .index import MAX_PATH, STRONG, SideCollection, _scan

#: Rows per request (the expression or the batch stays small).
ROWS_PER_REQUEST = 4096
#: How a row's ``worker`` starts once that worker released it (:meth:`SharedFiles.release`).
RELEASED = "~"


class FileRow(NamedTuple):
    path: str
    item: int
    bytes: int
    date_ns: int


class SharedFiles(SideCollection):
    """The file rows of one glimpse collection, in the Milvus collection ``NAME_files``."""

    key_length = 64

    def __init__(self, client, name: str, worker: str, kind: str = "files"):
        super().__init__(client, f"{name}_{kind}")
        self.worker = worker
        #: The rows of the files of images with several files (any worker's), the same rows as
        #: here: what a filter scans beside the image rows, whose size stays that of the copies.
        self.copies = SharedFiles(client, name, worker, "copies") if kind == "files" else None

    def _create(self) -> None:
        """``NAME_copies`` first: where ``NAME_files`` exists without it, the collection was made
        before it (:meth:`ensure_copies`)."""
        if self.copies is not None and not self.copies._exists():
            self.copies._create()
        super()._create()

    def _fields(self, schema) -> None:
        from pymilvus import DataType

        schema.add_field("path", DataType.VARCHAR, max_length=MAX_PATH)
        for field in ("item", "bytes", "date_ns"):
            schema.add_field(field, DataType.INT64)
        schema.add_field("worker", DataType.VARCHAR, max_length=64)

    def put(self, rows: list[FileRow]) -> None:
        """This worker's files (a path another worker also indexed stays one row)."""
        if not rows:
            return
        if not self._exists():
            self._create()
        self._upsert(rows, self.worker)
        if self.copies is not None and self.copies._exists():
            self._copy(rows)

    def _upsert(self, rows: list[FileRow], worker: str) -> None:
        columns = self.client.columns(self.name)  # by columns: 1.4x faster than by rows here
        for start in range(0, len(rows), ROWS_PER_REQUEST):
            batch = rows[start : start + ROWS_PER_REQUEST]
            columns.upsert([[_key(row.path) for row in batch], [stored(row.path) for row in batch],
                            *([getattr(row, field) for row in batch] for field in ("item", "bytes", "date_ns")),
                            [worker] * len(batch), [[0.0, 0.0]] * len(batch)])

    def release(self, paths: list[str]) -> None:
        """Files this worker leaves to others while they stay on disk (another shard's now): their
        rows stay, named released by this worker, and no longer count as its own. Another worker
        that drops such a path deletes its row (:meth:`delete`), and one whose scan would find it
        but no longer does (the file went) deletes it too (:meth:`released_under`)."""
        if paths and self._exists():
            ours = f"({self._named(self.worker)} or worker like {json.dumps(RELEASED + '%')})"
            self._upsert([row for start in range(0, len(paths), ROWS_PER_REQUEST)
                          for row in self._rows(f"{self._keys(paths[start : start + ROWS_PER_REQUEST])} and {ours}")],
                         RELEASED + self.worker)

    def released_under(self, paths: list[str]) -> list[FileRow]:
        """The rows at or under ``paths`` that their workers released."""
        if not paths or not self._exists():
            return []
        held = [stored(path) for path in paths]
        return [row for row in self._rows(f"({under(paths)}) and worker like {json.dumps(RELEASED + '%')}")
                if _is_under(row.path, held)]

    def _copy(self, written: list[FileRow]) -> None:
        """The rows of the images among ``written`` that several files show go to ``NAME_copies``,
        and the other paths leave it (a file changed may have shown another image). Checked after
        this worker's rows are written: of two workers writing files of one image at once, the
        later check sees both."""
        items = np.unique([row.item for row in written])
        several = _several([row for start in range(0, len(items), ROWS_PER_REQUEST)
                            for row in self._rows(ids_expression(items[start : start + ROWS_PER_REQUEST], "item"))])
        self.copies.put(several)
        kept = {row.path for row in several}  # a delete costs more than a query (Milvus Lite: 20x the ingest with two workers)
        self.copies.delete([row.path for row in self.copies.at([row.path for row in written]) if row.path not in kept])

    def ensure_copies(self) -> None:
        """``NAME_copies`` for a ``NAME_files`` made before it, from every file row: made first,
        so that a worker writing files meanwhile adds its own copies, and the rows read after."""
        if self.copies is not None and self._exists() and not self.copies._exists():
            self.copies._create()
            self.copies.put(_several(self._rows("item >= 0")))

    def delete(self, paths: list[str], mine: bool = False) -> None:
        """The rows of ``paths``, whichever worker wrote them (``mine``: only those this worker
        wrote last, or another released; another worker that also indexed a path holds it still)."""
        if not paths or not self._exists():
            return
        theirs = json.dumps(RELEASED + "%")
        mine_only = f" and ({self._named(self.worker)} or (worker like {theirs} and worker != {json.dumps(RELEASED + self.worker)}))"
        for start in range(0, len(paths), ROWS_PER_REQUEST):
            self.client.delete(self.name, filter=self._keys(paths[start : start + ROWS_PER_REQUEST]) + (mine_only if mine else ""))
        if self.copies is not None:  # what a row left here still shows stays a copy
            held = {row.path for row in self.at(paths)} if mine else set()
            self.copies.delete([row.path for row in self.copies.at(paths) if row.path not in held])

    def copies_passing(self, expression: str, consistency: str = STRONG) -> list[FileRow]:
        """The rows of files of images with several files that ``expression`` (over a file's
        path, size and date) lets through (``consistency``: the search's, whose filter this is)."""
        if self.copies is None or not self.copies._exists():
            return []
        return self.copies._rows(expression or "item >= 0", consistency)

    def under(self, paths: list[str]) -> list[FileRow]:
        """Every worker's files at or under ``paths``."""
        if not paths or not self._exists():
            return []
        held = [stored(path) for path in paths]
        return [row for row in self._rows(under(paths)) if _is_under(row.path, held)]

    def holders(self, items: np.ndarray) -> dict[int, FileRow]:
        """Of ``items``, those some file still shows, each with its first file (by path)."""
        items = np.asarray(items, dtype=np.int64)
        first: dict[int, FileRow] = {}
        if not len(items) or not self._exists():
            return first
        for start in range(0, len(items), ROWS_PER_REQUEST):
            expression = ids_expression(items[start : start + ROWS_PER_REQUEST], "item")
            for row in self._rows(expression):
                if row.item not in first or row.path < first[row.item].path:
                    first[row.item] = row
        return first

    def count(self) -> int:
        if not self._exists():
            return 0
        rows = self.client.query(self.name, filter="", output_fields=["count(*)"], consistency_level=STRONG)
        return int(rows[0]["count(*)"])

    def reconcile(self, local: Callable[[], list[FileRow]]) -> list[int]:
        """After a kill between this worker's local commit and its file rows: the files it holds
        (``local()``) that no row names are written, and its rows of files it no longer holds
        are deleted. Returns the items of the rows deleted (their image rows may have to go).

        Its rows are read before its files: another process of this worker writes its rows
        after its local commit, so every row read is of a file committed before ``local()``."""
        mine = {row.path: row for row in self._rows(self._named(self.worker))} if self._exists() else {}
        held = {stored(row.path): row for row in local()}
        self.put(self._absent([row for path, row in held.items() if mine.get(path) != row._replace(path=path)]))
        gone = [row for path, row in mine.items() if path not in held]
        self.delete([row.path for row in gone])
        return sorted({row.item for row in gone})

    def _absent(self, rows: list[FileRow]) -> list[FileRow]:
        """Those of ``rows`` whose path no row has with the same content (another worker may
        have written it: it stays theirs)."""
        found = {row.path: row.item for row in self.at([row.path for row in rows])}
        return [row for row in rows if found.get(stored(row.path)) != row.item]

    def at(self, paths: list[str]) -> list[FileRow]:
        """The rows of ``paths``, whichever worker wrote them."""
        if not self._exists():  # made before file rows were (or none written yet)
            return []
        return [row for start in range(0, len(paths), ROWS_PER_REQUEST)
                for row in self._rows(self._keys(paths[start : start + ROWS_PER_REQUEST]))]

    @staticmethod
    def _keys(paths: list[str]) -> str:
        return f"key in {json.dumps([_key(path) for path in paths])}"

    @staticmethod
    def _named(worker: str) -> str:
        return f"worker == {json.dumps(worker)}"

    def _rows(self, expression: str, consistency: str = STRONG) -> list[FileRow]:
        return [FileRow(row["path"], row["item"], row["bytes"], row["date_ns"])
                for row in _scan(self.client, self.name, expression, ["path", "item", "bytes", "date_ns"], consistency)]


def _several(rows: list[FileRow]) -> list[FileRow]:
    """Those of ``rows`` whose image has other rows among them."""
    counts = Counter(row.item for row in rows)
    return [row for row in rows if counts[row.item] > 1]


def _key(path: str) -> str:
    """A row's key: of the path as rows hold it (a row's own path gives its key back)."""
    return hashlib.blake2b(stored(path).encode(), digest_size=16).hexdigest()
