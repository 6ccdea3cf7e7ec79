"""SQLite (WAL) metadata: items, the files that show them, ingest errors, collection facts."""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from ..atomic import write_atomic
from .arrays import read_arrays
from .records import ErrorRecord, FileError, FileLink, FileRecord, ItemConditions, ItemInfo, NewItem

#: 2: paths are stored as their bytes (``os.fsencode``), so names that are not UTF-8 fit.
SCHEMA_VERSION = 2
#: The columns behind ItemConditions' fields: a capture time, where known, stands for the file's mtime.
_COLUMNS = {"date_ns": "COALESCE(i.taken_ns, f.mtime_ns)", "width": "i.width", "height": "i.height", "bytes": "f.size"}
#: Items per part of a snapshot: each part is one string SQLite joins (about 16 bytes an item, far under its
#: 1 GB limit on a string).
SNAPSHOT_ITEMS = 1 << 20
#: Commits whose changes the log keeps: a process further behind reads a whole snapshot instead.
CHANGES_KEPT = 1024
#: From this many items on, a snapshot read from SQLite is kept beside the database in ``KEPT_FILE`` (derived
#: state: checked by its CRC when read), and a later snapshot reads it and the commits' log since, while the
#: log covers it and holds at most ``KEPT_CHANGES`` changes or a 32nd of its items (at 10M items SQLite took
#: 3.3 s, the kept file and the log 0.07 s; the log's changes cost about 1 us each).
KEPT_FROM = 1 << 18
KEPT_FILE = "items-{generation}.npz"
KEPT_CHANGES = 65536

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
-- One item per distinct content. Its vectors are row ``row`` of the vector file (NULL: row = id;
-- ids stay stable when a compaction moves rows).
CREATE TABLE IF NOT EXISTS items (
    id INTEGER PRIMARY KEY,
    hash TEXT NOT NULL UNIQUE,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    added REAL NOT NULL,
    taken_ns INTEGER  -- EXIF capture time, NULL when the image has none
);
-- Identical files share one item.
CREATE TABLE IF NOT EXISTS files (
    path BLOB PRIMARY KEY,  -- os.fsencode(path): lossless for any name the OS gives
    item_id INTEGER NOT NULL REFERENCES items(id),
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    added REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS files_item ON files(item_id);
-- The items each commit in meta 'changes' = [from, to] added (row: its vector row) or removed (row
-- NULL): a process that saw generation g in [from, to] follows to 'to' from these, not every item.
CREATE TABLE IF NOT EXISTS changes (
    generation INTEGER NOT NULL,
    id INTEGER NOT NULL,
    row INTEGER,
    PRIMARY KEY (generation, id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS errors (
    path BLOB PRIMARY KEY,
    reason TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    at REAL NOT NULL
);
"""


class Closed:
    """A closed store's database: any use raises one sentence (sqlite3's own is a ProgrammingError,
    'Cannot operate on a closed database'); closing it again does nothing."""

    def close(self) -> None:
        pass

    def __getattr__(self, name: str):
        raise ValueError("the collection is closed; open it again")


class Metadata:
    """All SQL lives here. Every write method is one transaction."""

    def __init__(self, path: Path):
        self.path = Path(path)
        # Readers and one writer share the file; WAL lets readers search during a write.
        self._db = sqlite3.connect(self.path, timeout=30, check_same_thread=False, isolation_level=None)
        self._lock = threading.RLock()
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        with self._tx() as db:
            # Statement by statement: executescript() would commit our transaction early.
            for statement in _SCHEMA.split(";"):
                db.execute(statement)
            # Collections made before capture times were kept gain the column (NULL: unknown).
            if "taken_ns" not in {row[1] for row in db.execute("PRAGMA table_info(items)")}:
                db.execute("ALTER TABLE items ADD COLUMN taken_ns INTEGER")
            if "row" not in {row[1] for row in db.execute("PRAGMA table_info(items)")}:
                db.execute("ALTER TABLE items ADD COLUMN row INTEGER")
            # Collections made when paths were text hold them as UTF-8 text: the same bytes
            # as a BLOB, and BLOBs are what lookups now bind.
            if db.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
                for table in ("files", "errors"):
                    db.execute(f"UPDATE {table} SET path = CAST(path AS BLOB) WHERE typeof(path) = 'text'")
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def close(self) -> None:
        with self._lock:
            self._db.close()
            self._db = Closed()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _query(self, sql: str, params: Sequence = ()) -> list[tuple]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    # -- collection facts -------------------------------------------------------------
    def get_meta(self) -> dict:
        return {k: json.loads(v) for k, v in self._query("SELECT key, value FROM meta")}

    def set_meta(self, **values) -> None:
        with self._tx() as db:
            _set_meta(db, values)

    def delete_meta(self, key: str) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM meta WHERE key = ?", (key,))

    def generation(self) -> int:
        rows = self._query("SELECT value FROM meta WHERE key='generation'")
        return json.loads(rows[0][0]) if rows else 0

    def snapshot(self) -> tuple[dict, np.ndarray]:
        """The collection facts and every item's (id, vector row), ascending by id, as of one commit:
        an (items, 2) int64 array. From the snapshot kept in ``KEPT_FILE`` and the log since, where they
        serve; else read from SQLite (and kept, from ``KEPT_FROM`` items on)."""
        kept = self._kept_snapshot()
        if kept is not None:
            return kept
        meta, table = self._read_snapshot()
        if len(table) >= KEPT_FROM:
            self._keep_snapshot(meta, table)
        return meta, table

    def _read_snapshot(self) -> tuple[dict, np.ndarray]:
        """:meth:`snapshot` from SQLite. It joins each part's numbers in strings, which numpy parses: a
        Python tuple per item took 7-8 s at 10M items (fetching, then converting), this 2.5-3."""
        parts = []
        with self._lock:
            self._db.execute("BEGIN")  # one read transaction: one consistent snapshot of the WAL
            try:
                meta = {k: json.loads(v) for k, v in self._db.execute("SELECT key, value FROM meta")}
                after = -(1 << 63)
                while True:  # two joined columns: joining each pair first took 1.5x as long
                    ids, rows, count, last = self._db.execute(
                        "SELECT group_concat(id), group_concat(COALESCE(row, id)), COUNT(*), MAX(id) FROM "
                        "(SELECT id, row FROM items WHERE id > ? ORDER BY id LIMIT ?)", (after, SNAPSHOT_ITEMS)).fetchone()
                    if count:
                        parts.append(np.stack([np.fromstring(text, dtype=np.int64, sep=",") for text in (ids, rows)], 1))
                    if count < SNAPSHOT_ITEMS:
                        break
                    after = last
            finally:
                self._db.execute("COMMIT")
        table = np.concatenate(parts) if parts else np.zeros((0, 2), np.int64)
        if len(table) > 1 and not (np.diff(table[:, 0]) > 0).all():  # SQLite keeps the subquery's order; not promised
            table = table[np.argsort(table[:, 0], kind="stable")]
        return meta, table

    def keep_items(self, table: np.ndarray, generation: int) -> None:
        """After a write, by the writer (holding the collection's lock): keep ``table``, every item as of
        ``generation``, where the next :meth:`snapshot` would read SQLite, which the first search after a
        large import paid (7-18 s at 10M items, against 0.2 s to keep here)."""
        if len(table) < KEPT_FROM:
            return
        kept = self._kept_files()
        with self._lock:
            self._db.execute("BEGIN")
            try:
                meta = {k: json.loads(v) for k, v in self._db.execute("SELECT key, value FROM meta")}
                serves = bool(kept) and self._log_covers(meta, max(kept), _kept_changes(len(table)))
            finally:
                self._db.execute("COMMIT")
        if not serves and meta.get("generation", 0) == generation:
            self._keep_snapshot(meta, table)

    def _kept_files(self) -> dict[int, Path]:
        """The kept snapshots, by generation."""
        return {int(name[6:-4]): path for path in self.path.parent.glob(KEPT_FILE.format(generation="*"))
                if (name := path.name)[6:-4].isdigit()}

    def _kept_snapshot(self) -> tuple[dict, np.ndarray] | None:
        """The newest kept snapshot brought up to date by the log, or None where none serves: none kept, one
        damaged or deleted meanwhile, of another database (its creation time), of another vector file, or
        too far behind (the log does not cover it, or holds too many changes: ``KEPT_CHANGES``)."""
        found = self._kept_files()
        if not found:
            return None
        try:
            arrays = read_arrays(found[max(found)], ("items", "facts"), "")
            facts, table = json.loads(arrays["facts"].tobytes()), arrays["items"]
        except (OSError, ValueError):
            return None
        if table.dtype != np.int64 or table.ndim != 2 or table.shape[1] != 2 or not isinstance(facts, dict):
            return None
        meta, changes = self.changes_since(int(facts.get("generation", -1)), most=_kept_changes(len(table)))
        if changes is None or [meta.get(key) for key in ("created", "vectors")] != [facts.get("created"), facts.get("vectors")]:
            return None
        return meta, apply_changes(table, changes)[0]

    def _keep_snapshot(self, meta: dict, table: np.ndarray) -> None:
        """Keep ``table`` (as of ``meta``) for later snapshots; the other kept ones go. A folder this process
        may not write keeps none: snapshots read SQLite as before."""
        generation = int(meta.get("generation", 0))
        facts = {"created": meta.get("created"), "vectors": meta.get("vectors"), "generation": generation}
        target = self.path.parent / KEPT_FILE.format(generation=generation)
        try:
            write_atomic(target, lambda f: np.savez(f, items=table, facts=np.frombuffer(json.dumps(facts).encode(), np.uint8)))
        except OSError:
            return
        # The others: older, or not of this database's commits (a newer one would be tried first at each
        # snapshot); and those half-written by killed processes (".items-7.npz.x1y2.tmp"). One a process
        # writes meanwhile fails its rename or is kept again by the next snapshot.
        for old in [*self.path.parent.glob(KEPT_FILE.format(generation="*")), *self.path.parent.glob(".items-*.tmp")]:
            if old != target:
                old.unlink(missing_ok=True)

    def changes_since(self, generation: int, most: int | None = None) -> tuple[dict, np.ndarray | None]:
        """The collection facts and, as of the same commit, the items the commits after ``generation``
        added and removed: (id, vector row; -1: removed) in commit order. None where the log does not
        cover those commits (a compaction moved rows, an older glimpse wrote, or more than
        ``CHANGES_KEPT`` commits passed), or holds more than ``most`` changes: read a :meth:`snapshot`."""
        with self._lock:
            self._db.execute("BEGIN")
            try:
                meta = {k: json.loads(v) for k, v in self._db.execute("SELECT key, value FROM meta")}
                if not self._log_covers(meta, generation, most):
                    return meta, None
                changes = self._db.execute("SELECT id, COALESCE(row, -1) FROM changes WHERE generation > ? "
                                           "ORDER BY generation, id", (generation,)).fetchall()
            finally:
                self._db.execute("COMMIT")
        return meta, np.array(changes, np.int64).reshape(-1, 2)

    def _log_covers(self, meta: dict, generation: int, most: int | None) -> bool:
        """Whether the log (as of ``meta``, in the open read transaction) holds every change since
        ``generation``, and at most ``most`` of them."""
        start, end = meta.get("changes", (None, None))
        if start is None or not start <= generation <= end or end != meta.get("generation", 0):
            return False
        return most is None or self._db.execute("SELECT COUNT(*) FROM changes WHERE generation > ?",
                                                (generation,)).fetchone()[0] <= most

    def move_rows(self, moves: Sequence[tuple[int, int]], vectors: str, rows: int, next_id: int) -> int:
        """Point items at their rows in a new vector file, in one transaction; returns the generation."""
        with self._tx() as db:
            db.executemany("UPDATE items SET row = ? WHERE id = ?", [(row, item) for item, row in moves])
            db.execute(
                "INSERT INTO meta(key, value) VALUES('vectors', ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                (json.dumps(vectors),),
            )
            return _bump(db, rows=rows, next_id=next_id)

    # -- reads ------------------------------------------------------------------------
    def file_records(self, prefixes: Iterable[str] | None = None) -> dict[str, FileRecord]:
        """Every file's record, or those at or under ``prefixes``: each prefix is two lookups in the paths'
        index (its path, and the range of paths under it), not a test of every path (removing 1,000 keys
        of 1M took minutes)."""
        sql = "SELECT f.path, f.item_id, f.size, f.mtime_ns, i.hash FROM files f JOIN items i ON i.id = f.item_id"
        if prefixes is None:
            rows = self._query(sql)
        else:
            with self._lock:
                self._db.execute("BEGIN")  # one read transaction: the records of one commit
                try:
                    rows = [row for prefix in dict.fromkeys(prefixes) for row in self._db.execute(
                        sql + " WHERE f.path = ? OR (f.path >= ? AND f.path < ?)", _at_or_under(prefix))]
                finally:
                    self._db.execute("COMMIT")
        return {(path := _path(r[0])): FileRecord(path, *r[1:]) for r in rows}

    def error_records(self, limit: int | None = None) -> list[ErrorRecord]:
        sql = "SELECT path, reason, size, mtime_ns, at FROM errors ORDER BY at DESC, path"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return [ErrorRecord(_path(r[0]), *r[1:]) for r in self._query(sql)]

    def hash_to_item(self) -> dict[str, int]:
        return dict(self._query("SELECT hash, id FROM items"))

    def item_ids(self) -> list[int]:
        return [r[0] for r in self._query("SELECT id FROM items ORDER BY id")]

    def paths_for(self, item_ids: Sequence[int]) -> dict[int, str]:
        """The first path (in sort order) of each item."""
        if not item_ids:
            return {}
        marks = ",".join("?" * len(item_ids))
        rows = self._query(
            f"SELECT item_id, MIN(path) FROM files WHERE item_id IN ({marks}) GROUP BY item_id",
            [int(i) for i in item_ids],
        )
        return {item: _path(path) for item, path in rows}

    def item_info(self, item_id: int) -> ItemInfo | None:
        rows = self._query(
            "SELECT f.path, f.size, f.mtime_ns, i.width, i.height, i.taken_ns FROM files f JOIN items i ON i.id = f.item_id "
            "WHERE f.item_id = ? ORDER BY f.path",
            (int(item_id),),
        )
        if not rows:
            return None
        first = rows[0]
        taken = None if first[5] is None else first[5] / 1e9
        return ItemInfo(int(item_id), [_path(r[0]) for r in rows], first[3], first[4], first[1], first[2] / 1e9, taken)

    def item_files(self, item_id: int) -> list[FileRecord]:
        """The files that show an item, by path, with the size and mtime they were indexed at."""
        rows = self._query(
            "SELECT f.path, f.item_id, f.size, f.mtime_ns, i.hash FROM files f JOIN items i ON i.id = f.item_id "
            "WHERE f.item_id = ? ORDER BY f.path",
            (int(item_id),),
        )
        return [FileRecord(os.fsdecode(r[0]), *r[1:]) for r in rows]  # str, stored as text or bytes

    def item_for_hash(self, content_hash: str) -> int | None:
        rows = self._query("SELECT id FROM items WHERE hash = ?", (content_hash,))
        return rows[0][0] if rows else None

    def matching_items(self, where: ItemConditions) -> list[int]:
        """Ids of the items that pass ``where``, ascending."""
        sql, params = [], []
        if where.path_glob is not None:
            # GLOB compares text, never BLOBs; the pattern's bytes as the paths' (a name that
            # is not UTF-8 has lone surrogates in Python, its own bytes on disk and here).
            sql.append("CAST(f.path AS TEXT) GLOB CAST(? AS TEXT)")
            params.append(_key(where.path_glob))
        if where.path_prefix is not None:
            # Compare by range, not LIKE: paths may hold % and _ (and LIKE ignores case).
            prefix = _key(where.path_prefix.rstrip("/"))
            sql.append("(f.path = ? OR (f.path >= ? AND f.path < ?))")
            params += [prefix, prefix + b"/", prefix + b"0"]  # "0" sorts right after "/"
        for field, op, value in where.bounds():
            sql.append(f"{_COLUMNS[field]} {op} ?")
            params.append(value)
        if where.shape() is not None:
            sql.append(f"i.width {where.shape()} i.height")  # SQLite takes == for =
        rows = self._query(
            "SELECT DISTINCT i.id FROM items i JOIN files f ON f.item_id = i.id"
            + (" WHERE " + " AND ".join(sql) if sql else "") + " ORDER BY i.id",
            params,
        )
        return [r[0] for r in rows]

    def item_for_path(self, path: str) -> int | None:
        rows = self._query("SELECT item_id FROM files WHERE path = ?", (_key(path),))
        return rows[0][0] if rows else None

    def counts(self) -> dict[str, int]:
        (files,), = self._query("SELECT COUNT(*) FROM files")
        (items,), = self._query("SELECT COUNT(*) FROM items")
        (errors,), = self._query("SELECT COUNT(*) FROM errors")
        return {"files": files, "images": items, "errors": errors}

    # -- writes -----------------------------------------------------------------------
    def commit_batch(
        self,
        items: Sequence[NewItem],
        links: Sequence[FileLink],
        errors: Sequence[FileError],
        rows: int,
    ) -> tuple[int, list[int]]:
        """Make a batch visible in one transaction.

        Returns the new generation and the ids of items that no file shows any more.

        ``rows`` is the vector-file row count after this batch; the vectors of ``items``
        must already be durable in the vector file.
        """
        now = time.time()
        with self._tx() as db:
            # Items that these paths showed before; they may be left without a file.
            previous = _items_of(db, [link.path for link in links] + [e.path for e in errors])
            db.executemany(
                "INSERT INTO items(id, hash, width, height, added, taken_ns, row) VALUES(?, ?, ?, ?, ?, ?, ?)",
                [(it.id, it.hash, it.width, it.height, now, None if it.taken is None else int(it.taken * 1e9), it.row)
                 for it in items],
            )
            _link_files(db, links, now)
            db.executemany(
                "INSERT INTO errors(path, reason, size, mtime_ns, at) VALUES(?, ?, ?, ?, ?) "
                "ON CONFLICT(path) DO UPDATE SET reason=excluded.reason, size=excluded.size, "
                "mtime_ns=excluded.mtime_ns, at=excluded.at",
                [(_key(e.path), e.reason, e.size, e.mtime_ns, now) for e in errors],
            )
            # A path that failed before and now has an error-free fate is no longer an error.
            db.executemany("DELETE FROM errors WHERE path = ?", [(_key(link.path),) for link in links])
            db.executemany("DELETE FROM files WHERE path = ?", [(_key(e.path),) for e in errors])
            dropped = _drop_orphans(db, previous)
            changes = [(it.id, it.id if it.row is None else it.row) for it in items] + [(i, None) for i in dropped]
            return _bump(db, rows=rows, next_id=max((it.id + 1 for it in items), default=None), changes=changes), dropped

    def remove_paths(self, paths: Iterable[str], **meta) -> tuple[int, list[int]]:
        """Forget files (and errors) at ``paths``; items left with no file go too. ``meta``
        values are set in the same transaction.

        Returns the new generation and the ids of the items dropped."""
        paths = list(paths)
        with self._tx() as db:
            _set_meta(db, meta)
            items = _items_of(db, paths)
            db.executemany("DELETE FROM files WHERE path = ?", [(_key(p),) for p in paths])
            db.executemany("DELETE FROM errors WHERE path = ?", [(_key(p),) for p in paths])
            dropped = _drop_orphans(db, items)
            return _bump(db, changes=[(i, None) for i in dropped]), dropped


def apply_changes(table: np.ndarray, changes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The (id, row) ``table`` (ascending ids) after logged ``changes`` ((id, row; -1: removed), in
    commit order, as :meth:`Metadata.changes_since` gives them), and the ids they added and removed."""
    removed = changes[changes[:, 1] < 0, 0]
    new = changes[(changes[:, 1] >= 0) & ~np.isin(changes[:, 0], removed)]
    at = np.searchsorted(table[:, 0], removed).clip(max=max(0, len(table) - 1))
    held = (table[at, 0] == removed) if len(table) else np.zeros(len(removed), bool)
    if held.any():
        table = np.delete(table, at[held], axis=0)
    table = np.concatenate([table, new]) if len(new) else table
    joined = table[max(0, len(table) - len(new) - 1):, 0]
    if not (np.diff(joined) > 0).all():  # ids not above those held (glimpse.milvus' come from content)
        table = table[np.argsort(table[:, 0], kind="stable")]
    return table, new[:, 0], removed


def _key(path: str) -> bytes:
    """How a path is stored: its bytes on disk (a name that is not UTF-8 included)."""
    return os.fsencode(path)


def _path(key: bytes) -> str:
    return os.fsdecode(key)


def _at_or_under(prefix: str) -> tuple[bytes, bytes, bytes]:
    """The stored path ``prefix``, and the bounds of the stored paths under it: those that start with
    it and a slash sort from ``prefix/`` up to ``prefix0`` ('0' follows '/' in bytes)."""
    stem = _key(prefix).rstrip(b"/")
    return _key(prefix), stem + b"/", stem + b"0"


def _items_of(db: sqlite3.Connection, paths: Sequence[str]) -> set[int]:
    out: set[int] = set()
    for p in paths:
        row = db.execute("SELECT item_id FROM files WHERE path = ?", (_key(p),)).fetchone()
        if row:
            out.add(row[0])
    return out


def _link_files(db: sqlite3.Connection, links: Sequence[FileLink], now: float) -> None:
    """Point each path at the item with its content."""
    db.executemany(
        "INSERT INTO files(path, item_id, size, mtime_ns, added) "
        "SELECT ?, id, ?, ?, ? FROM items WHERE hash = ? "
        "ON CONFLICT(path) DO UPDATE SET item_id=excluded.item_id, size=excluded.size, "
        "mtime_ns=excluded.mtime_ns",
        [(_key(link.path), link.size, link.mtime_ns, now, link.hash) for link in links],
    )


def _drop_orphans(db: sqlite3.Connection, candidates: Iterable[int]) -> list[int]:
    dropped = []
    for item in sorted(candidates):
        cur = db.execute(
            "DELETE FROM items WHERE id = ? AND NOT EXISTS (SELECT 1 FROM files WHERE item_id = ?)",
            (item, item),
        )
        if cur.rowcount:
            dropped.append(item)
    return dropped


def _bump(db: sqlite3.Connection, rows: int | None = None, next_id: int | None = None,
          changes: Sequence[tuple[int, int | None]] | None = None) -> int:
    """Commit a new generation. ``changes``: the items it added (id, row) and removed (id, None), logged
    for :meth:`Metadata.changes_since`; None (a compaction's moved rows): the log restarts here."""
    meta = {k: json.loads(v) for k, v in db.execute("SELECT key, value FROM meta")}
    generation = int(meta.get("generation", 0)) + 1
    updates = {"generation": generation, "updated": time.time()}
    start, end = meta.get("changes", (None, None))
    if changes is None:
        start = generation
    elif end != generation - 1:  # no log yet, or a writer that keeps none came in between: it starts at the last commit
        start = generation - 1
    start = max(start, generation - CHANGES_KEPT)
    db.execute("DELETE FROM changes WHERE generation <= ?", (start,))
    db.executemany("INSERT OR REPLACE INTO changes(generation, id, row) VALUES(?, ?, ?)",
                   [(generation, item, row) for item, row in changes or ()])
    updates["changes"] = [start, generation]
    if rows is not None:
        updates["rows"] = rows
    if next_id is not None:  # ids are never reused, even after a compaction
        updates["next_id"] = max(next_id, int(meta.get("next_id", 0)))
    _set_meta(db, updates)
    return generation


def _set_meta(db: sqlite3.Connection, values: dict) -> None:
    db.executemany(
        "INSERT INTO meta(key, value) VALUES(?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
        [(k, json.dumps(v)) for k, v in values.items()],
    )


def _kept_changes(items: int) -> int:
    """The most changes of the log a kept snapshot of ``items`` items is brought up to date with."""
    return max(KEPT_CHANGES, items // 32)
