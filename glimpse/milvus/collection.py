"""A glimpse collection whose search index and shared state live in Milvus.

What lives where:

* Milvus, shared by every worker: one row per distinct image content, keyed by an id derived
  from the content hash (so workers that meet the same image write the same row), holding the
  float16 vector, the binary code, and the first file's path, size, date and pixel size (what
  filters, result paths and item details need); and, in ``NAME_settings`` (:mod:`.state`), the
  encoder, the collection's settings (folders, removals, code settings, adaptation), the files
  they name (the fitted binarizer, the adaptation map), the files no worker could index, the
  paths removed (each worker drops its own files there), the sidecar captions of every worker's
  files, and the words OCR read in the images (:mod:`.words`); and, in ``NAME_files``
  (:mod:`.files`), every worker's files, by path, naming their image: a row leaves Milvus only
  when no file names it any more (those of images with several files also in ``NAME_copies``,
  which filters query: an image matches when any of its files does).
* The local directory (:attr:`MilvusTarget.local_dir`) of each worker: its ingest bookkeeping in
  SQLite (its files' sizes and modification times for incremental re-index, its own errors),
  its copy of the vectors it embedded, and copies of the shared files and words.

A search goes to Milvus; paths and details of images another worker indexed come from their rows.
The codes are fitted by one worker at a time (a claim in Milvus), on every worker's vectors; a
new fit gets its own Milvus collection, filled from the previous one before the setting naming it
is written, and each worker moves its own rows there when it sees the new setting.
"""

from __future__ import annotations

import hashlib
import os
import time
import zlib
from dataclasses import replace
from pathlib import Path
from typing import BinaryIO

import numpy as np

from ..collection import Collection, CollectionStats, EncoderMismatchError
from ..collection.layout import DB_NAME
from ..collection.live import HeldIds
from ..collection.opening import URI_OPENERS, open_directory
from ..encoders import Encoder
from ..collection.ingest import _is_under
from ..ingest import absolute
from ..settings import CodeSettings, check_paths
from ..storage import CollectionLockedError, Metadata
from ..storage.metadata import ItemInfo
from ..storage.originals import FileChangedError, OnAnotherMachine, open_indexed
from ..storage.records import ErrorRecord
from ..query.adapt import sidecar_caption
from ..query.filters import Filter
from ..query.words import Phrase
from .connect import LITE, SCHEMES, MilvusTarget, connect, parse_uri, release
from .expr import (both, expressible, ids_expression, on_a_file, passing, paths_expression, pixels_expression, stored,
                   to_expression, under)
from .index import CONSISTENCY, IDS_PER_QUERY, MilvusIndex, index_collections, server_version
from .state import SharedMetadata, SharedState
from .words import SharedWords

#: Paths per Milvus query for the rows under them (the expression stays short).
PATHS_PER_QUERY = 256
#: This machine's copy of the words read in the images (glimpse.milvus.words), in its local folder.
WORDS_FILE = "words.sqlite"


def parse_shard(shard: str | tuple[int, int]) -> tuple[int, int]:
    """``"i/n"`` or ``(i, n)``: shard i of n, 0 <= i < n."""
    try:
        index, count = (int(part) for part in shard.split("/")) if isinstance(shard, str) else shard
    except ValueError:
        raise ValueError(f"shard must be i/n, such as 0/2 (the first of two workers), got {shard!r}") from None
    if not 0 <= index < count:
        raise ValueError(f"shard {index}/{count}: i must be from 0 to n - 1 (0/{max(count, 1)} .. {max(count, 1) - 1}/{max(count, 1)})")
    return index, count


def content_id(content_hash: str) -> int:
    """An item id from its content hash (hex): the same on every worker, below 2**62."""
    return int(content_hash[:16], 16) >> 2


