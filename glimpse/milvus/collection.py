"""A glimpse collection whose search index lives in Milvus.

What lives where (each machine that ingests keeps its own local part):

* Milvus, shared by every worker: one row per distinct image content, keyed by an id derived
  from the content hash (so workers that meet the same image write the same row), holding the
  float16 vector, the binary code, and the first file's path, size, date and pixel size (what
  filters and result paths need); and the collection's settings (encoder, dimension).
* The local directory (:attr:`MilvusTarget.local_dir`) of each worker: its ingest bookkeeping in
  SQLite (its files' sizes and modification times for incremental re-index, errors, folders),
  its copy of the vectors it embedded, the fitted binarizer, and the words read by OCR.

A search goes to Milvus; paths of images another worker indexed come from their Milvus row.
"""

from __future__ import annotations

import hashlib
import json
import os
import zlib
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..collection import Collection, CollectionStats, EncoderMismatchError
from ..collection.opening import URI_OPENERS, open_directory
from ..encoders import Encoder
from ..ingest import absolute
from ..settings import CodeSettings
from ..storage import Metadata
from ..query.filters import Filter
from ..query.words import Phrase
from .connect import LITE, SCHEMES, MilvusTarget, connect, parse_uri, release
from .expr import expressible, ids_expression, to_expression
from .index import STRONG, MilvusIndex, server_version

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

    def __init__(self, path: Path, encoder: Encoder, meta: Metadata, target: MilvusTarget, client):
        super().__init__(path, encoder, meta)
        self.target, self._client = target, client
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

    def close(self) -> None:
        super().close()
        self._client.close()
        release(self.target)

    # -- the index ---------------------------------------------------------------------
    def _open_backend(self, settings: CodeSettings | None) -> tuple[MilvusIndex, set[int]]:
        """The Milvus collection for this fit; of its rows, those this worker holds count as
        pushed (rows of other workers are never removed on this worker's behalf)."""
        options = {"oversample": settings.oversample, "rerank": settings.rerank} if settings else {}
        index = MilvusIndex(self._client, self.target.name, self.encoder.dim, binarizer=self._binarizer(settings),
                            attributes=self._attributes, version=self._version, **options)
        return index, set(np.intersect1d(index.ids(), self._live).tolist())

    def _apply(self, generation: int, ids: list[int], vectors: np.ndarray | None, dropped: list[int]) -> None:
        """Every commit reaches Milvus, also when no search has loaded the index yet."""
        if self._index is None:
            self._ensure_index()  # pushes what this worker holds and Milvus lacks
            if dropped:
                self._index.remove(np.asarray(dropped, dtype=np.int64))
            return
        super()._apply(generation, ids, vectors, dropped)

    # -- rows whose files changed ---------------------------------------------------------
    # A row holds its item's first file (path, bytes, date): a file of an item kept (linked,
    # re-dated, removed while a copy stays) may change them, and filters read them in Milvus.
    def _commit_rows(self, rows, items, vectors, links, errors=()):
        paths = [link.path for link in links] + [error.path for error in errors]
        before = self._items_at(paths)
        rows, dropped = super()._commit_rows(rows, items, vectors, links, errors)
        self._restate((before | self._items_at(paths)) - {item.id for item in items})
        return rows, dropped

    def remove(self, paths) -> int:
        paths = [str(absolute(p)) if self.has_files else str(p) for p in paths]
        before = {record.item_id for record in self._meta.file_records(paths).values()}
        removed = super().remove(paths)
        self._restate(before)
        return removed

    def _prune(self, roots, excluded, present, report) -> None:
        before = {r.item_id for path, r in self._meta.file_records(roots).items() if path not in present}
        super()._prune(roots, excluded, present, report)
        self._restate(before)

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

    def _vector_item_id(self, key: str, row: int) -> int:
        """From the key and this worker's row: workers adding different keys never share an id."""
        return content_id(hashlib.blake2b(f"{key}\0{row}".encode("utf-8", "surrogateescape"), digest_size=8).hexdigest())

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
            out["path"].append(name.encode("utf-8", "surrogateescape").decode("utf-8", "replace"))
            for field, value in zip(("bytes", "date_ns", "width", "height"), (size, date, width, height)):
                out[field].append(int(value))
        return out

    # -- searching ---------------------------------------------------------------------
    def _native(self, filters: Filter | None, phrases: list[Phrase]) -> bool:
        return filters is not None and not filters.is_empty() and expressible(filters)

    def _allowed(self, filters: Filter | None, phrases: list[Phrase]) -> np.ndarray | None:
        return super()._allowed(None if self._native(filters, phrases) else filters, phrases)

    def _index_filter(self, filters: Filter | None, phrases: list[Phrase]) -> dict:
        if not self._native(filters, phrases):
            return {}
        return {"where": to_expression(filters, keys_only=not self.has_files)}

    def _paths_for(self, item_ids: list[int]) -> dict[int, str]:
        paths = super()._paths_for(item_ids)
        others = [i for i in item_ids if i not in paths]  # indexed by another worker
        if others and self._index is not None:
            rows = self._client.query(self._index.name, filter=ids_expression(np.array(others)),
                                      output_fields=["path"], consistency_level=STRONG)
            paths.update({row["id"]: row["path"] for row in rows})
        return paths

    def _item_vector(self, item_id: int) -> np.ndarray:
        try:
            return super()._item_vector(item_id)
        except ValueError:  # perhaps indexed by another worker
            found, vectors = self._index.vectors(np.array([item_id], dtype=np.int64))
            if not len(found):
                raise
            return vectors[0].astype(np.float32)

    def stats(self) -> CollectionStats:
        stats = super().stats()
        return replace(stats, path=self.target.uri)


