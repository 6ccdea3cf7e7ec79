"""The public :class:`Collection`: one object over the jobs of the modules beside this one."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import BinaryIO

import numpy as np
from fasteners import ReaderWriterLock

from ..encoders import Encoder
from ..backends import SearchBackend
from ..storage import Metadata, VectorStore, WriteLock
from ..storage.words import WordIndex
from ..storage.metadata import ItemInfo
from ..storage.originals import FileChangedError, open_indexed
from ..query.adapt import TextAdapter
from ..query.limits import MAX_ID, check_item_id
from ..settings import CodeSettings, CollectionSettings, check_count
from .adapt import Adapting
from .codes import CodeStages
from .ingest import Ingesting
from .layout import DB_NAME, LOCK_NAME, VECTORS_NAME
from .live import HeldIds, LiveIndex
from .precomputed import Importing
from .repair import Repairing
from .reports import CollectionStats
from .search import Searching
from .upgrading import Upgrading
from ..upgrade.state import encoder_facts


class Collection(Ingesting, Importing, LiveIndex, CodeStages, Adapting, Searching, Upgrading, Repairing):
    """Open with :func:`glimpse.open`. Safe to search from many processes while one writes.

    Each job lives in its own module (ingest, precomputed, live, codes, adapt, search, repair); this
    class holds the state they share and the small reads that need none of them.
    """

    def __init__(self, path: Path, encoder: Encoder, meta: Metadata):
        self.path = path
        self.encoder = encoder
        self._meta = meta
        self._vectors = VectorStore(path / VECTORS_NAME, encoder.dim)
        self._lock = WriteLock(path / LOCK_NAME)
        self._index: SearchBackend | None = None
        self._index_generation = -1
        self._index_ids = HeldIds()  # the ids the loaded index holds
        self._index_settings: CodeSettings | None = None  # the code settings the loaded index follows
        self._next_id = 0
        # Searches scan the in-memory index together (read side); a refresh changes it in
        # place, so it waits for them, and they for it (write side). See _fresh_index.
        self._index_lock = ReaderWriterLock()
        self._rows = 0  # committed vector rows, as last seen
        self._seen = -1  # generation whose vector layout and live ids were last loaded
        self._table = np.zeros((0, 2), np.int64)  # (id, vector row) of each live item as of ``_seen``, ascending
        self._live = self._table[:, 0]  # live item ids as of ``_seen``
        self._vectors_name = VECTORS_NAME  # the vector file as of ``_seen``
        self._pending = None  # the log's changes since the loaded index's generation (live._Pending)
        self._left_out = np.zeros(0, np.int64)  # ids whose rows were damaged at the last refresh
        self._adapter: tuple[int, TextAdapter] | None = None  # (version, map) of the loaded adaptation
        self._words = WordIndex(path / DB_NAME)  # words read in the images (glimpse.enrich.ocr)
        self._encoder_facts = encoder_facts(meta.get_meta())  # as recorded when self.encoder was built (upgrading)
        self._rewrite_mark: tuple[str, int] | None = None  # the upgrade backfill's progress the index has seen
        self._damaged: set[int] = set()  # items whose stored rows were found damaged (left out of results)
        self._warned: set[Path] = set()  # vector files whose damage was logged

    # -- lifecycle ----------------------------------------------------------------------
    def close(self) -> None:
        """Close the databases and drop the vector file's memory map: no file stays open."""
        self._meta.close()
        self._words.close()
        self._vectors.close()

    def __enter__(self) -> Collection:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __len__(self) -> int:
        return self._meta.counts()["images"]

    @property
    def location(self) -> str:
        """What ``glimpse.open`` takes to open this collection again (its folder, or its URI)."""
        return str(self.path)

    def use_shard(self, shard: str | None) -> None:
        """Index one shard of the files (several workers): a Milvus collection's feature."""
        if shard is not None:
            raise ValueError("--shard splits the files between workers writing one Milvus collection: "
                             "give -c milvus://HOST:PORT/NAME")

    def item(self, item_id: int) -> ItemInfo:
        """An item's files, size in pixels and bytes, modification time, and the words read in it."""
        info = self._meta.item_info(check_item_id(item_id))
        if info is None:
            raise KeyError(f"no item {item_id} in this collection")
        return replace(info, words=self._words.words(item_id))

    def open_original(self, item_id: int, roots: Sequence[str | os.PathLike] = ()) -> tuple[str, BinaryIO]:
        """The first file of an item that is still what was indexed, opened for reading, and its path.

        A file counts when its size and modification time are those indexed and its real path
        (symlinks resolved, at the time of reading) lies inside the collection's folders or
        ``roots``. Raises KeyError (no such item), FileNotFoundError (none of its files is
        there), FileChangedError (they are there, but changed or lead outside those folders).
        """
        files = self._meta.item_files(check_item_id(item_id))
        if not files:
            raise KeyError(f"no item {item_id} in this collection")
        allowed = [*self.settings().roots, *roots]
        changed: FileChangedError | None = None
        for record in files:
            try:
                return record.path, open_indexed(record.path, record.size, record.mtime_ns, allowed)
            except FileChangedError as exc:
                changed = changed or exc
            except OSError:
                continue
        if changed is not None:
            raise changed
        raise FileNotFoundError(f"none of the files of image {item_id} is there any more")

    def item_ids(self) -> list[int]:
        """Ids of every image in the collection, ascending."""
        return self._meta.item_ids()

    def words_read(self) -> int:
        """How many images the OCR has read, with or without words (``glimpse enrich --ocr``)."""
        return len(self._words.read_items())

    def errors(self, limit: int | None = None):
        """Files that could not be indexed, newest first, with the reason."""
        if limit is not None:
            check_count("limit", limit, 0, MAX_ID)  # SQLite reads a negative LIMIT as none at all, and cannot bind past int64
        return self._meta.error_records(limit)

    def settings(self) -> CollectionSettings:
        """What this collection was told to do (folders, removals, codes, adaptation), as committed."""
        return CollectionSettings.from_meta(self._meta.get_meta())

    def check_files(self) -> None:
        """Raise OSError unless the database is there and the vector file holds every committed
        row (stats, nothing read): what a search needs, checked cheaply (``/api/health``)."""
        os.stat(self.path / DB_NAME)  # the open database still answers for a collection removed under it
        for attempt in range(2):  # a compaction may delete the file just named: read its name again
            meta = self._meta.get_meta()
            try:
                self._vectors.check(self.path / meta.get("vectors", VECTORS_NAME), int(meta.get("rows", 0)))
                return
            except FileNotFoundError:
                if attempt:
                    raise

    def stats(self) -> CollectionStats:
        self._sync()
        meta = self._meta.get_meta()
        settings = CollectionSettings.from_meta(meta)
        counts = self._meta.counts()
        disk = sum(f.stat().st_size for f in self.path.iterdir() if f.is_file())
        return CollectionStats(
            path=str(self.path),
            encoder=self.encoder.name,
            encoder_version=self.encoder.version,
            dim=self.encoder.dim,
            files=counts["files"],
            images=counts["images"],
            errors=counts["errors"],
            disk_bytes=disk,
            vector_bytes=self._vectors.nbytes(),
            roots=settings.roots,
            codes=settings.codes.to_meta() if settings.codes is not None else None,
            created=meta.get("created"),
            updated=meta.get("updated"),
            excluded=list(settings.excluded),
            upgrade=self._upgrade_summary(meta),
        )