class MilvusCollection(Collection):
    """A :class:`Collection` searched through :class:`MilvusIndex` (see the module for the split)."""

    _upgrades_in_place = False  # `glimpse upgrade` would leave Milvus's rows in the old space (issue 13)

    def __init__(self, path: Path, encoder: Encoder, meta: SharedMetadata, target: MilvusTarget, client):
        super().__init__(path, encoder, meta)
        self.target, self._client = target, client
        self._state: SharedState = meta.state
        self._words.close()
        self._words = SharedWords(path / WORDS_FILE, self._state)
        self._shard: tuple[int, int] | None = None
        self._version = (2, 5) if target.scheme == LITE else server_version(client)

    @property
    def location(self) -> str:
        return self.target.uri

    def use_shard(self, shard: str | tuple[int, int] | None) -> None:
        """Index only shard ``i`` of ``n`` (``"i/n"``) of the files that ``add``/``index`` find.

        Workers on several machines each take one shard of the same folders (mounted at the same
        path): a file belongs to one shard by a hash of its path. Identical files in different
        shards become one Milvus row (their ids derive from their content)."""
        self._shard = None if shard is None else parse_shard(shard)

    def _scan(self, targets, excluded, problems):
        entries = super()._scan(targets, excluded, problems)
        if self._shard is None:
            return entries
        for path in [p for p in problems if not self._mine(p)]:
            del problems[path]
        return [entry for entry in entries if self._mine(str(entry.path))]

    def _mine(self, path: str) -> bool:
        index, count = self._shard
        return zlib.crc32(path.encode("utf-8", "surrogateescape")) % count == index

    def _ours(self, path: str) -> bool:
        """Whether this worker indexes ``path`` when its scan finds it (its shard's, or every file)."""
        return self._shard is None or self._mine(path)

    def close(self) -> None:
        super().close()
        self._client.close()
        release(self.target)

    def __len__(self) -> int:
        """Images in Milvus, from every worker."""
        with self._fresh_index() as index:
            return index.count()

    def errors(self, limit: int | None = None) -> list[ErrorRecord]:
        """Files that no worker could index, newest first (from Milvus)."""
        return self._state.errors()[:limit]

    # -- details and originals of every worker's images --------------------------------
    def item(self, item_id: int) -> ItemInfo:
        """As locally; an image another worker indexed is described by its Milvus row (its first file)."""
        try:
            return super().item(item_id)
        except KeyError:
            row = self._row(item_id)
            return ItemInfo(item_id, [row["path"]], row["width"], row["height"], row["bytes"], row["date_ns"] / 1e9,
                            words=self._words.words(item_id))

    def open_original(self, item_id: int, roots=()) -> tuple[str, BinaryIO]:
        """As locally; the file of an image another worker indexed is read where its row says,
        if this machine can read it (the same mount) and it still holds that content."""
        try:
            return super().open_original(item_id, roots)
        except KeyError:  # no file of it here (or no such id: then _row says so)
            path = self._row(item_id)["path"]
        try:
            file = open_indexed(path, os.stat(path).st_size, os.stat(path).st_mtime_ns, [*self.settings().roots, *roots])
        except FileChangedError:
            raise
        except OSError:
            raise OnAnotherMachine(f"image {item_id} was indexed by another worker: its file {path} "
                                   "cannot be read on this machine") from None
        digest = hashlib.file_digest(file, lambda: hashlib.blake2b(digest_size=16)).hexdigest()
        if content_id(digest) != item_id:  # the indexing worker's size and time are not in Milvus: the content decides
            file.close()
            raise FileChangedError(f"{path} changed since it was indexed (run glimpse index)")
        file.seek(0)
        return path, file

    def _row(self, item_id: int) -> dict:
        """An image's Milvus row (path, bytes, date_ns, width, height); KeyError if none."""
        rows = self._ensure_index().rows(np.array([item_id], dtype=np.int64)) if 0 <= item_id < 2**62 else []
        if not rows:
            raise KeyError(f"no item {item_id} in this collection")
        return rows[0]

    # -- the index and the codes ---------------------------------------------------------
    def _milvus_index(self, settings: CodeSettings | None) -> MilvusIndex:
        """The Milvus collection for these code settings; one made now is filled from the others."""
        options = {"oversample": settings.oversample, "rerank": settings.rerank} if settings else {}
        index = MilvusIndex(self._client, self.target.name, self.encoder.dim, binarizer=self._binarizer(settings),
                            attributes=self._attributes, version=self._version, index=self.target.index,
                            consistency=CONSISTENCY[self.target.consistency], holders=self._meta.files.holders,
                            **options)
        if index.created:
            self._fill(index, [other for other in index_collections(self._client, self.target.name)
                               if other != index.name])
        return index

    def _fill(self, index: MilvusIndex, sources: list[str]) -> None:
        """Every row into ``index``: this worker's from its vector file, the others' copied from ``sources``."""
        self._sync()
        mine = np.setdiff1d(self._live, index.ids())
        for start in range(0, len(mine), 65536):
            index.add(mine[start : start + 65536], self._vectors.read(mine[start : start + 65536], self._rows))
        for source in sources:
            index.copy_from(source, np.union1d(self._live, index.ids()))

    def _open_backend(self, settings: CodeSettings | None) -> tuple[MilvusIndex, HeldIds]:
        """The Milvus collection for this fit; of its rows, those this worker holds count as
        pushed (rows of other workers are never removed on this worker's behalf). Removals
        recorded by other workers are honoured first, so their rows are not pushed back; then
        what a kill left between this worker's SQLite and its file rows in Milvus is put right
        (the rows of images no file shows any more go)."""
        unpushable = self._honour_removals()
        self._meta.files.ensure_copies()
        self._sync()
        index = self._milvus_index(settings)
        index.remove(np.array(self._meta.reconcile_files(), dtype=np.int64))
        held = HeldIds(np.intersect1d(index.ids(), self._live))
        held.update(unpushable)
        return index, held

    def _prepare_codes(self, codes: dict | None) -> None:
        """Before a code setting is written: its Milvus collection holds every row (copied
        from the one searched now), and collections older than that one go."""
        current = self._ensure_index().name  # of the setting still in force
        index = self._milvus_index(CodeSettings.from_meta(codes))  # filled if made now
        if not index.created and current != index.name:  # perhaps left half-filled by a killed worker
            self._fill(index, [current])
        for other in index_collections(self._client, self.target.name):
            if other not in (index.name, current):
                self._client.drop_collection(other)

    def _fit_codes(self, settings: CodeSettings | None = None, progress=None) -> None:
        """One worker fits at a time (a claim in Milvus), on every worker's vectors; a worker
        that asks for the codes another has just fitted takes that fit."""
        if settings is None and self._code_settings() is None:
            return super()._fit_codes(settings, progress)
        with self._state.claim("codes"):
            self._meta.forget_shared()
            stored = self._code_settings()
            if (settings is not None and stored is not None and stored.same_codes(settings)
                    and self._binarizer(stored) is not None):
                settings = settings.keeping_fit(stored)
            super()._fit_codes(settings, progress)

    def _fit_pool(self) -> np.ndarray:
        return self._ensure_index().ids()

    def _read_vectors(self, ids: np.ndarray) -> np.ndarray:
        """From this worker's vector file, and from Milvus for images other workers embedded."""
        ids = np.asarray(ids, dtype=np.int64)
        mine = np.isin(ids, self._live)
        if mine.all():
            return super()._read_vectors(ids)
        out = np.empty((len(ids), self.encoder.dim), np.float32)
        out[mine] = super()._read_vectors(ids[mine])
        found, vectors = self._ensure_index().vectors(ids[~mine])
        if len(found) < (~mine).sum():
            raise KeyError(f"no vector for items {sorted(set(ids[~mine].tolist()) - set(found.tolist()))[:5]}")
        out[~mine] = vectors[np.searchsorted(found, ids[~mine])] if len(found) else vectors
        return out

    def _add_to_index(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Only the rows Milvus lacks. Every process that sees a commit adds what is missing (the
        committing one may have been killed before its upsert), and an upsert of a row Milvus
        already holds hides that row from searches running meanwhile (Milvus Lite 2.5 missed it
        in a third of such searches), so rows are never written again on the way."""
        keep = np.isin(ids, self._index.missing(ids))
        if keep.any():
            super()._add_to_index(ids[keep], vectors[keep])

    def _apply(self, generation: int, ids: list[int], vectors: np.ndarray | None, dropped: list[int]) -> None:
        """Every commit reaches the Milvus collection of the current code setting (another
        worker may have changed it), also when no search has loaded the index yet."""
        self._words.drop(dropped)
        if self._index is None or self._index_settings != self._code_settings():
            self._index = None
            self._ensure_index()  # pushes what this worker holds and Milvus lacks
            if dropped:
                self._index.remove(np.asarray(dropped, dtype=np.int64))
            return
        super()._apply(generation, ids, vectors, dropped)

    # -- rows whose files changed ---------------------------------------------------------
    # A row holds its item's first file (path, bytes, date): a file of an item kept (linked,
    # re-dated, removed while a copy stays) may change them, and filters read them in Milvus.
    def _commit_rows(self, rows, items, vectors, links, errors=()):
        """As locally; the rows of items whose files changed are restated, and the sidecar
        captions of the files are published for every worker's adaptation."""
        paths = [link.path for link in links] + [error.path for error in errors]
        before = self._items_at(paths)
        rows, dropped = super()._commit_rows(rows, items, vectors, links, errors)
        self._restate((before | self._items_at(paths)) - {item.id for item in items})
        if self.has_files:
            self._state.put_captions([(link.path, link.hash, text) for link in links
                                      if (text := sidecar_caption(link.path))])
        return rows, dropped

    # -- captions of every worker's files -----------------------------------------------
    def _captioned(self, captions) -> tuple[list[int], list[str], int]:
        """As locally; without a TSV, other workers' files also lend the captions they published."""
        ids, texts, missing = super()._captioned(captions)
        if captions is None:
            mine = self._meta.file_records()
            theirs = [row for row in self._state.captions() if row["path"] not in mine]
            items = np.array([content_id(row["hash"]) for row in theirs], dtype=np.int64)
            held = np.isin(items, self._ensure_index().ids())
            ids += items[held].tolist()
            texts += [row["text"] for row, kept in zip(theirs, held) if kept]
        return ids, texts, missing

    def _items_for_paths(self, paths: list[str]) -> list[int | None]:
        """As locally; a file another worker indexed is found by its row's path (its item's first file)."""
        items = super()._items_for_paths(paths)
        others = [path for path, item in zip(paths, items) if item is None]
        found: dict[str, int] = {}
        for start in range(0, len(others), IDS_PER_QUERY):
            ids, rows = self._ensure_index().paths(paths_expression(others[start : start + IDS_PER_QUERY]))
            found.update(zip(rows, ids.tolist()))
        return [found.get(stored(path)) if item is None else item for path, item in zip(paths, items)]

    def repair(self, *, progress=None):
        raise ValueError("repair checks the vector file of a collection in a folder; a Milvus collection has no "
                         "repair yet")

    def remove(self, paths) -> int:
        """As locally, on every worker: errors and captions that other workers recorded under
        ``paths`` go, so do their files there (counted) and the rows of images no file shows
        any more, and the removal is recorded in Milvus for each worker to drop its own files
        there (:meth:`_honour_removals`)."""
        paths = [str(absolute(p)) if self.has_files else str(p) for p in check_paths(paths)]
        with self._lock:
            before = {record.item_id for record in self._meta.file_records(paths).values()}
            removed = super().remove(paths)
            self._restate(before)
            self._state.delete_errors([e.path for e in self._state.errors() if _is_under(e.path, paths)])
            self._state.delete_captions([c["path"] for c in self._state.captions() if _is_under(c["path"], paths)])
            at = time.time()
            seen = self._meta.get_meta().get("removals_seen", {})  # this worker has dropped its files there
            self._meta.set_meta(removals_seen={**seen, **dict.fromkeys(self._state.put_removals(paths, at), at)})
            theirs = 0
            for start in range(0, len(paths), PATHS_PER_QUERY):
                theirs += self._drop_rows_under(paths[start : start + PATHS_PER_QUERY])
        return removed + theirs

    def _unmatched(self, targets: list[str]) -> list[str]:
        """Of ``targets``, those no worker holds a file, row or error at or under."""
        if not targets:
            return targets
        _, found = self._ensure_index().paths(under(targets))  # also rows written before file rows were
        held = [row.path for row in self._meta.files.under(targets)] + found + [e.path for e in self._state.errors()]
        return [t for t in targets if not any(_is_under(h, [stored(t)]) or _is_under(h, [t]) for h in held)]

    def _drop_rows_under(self, paths: list[str]) -> int:
        """Delete other workers' files at or under ``paths`` from Milvus, then the rows of the
        images no file shows any more (those still shown elsewhere name a file left); returns
        how many files went."""
        index = self._ensure_index()
        theirs = self._meta.files.under(paths)
        self._meta.files.delete([row.path for row in theirs])
        ids, found = index.paths(under(paths))  # also rows written before file rows were
        held = [stored(path) for path in paths]
        named = ids[np.array([_is_under(path, held) for path in found], dtype=bool)]
        self._forget(np.union1d(named, np.array([row.item for row in theirs], dtype=np.int64)))
        return len(theirs)

    def _forget(self, items: np.ndarray) -> None:
        """The rows of those of ``items`` that no file shows any more go, with their words."""
        index = self._ensure_index()
        index.remove(items)
        self._words.drop(index.missing(items).tolist())

    def _honour_removals(self) -> set[int]:
        """Drop this worker's files at or under the removals recorded in Milvus (by any worker,
        each once). Returns the items of files it could not drop yet: another process on this
        machine holds the write lock (it drops them when it next indexes)."""
        recorded = self._state.removals()
        seen = self._meta.get_meta().get("removals_seen", {})
        pending = {key: row for key, row in recorded.items() if seen.get(key) != row["at"]}
        if not pending:
            return set()
        targets = [row["path"] for row in pending.values()]
        done = {key: row["at"] for key, row in recorded.items() if key in pending or key in seen}
        records = self._meta.file_records(targets)
        try:
            with self._lock:
                doomed = sorted(records) + [e.path for e in self._meta.error_records() if _is_under(e.path, targets)]
                generation, dropped = self._meta.remove_paths(doomed, removals_seen=done)
                if self._index is not None:
                    self._apply(generation, [], None, dropped)
                    self._restate({record.item_id for record in records.values()})
        except CollectionLockedError:
            return {record.item_id for record in records.values()}
        return set()

    def _remember(self, targets) -> list[str]:
        """As locally; adding a path again also undoes the removals recorded at or under it, and
        this worker drops its files under the other removals before it indexes."""
        added = [root for root, _ in targets if root not in self.settings().folders]
        excluded = super()._remember(targets)
        self._state.delete_removals(added)
        self._honour_removals()
        self._ensure_index()  # files whose rows another worker's removal took, added again, go back
        return excluded

    def _prune(self, roots, excluded, present, report) -> None:
        """As locally; files left to another shard (on disk still) keep their rows, released
        (:meth:`SharedFiles.release`), and released rows under ``roots`` of files that this
        worker's scan would find but did not (gone from disk) go, with the images no file shows."""
        records = self._meta.file_records(roots)
        self._meta.files.release([path for path in records if path not in present and not self._ours(path)
                                  and os.path.lexists(path)])
        before = {r.item_id for path, r in records.items() if path not in present}
        super()._prune(roots, excluded, present, report)
        self._restate(before)
        gone = [row for row in self._meta.files.released_under(roots)
                if row.path not in present and self._ours(row.path) and not os.path.lexists(row.path)]
        if gone:
            self._meta.files.delete([row.path for row in gone])
            self._forget(np.array([row.item for row in gone], dtype=np.int64))

    def _items_at(self, paths: list[str]) -> set[int]:
        return {item for item in map(self._meta.item_for_path, paths) if item is not None}

    def _restate(self, items: set[int]) -> None:
        """Upsert the rows of ``items`` that still exist again, with their files as now."""
        if not items:
            return
        self._sync()
        kept = np.intersect1d(np.fromiter(items, np.int64, len(items)), self._live)
        if len(kept):
            self._ensure_index().add(kept, self._vectors.read(kept, self._rows))

    def _new_item_id(self, content_hash: str) -> int:
        return content_id(content_hash)

    def _vector_item_id(self, key: str, serial: int) -> int:
        """From the key and this worker's serial number: workers adding different keys never share an id."""
        return content_id(hashlib.blake2b(f"{key}\0{serial}".encode("utf-8", "surrogateescape"), digest_size=8).hexdigest())

    def _attributes(self, ids: np.ndarray) -> dict[str, list]:
        """Each item's first file (by path): path, bytes, date (capture, else modification), pixels."""
        marks = ",".join("?" * len(ids))
        rows = self._meta._query(
            "SELECT i.id, f.path, f.size, COALESCE(i.taken_ns, f.mtime_ns), i.width, i.height "
            f"FROM items i JOIN files f ON f.item_id = i.id WHERE i.id IN ({marks}) ORDER BY i.id, f.path",
            [int(i) for i in ids])
        first: dict[int, tuple] = {}
        for row in rows:
            first.setdefault(row[0], row[1:])
        out: dict[str, list] = {"path": [], "bytes": [], "date_ns": [], "width": [], "height": []}
        for item in ids.tolist():
            path, size, date, width, height = first.get(item, (b"", 0, 0, 0, 0))
            name = os.fsdecode(path) if isinstance(path, bytes) else str(path)
            out["path"].append(stored(name))
            for field, value in zip(("bytes", "date_ns", "width", "height"), (size, date, width, height)):
                out[field].append(int(value))
        return out

    # -- searching ---------------------------------------------------------------------
    def _matching(self, filters: Filter) -> np.ndarray | None:
        """None where Milvus applies ``filters`` as an expression; else the ids of every worker's
        rows that a superset expression lets through and whose path passes exactly, and of the
        images one of whose other files passes."""
        if expressible(filters, **self._like()):
            return None
        ids, paths = self._ensure_index().paths(to_expression(filters, **self._like()))
        return np.union1d(ids[passing(paths, self._conditions(filters))], self._copies_passing(filters))

    def _copies_passing(self, filters: Filter) -> np.ndarray:
        """Images with several files (any worker's) one of which passes the file conditions of
        ``filters`` (path, size, date), whose pixels pass too; ascending. An image row names one
        file: these are the images that match by another (one query of the copies' rows)."""
        like, where = self._like(), self._conditions(filters)
        if not on_a_file(where):  # conditions on the image only: its row answers for every file
            return np.zeros(0, np.int64)
        rows = self._meta.files.copies_passing(to_expression(filters, **like, files=True),
                                               CONSISTENCY[self.target.consistency])
        passed = passing([row.path for row in rows], where)
        items = np.unique(np.array([row.item for row, ok in zip(rows, passed) if ok], dtype=np.int64))
        pixels = pixels_expression(filters, like["keys_only"])
        if not pixels or not len(items):
            return items
        index = self._ensure_index()
        return np.sort(np.concatenate([index.paths(both(ids_expression(items[start : start + IDS_PER_QUERY]), pixels))[0]
                                       for start in range(0, len(items), IDS_PER_QUERY)]))

    def _conditions(self, filters: Filter):
        return filters.conditions() if self.has_files else filters.key_conditions()

    def _all_items(self) -> np.ndarray:
        return self._ensure_index().ids()

    def _index_filter(self, filters: Filter | None, phrases: list[Phrase]) -> dict:
        if filters is None or filters.is_empty() or not expressible(filters, **self._like()):
            return {}
        where, copies = to_expression(filters, **self._like()), self._copies_passing(filters)
        if len(copies):  # matched by another of their files; their pixels passed already
            where = f"({where}) or ({ids_expression(copies)})"
        return {"where": where}

    def _like(self) -> dict[str, bool]:
        """How this Milvus matches path patterns (:func:`glimpse.milvus.expr.expressible`)."""
        return {"keys_only": not self.has_files, "infix": self._version >= (2, 4)}

    def _paths_for(self, item_ids: list[int]) -> dict[int, str]:
        paths = super()._paths_for(item_ids)
        others = [i for i in item_ids if i not in paths]  # indexed by another worker
        if others and self._index is not None:
            rows = self._index.rows(np.array(others, dtype=np.int64), ["path"])
            paths.update({row["id"]: row["path"] for row in rows})
        return paths

    def _item_for_hash(self, content_hash: str) -> int | None:
        """Also an image another worker indexed: its id derives from its content."""
        local = super()._item_for_hash(content_hash)
        if local is not None:
            return local
        item = content_id(content_hash)
        return item if self._ensure_index().rows(np.array([item], dtype=np.int64), ["id"]) else None

    def _item_vector(self, item_id: int) -> np.ndarray:
        try:
            return super()._item_vector(item_id)
        except ValueError:  # perhaps indexed by another worker
            found, vectors = self._index.vectors(np.array([item_id], dtype=np.int64))
            if not len(found):
                raise
            return vectors[0].astype(np.float32)

    def stats(self) -> CollectionStats:
        """Images: the rows in Milvus; files: every worker's, one per path (their rows in Milvus)."""
        images = len(self)
        return replace(super().stats(), path=self.target.uri, images=images)


def open_milvus(uri: str, encoder: str | Encoder | None = None, *, create: bool = True,
                **encoder_options) -> MilvusCollection:
    """Open (or create) the collection a ``milvus-lite://`` or ``milvus://`` URI names.

    A machine that has no local part yet opens it with the encoder recorded in Milvus; an
    encoder other than the recorded one is refused, as for a local collection."""
    target = parse_uri(uri)
    client = connect(target)
    settings = SharedState(client, target.name)
    shared = settings.read()
    local = target.local_dir
    if shared and encoder is None and not local.exists():
        encoder = shared["encoder"]
        encoder_options = {**shared.get("encoder_options", {}), **encoder_options}
    if not shared and not create and not local.exists():
        client.close()
        release(target)
        raise FileNotFoundError(f"no glimpse collection at {uri} (create one with `glimpse index FOLDER -c {uri}`)")
    # A machine without a local part joins a collection that exists in Milvus.
    try:
        collection = open_directory(local, encoder, True, encoder_options,
                                    lambda root, enc, meta: _joined(root, enc, meta, target, client, settings))
    except BaseException:
        client.close()
        release(target)
        raise
    info = {"encoder": collection.encoder.name, "encoder_version": collection.encoder.version,
            "dim": collection.encoder.dim, "encoder_options": collection.encoder.options}
    if not shared:
        settings.put(info)
        shared = info
    if (shared["encoder"], shared["encoder_version"], shared["dim"]) != (info["encoder"], info["encoder_version"], info["dim"]):
        collection.close()
        raise EncoderMismatchError(
            f"collection {uri} was built with encoder {shared['encoder']} v{shared['encoder_version']} "
            f"({shared['dim']}-d), not {info['encoder']} v{info['encoder_version']} ({info['dim']}-d): their vectors "
            "are not comparable. Open it with its own encoder, or index into a new collection.")
    return collection


def _joined(root: Path, encoder: Encoder, meta: Metadata, target: MilvusTarget, client,
            state: SharedState) -> MilvusCollection:
    """The collection over this worker's SQLite with the shared settings in Milvus."""
    meta.close()
    shared = SharedMetadata(root / DB_NAME, state)
    collection = MilvusCollection(root, encoder, shared, target, client)
    shared.before_codes = collection._prepare_codes
    return collection


URI_OPENERS.update(dict.fromkeys(SCHEMES, open_milvus))