class SharedSettings:
    """Key-value settings in a small Milvus collection beside the vectors (``NAME_settings``)."""

    def __init__(self, client, name: str):
        self.client, self.name = client, f"{name}_settings"

    def read(self) -> dict:
        if not self.client.has_collection(self.name):
            return {}
        self.client.load_collection(self.name)
        rows = self.client.query(self.name, filter='key != ""', output_fields=["key", "value"],
                                 consistency_level=STRONG)
        return {row["key"]: json.loads(row["value"]) for row in rows}

    def write(self, values: dict) -> None:
        if not self.client.has_collection(self.name):
            from pymilvus import DataType

            schema = self.client.create_schema(auto_id=False)
            schema.add_field("key", DataType.VARCHAR, is_primary=True, max_length=256)
            schema.add_field("value", DataType.VARCHAR, max_length=65535)
            schema.add_field("unused", DataType.FLOAT_VECTOR, dim=2)  # Milvus needs one vector field
            params = self.client.prepare_index_params()
            params.add_index("unused", index_type="FLAT", metric_type="L2")
            self.client.create_collection(self.name, schema=schema, index_params=params, consistency_level=STRONG)
        self.client.upsert(self.name, [{"key": k, "value": json.dumps(v), "unused": [0.0, 0.0]}
                                       for k, v in values.items()])


def open_milvus(uri: str, encoder: str | Encoder | None = None, *, create: bool = True,
                **encoder_options) -> MilvusCollection:
    """Open (or create) the collection a ``milvus-lite://`` or ``milvus://`` URI names.

    A machine that has no local part yet opens it with the encoder recorded in Milvus; an
    encoder other than the recorded one is refused, as for a local collection."""
    target = parse_uri(uri)
    client = connect(target)
    settings = SharedSettings(client, target.name)
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
                                    lambda root, enc, meta: MilvusCollection(root, enc, meta, target, client))
    except BaseException:
        client.close()
        release(target)
        raise
    info = {"encoder": collection.encoder.name, "encoder_version": collection.encoder.version,
            "dim": collection.encoder.dim, "encoder_options": collection.encoder.options}
    if not shared:
        settings.write(info)
        shared = info
    if (shared["encoder"], shared["encoder_version"], shared["dim"]) != (info["encoder"], info["encoder_version"], info["dim"]):
        collection.close()
        raise EncoderMismatchError(
            f"collection {uri} was built with encoder {shared['encoder']} v{shared['encoder_version']} "
            f"({shared['dim']}-d), not {info['encoder']} v{info['encoder_version']} ({info['dim']}-d): their vectors "
            "are not comparable. Open it with its own encoder, or index into a new collection.")
    return collection


URI_OPENERS.update(dict.fromkeys(SCHEMES, open_milvus))
