"""The live index: the loaded search backend kept up to date with the committed state (this
process's commits, and other processes' through the metadata generation), and compaction of
the vector file."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from ..backends import SearchBackend, open_backend
from ..backends.exact import whole_rows
from ..settings import CodeSettings
from ..storage.metadata import apply_changes
from ..storage.vectors import DamagedVectorError, sums_path
from .layout import VECTORS_FILE, VECTORS_NAME
from .reports import ProgressFn


#: A write compacts the vector file once removed images hold more than this share of its rows
#: and at least ``COMPACT_MIN_ROWS`` rows (below that the space is not worth a rewrite).
COMPACT_SHARE = 0.5
COMPACT_MIN_ROWS = 1000
#: Changes since the loaded index a refresh takes from the commits' log while they stay under
#: this many or an eighth of the ids (a diff of every id took 2 s at 10M items); past that, the diff.
PENDING_MIN = 65536
#: Ids tested at once from which ``HeldIds.holds`` marks the ids held in a bitmap (where they are dense).
BITMAP_FROM = 65536

log = logging.getLogger(__name__)


class HeldIds:
    """A set of item ids as one sorted array: at 10M items a Python set took 1-2 s to build, and as
    long to compare with the live ids at each refresh (a Milvus collection's ids are spread over
    63 bits, so no bitmap). Commits add ids above those held: they append, into room kept ahead."""

    def __init__(self, ids: Iterable[int] | np.ndarray = ()):
        self._buffer = np.array(self._ascending(ids))  # its own copy: appends write into it
        self._count = len(self._buffer)

    @staticmethod
    def _array(ids: Iterable[int] | np.ndarray) -> np.ndarray:
        return np.asarray(ids if isinstance(ids, np.ndarray) else list(ids), dtype=np.int64).reshape(-1)

    @classmethod
    def _ascending(cls, ids: Iterable[int] | np.ndarray) -> np.ndarray:
        """``ids`` sorted, each once (live ids come so: no sort). Not ``np.unique``: its hash table took
        5 s for 10M ids here, a sort 0.3 s (a bitmap of a loaded index's 10M ids, list by list, as long)."""
        ids = cls._array(ids)
        if (np.diff(ids) > 0).all():
            return ids
        ids = np.sort(ids)
        return ids[np.concatenate([[True], ids[1:] != ids[:-1]])]

    def update(self, ids: Iterable[int] | np.ndarray) -> None:
        ids = self._ascending(ids)
        if not len(ids):
            return
        if self._count and ids[0] <= self._buffer[self._count - 1]:  # among those held: merged (a sort, as above)
            self._buffer = self._ascending(np.concatenate([self.ids(), ids]))
            self._count = len(self._buffer)
            return
        if self._count + len(ids) > len(self._buffer):  # room for as many again: appends stay linear
            grown = np.empty(2 * (self._count + len(ids)), np.int64)
            grown[: self._count] = self.ids()
            self._buffer = grown
        self._buffer[self._count : self._count + len(ids)] = ids
        self._count += len(ids)

    def difference_update(self, ids: Iterable[int] | np.ndarray) -> None:
        ids = self._array(ids)
        self._buffer = np.delete(self.ids(), np.searchsorted(self.ids(), ids[self.holds(ids)]))
        self._count = len(self._buffer)

    def holds(self, ids: np.ndarray) -> np.ndarray:
        """Which of ``ids`` are held (bool per id). Many ids against ids held densely: one bitmap (at 10M
        ids a binary search of each took 0.2-0.4 s ascending, 6-14 s in any order; the bitmap 0.08-0.2 s)."""
        ids, held = self._array(ids), self.ids()
        if not len(held):
            return np.zeros(len(ids), bool)
        low, span = int(held[0]), int(held[-1] - held[0]) + 1
        if len(ids) >= BITMAP_FROM and span <= 8 * len(held):  # a Milvus collection's ids (63 bits) never are
            marks = np.zeros(span, bool)
            marks[held - low] = True
            inside = (ids >= low) & (ids < low + span)
            found = np.zeros(len(ids), bool)
            found[inside] = marks[ids[inside] - low]
            return found
        at = np.searchsorted(held, ids).clip(max=len(held) - 1)
        return held[at] == ids

    def __contains__(self, item_id: int) -> bool:
        return bool(self.holds(np.array([item_id]))[0])

    def ids(self) -> np.ndarray:
        """The ids held, ascending (a view: read only)."""
        return self._buffer[: self._count]


class _Pending:
    """The items added and removed since generation ``since``, by the commits' log (see
    Metadata.changes_since), not yet in the loaded index."""

    def __init__(self, since: int, added: np.ndarray, removed: np.ndarray):
        self.since, self.added, self.removed = since, added, removed

    def then(self, added: np.ndarray, removed: np.ndarray) -> _Pending:
        """These changes followed by later ones (ids are never reused: an id added, then removed, is gone)."""
        return _Pending(self.since, np.concatenate([self.added[~np.isin(self.added, removed)], added]),
                        np.concatenate([self.removed, removed[~np.isin(removed, self.added)]]))


class LiveIndex:
    """The in-memory backend and the vector file behind it, as of the last commit."""

    def _apply(self, generation: int, ids: list[int], vectors: np.ndarray | None, dropped: list[int]) -> None:
        """Mirror a commit of this process in the in-memory index, if one is loaded."""
        if self._index is None:
            return
        if self._index_generation != generation - 1:
            self._refresh()  # another writer came in between: resync from disk
            return
        if ids:
            self._add_to_index(np.asarray(ids), vectors)
            self._index_ids.update(ids)
        if dropped:
            self._index.remove(np.asarray(dropped))
            self._index_ids.difference_update(dropped)
        self._index_generation = generation

    def _add_to_index(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Committed items into the loaded index (a commit of this process, or another's seen on refresh)."""
        self._index.add(ids, vectors)

    def _sync(self) -> None:
        """Follow the committed state (other processes write): the vector file, each item's row
        in it and the live ids: from the commits' log of added and removed items where it reaches
        back to the generation seen (at 10M items a whole snapshot takes 3 s), else read in one
        snapshot. A compaction may delete the file just named before it is opened: then the
        snapshot is read again."""
        if self._meta.generation() == self._seen:
            return
        for attempt in range(3):
            seen = self._seen
            meta, changes = self._meta.changes_since(seen) if seen >= 0 else (None, None)
            if meta is not None:
                self._follow_upgrade(meta)  # may drop what was seen: then a snapshot is read
            if changes is not None and self._seen == seen and meta.get("vectors", VECTORS_NAME) == self._vectors_name:
                table, added, removed = apply_changes(self._table, changes)
                pending = (_Pending(seen, added, removed) if self._pending is None
                           else self._pending.then(added, removed))
                # Kept for a loaded index only, and while far smaller than the ids (a process that
                # follows a long ingest but never searches would copy ever more at each sync).
                small = len(pending.added) + len(pending.removed) <= max(PENDING_MIN, len(table) // 8)
                self._pending = pending if self._index is not None and small else None
            else:
                meta, table = self._meta.snapshot()
                self._follow_upgrade(meta)
                self._pending = None
            self._vectors_name = meta.get("vectors", VECTORS_NAME)
            self._vectors.locate(self.path / self._vectors_name, table[:, 0], table[:, 1])
            self._rows = int(meta.get("rows", 0))
            try:
                self._vectors.view(self._rows)
            except FileNotFoundError:
                if attempt == 2:
                    raise
                self._seen, self._pending = -1, None  # read the snapshot again
                continue
            self._table, self._live, self._seen = table, table[:, 0], int(meta.get("generation", 0))
            return

    def _refresh(self, progress: ProgressFn | None = None) -> None:
        """Bring the loaded index up to the committed state (other processes may write);
        ``progress`` gets (rows added, rows to add) as the rows new to the index are coded."""
        self._sync()
        pending, self._pending = self._pending, None
        if self._index is None or self._index_generation == self._seen:
            return
        live = None  # the ids the index holds after: by the log's changes (None), or the live ids
        if pending is not None and pending.since == self._index_generation:
            held = self._index_ids
            new = np.union1d(pending.added, self._left_out[np.isin(self._left_out, self._live)])
            new, gone = new[~held.holds(new)], pending.removed[held.holds(pending.removed)]
        else:
            held, live = self._index_ids.ids(), HeldIds(self._live)
            if np.array_equal(held, self._live):  # the usual case, as an index is opened: nothing to do
                new = gone = held[:0]
            else:
                new = self._live[~self._index_ids.holds(self._live)]  # ascending, as the live ids
                gone = held[~live.holds(held)]
        left_out: list[int] = []  # damaged rows: read again at each refresh (a repair elsewhere moves them)
        for chunk in range(0, len(new), 65536):
            ids = new[chunk : chunk + 65536]
            vectors = self._read_stored(ids)
            whole = self._check_rows(ids, vectors)  # every row loaded is checked (a fraction of the float32 copy's cost)
            left_out += ids[~whole].tolist()
            self._add_to_index(ids[whole], vectors[whole].astype(np.float32))
            if progress is not None:
                progress(chunk + len(ids), len(new))
        if len(gone):
            self._index.remove(gone)
        self._reread_rewritten()
        if live is None:
            live = self._index_ids
            live.difference_update(gone)
            live.update(new[~np.isin(new, left_out)])
        else:
            live.difference_update(left_out)
        self._index_ids, self._left_out = live, np.array(left_out, np.int64)
        self._index_generation = self._seen

    def _ensure_index(self, progress: ProgressFn | None = None) -> SearchBackend:
        """The loaded index, up to date (loaded, or built from the vector file, first; ``progress``:
        see :meth:`_refresh`)."""
        self._sync()  # first: an upgrade may have switched the encoder, which drops the index
        settings = self._code_settings()
        if self._index is not None and settings != self._index_settings:
            self._index = None  # the code settings changed (perhaps in another process)
        if self._index is None:
            self._sync()
            self._index, self._index_ids = self._open_backend(settings)
            self._index_generation, self._index_settings, self._rewrite_mark = -1, settings, None
        self._refresh(progress)
        return self._index

    def preload(self) -> Future[int]:
        """Map the vector file's pages into this process in the background, as a server does at start:
        a search then reads the rows it re-ranks without a page fault each. Its result: the bytes mapped
        (0 where the file is over half of the machine's memory, or the system cannot; see
        ``VectorStore.populate``; an unreadable file: its error). Searches run meanwhile; a write that maps the
        file again ends it."""
        done: Future[int] = Future()
        try:  # mapped in the caller's thread: a search there may map the file at the same time
            self._sync()
            maps = self._vectors.mapped(self._rows)
        except OSError as exc:  # the searches that read it report it too; the preload only says so
            done.set_exception(exc)
            return done

        def run() -> None:
            try:
                done.set_result(self._vectors.populate(maps))
            except BaseException as exc:  # the caller's to see, through the future
                done.set_exception(exc)

        # A daemon: a process that ends (a one-off search) does not wait for it.
        threading.Thread(target=run, name="glimpse-preload", daemon=True).start()
        return done

    def _read_vectors(self, ids: np.ndarray) -> np.ndarray:
        return self._vectors.read(ids, self._rows)

    def _read_stored(self, ids: np.ndarray, columns: slice = slice(None)) -> np.ndarray:
        """float16 as stored: the re-rank scores them without a float32 copy (only ``columns``, where a
        query is zero elsewhere: see glimpse.backends.exact.SPAN_SHARE)."""
        return self._vectors.read(ids, self._rows, np.float16, columns)

    _read_stored.reads_columns = True  # type: ignore[attr-defined]

    def _check_rows(self, ids: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """The backends' ``RowCheck``: which ``rows`` read for ``ids`` are whole (unit length, and the
        checksum stored with them); the others are reported (``_found_damaged``)."""
        whole = whole_rows(rows) & self._vectors.unchanged(ids, self._rows, rows)
        if not whole.all():
            self._found_damaged(ids[~whole])
        return whole

    def _found_damaged(self, ids: np.ndarray) -> None:
        """Stored rows of ``ids`` failed the length check or their checksum: they are left out of
        results; the first time a vector file shows damage in this process, one warning names it
        and the repair."""
        self._damaged.update(ids.tolist())
        if self._vectors.path not in self._warned:
            self._warned.add(self._vectors.path)
            shown = ", ".join(map(str, ids[:5].tolist())) + (", ..." if len(ids) > 5 else "")
            log.warning("%s: damaged vectors found (items %s), left out of search results: run `glimpse repair "
                        "-c %s` (Collection.repair()) to check every row and derive the damaged ones again",
                        self._vectors.path, shown, self.location)

    def _persist_index(self) -> None:
        if self._index is not None:
            self._index.persist(self.path, self._index_generation)

    def _persist_changes(self) -> None:
        """:meth:`SearchBackend.persist_changes` of the loaded index (a removal: a whole codes file for a few
        rows gone would cost more than the next process's removing them)."""
        if self._index is not None:
            self._index.persist_changes(self.path, self._index_generation)

    def _keep_items(self) -> None:
        """At a write's end, under the lock: the items as of its last commit kept for the next process's
        snapshot, where it would read SQLite otherwise (:meth:`Metadata.keep_items`)."""
        self._sync()
        self._meta.keep_items(self._table, self._seen)

    def compact(self) -> int:
        """Rewrite the vector file without the rows of removed images; returns the rows reclaimed.

        Writes also do this on their own once removed images hold more than half of the rows
        (``COMPACT_SHARE``, ``COMPACT_MIN_ROWS``). Item ids do not change.
        """
        with self._lock:
            if self._upgrading():
                raise ValueError("an encoder upgrade is under way: finish it (glimpse upgrade) or abort it "
                                 "(glimpse upgrade --abort) before compacting")
            return self._compact()

    def _compact_if_due(self) -> None:
        self._sync()
        dead = self._rows - len(self._live)
        # Not during an upgrade: its two vector files share the row layout.
        if dead >= COMPACT_MIN_ROWS and dead > COMPACT_SHARE * self._rows and not self._upgrading():
            self._compact()
        else:
            self._drop_stale_vectors()

    def _compact(self) -> int:
        """Crash-safe: the live rows are copied to a new file, made durable beside the old one,
        then one metadata commit points every item at its new row and names the new file. Until
        then the old file is the committed one; readers in other processes keep their memory map
        of it (the unlinked file lives on) until they see the commit."""
        self._sync()
        dead = self._rows - len(self._live)
        if dead:
            target = self.path / VECTORS_FILE.format(generation=self._seen + 1)
            self._vectors.copy_rows(self._live, self._rows, target)
            next_id = int(self._meta.get_meta().get("next_id", self._rows))  # ids were rows until now
            moves = list(zip(self._live.tolist(), range(len(self._live))))
            generation = self._meta.move_rows(moves, target.name, len(self._live), next_id)
            self._apply(generation, [], None, [])  # the same ids: the index only moves on a generation
            self._sync()
        self._drop_stale_vectors()
        return dead

    def _drop_stale_vectors(self) -> None:
        """Vector files the metadata no longer names (and their checksums): replaced ones, and those
        of killed compactions and upgrades (a finish's old files, a start's order, an upgrade file's
        half-written save)."""
        keep = {self._vectors.path.name} | self._upgrade_files()
        keep |= {sums_path(Path(name)).name for name in keep}
        for old in [*self.path.glob("vectors*.f16"), *self.path.glob("vectors*.sums"), *self.path.glob("upgrade-*"),
                    *self.path.glob(".upgrade-*.tmp")]:
            if old.name not in keep:
                old.unlink(missing_ok=True)

    @contextmanager
    def _fresh_index(self) -> Iterator[SearchBackend]:
        """The in-memory index, up to date with the last commit, held for reading."""
        with self._index_lock.read_lock():
            # Code settings change without a new generation (use_codes, perhaps in another process).
            if (self._index is not None and self._index_generation == self._meta.generation()
                    and self._index_settings == self._code_settings()):
                yield self._index
                return
        with self._index_lock.write_lock():
            self._ensure_index()
        with self._index_lock.read_lock():
            yield self._index

    def _open_backend(self, settings: CodeSettings | None) -> tuple[SearchBackend, HeldIds]:
        """The backend for ``settings`` and the ids it already holds (the rest is added by ``_refresh``)."""
        index = open_backend(self.path, self.encoder.dim, settings, self._binarizer(settings),
                             self._read_stored, len(self._live), self._check_rows)
        return index, HeldIds(index.ids())

    def backend_info(self) -> dict:
        """What the search backend is and holds (``kind`` first), loading it if it is not yet."""
        with self._fresh_index() as index:
            return index.describe()

    def _item_vector(self, item_id: int) -> np.ndarray:
        with self._fresh_index():
            known = item_id in self._index_ids
        if not known and item_id not in self._damaged:
            raise ValueError(f"no item #{item_id} in this collection")
        ids = np.array([item_id], dtype=np.int64)
        vector = self._read_stored(ids)
        if not self._check_rows(ids, vector)[0]:
            raise DamagedVectorError(f"the vector of item #{item_id} is damaged in {self._vectors.path}: run "
                                     f"`glimpse repair -c {self.location}` to derive it again")
        return vector[0].astype(np.float32)
