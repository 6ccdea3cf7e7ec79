"""What every worker of a Milvus collection shares besides the vectors: keyed rows in a small
companion Milvus collection, ``NAME_settings`` (key VARCHAR primary key, value JSON text).

Keys, by prefix:

* ``encoder``, ``encoder_version``, ``dim``, ``encoder_options``: the encoder that filled it.
* ``setting/K``: a collection setting (folders and their scan options, removals, code settings,
  caption adaptation; :data:`SHARED_KEYS`).
* ``blob/NAME`` and ``blob/NAME/i``: a file of the collection folder that a setting names (the
  fitted binarizer, the adaptation's map), base64 in chunks below VARCHAR's 65,535 bytes, with a
  manifest row written last (a blob without its manifest is absent).
* ``error/H``: a file that could not be indexed (H: a hash of its path), with its reason.
* ``removal/H``: a path that a worker removed (H: a hash of the path), and when: every worker
  drops its own files at or under it (:meth:`MilvusCollection._honour_removals`).
* ``caption/H``: the sidecar caption of the file at a path (H: a hash of it), with its content
  hash, published by the worker that indexed the file (adaptations learn from every worker's).
* ``claim/W``: who is doing W now (fitting the codes), until when.

Milvus has no transactions: each write is one upsert or delete, and a search sees it at once
(consistency "Strong").
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from ..atomic import write_atomic
from ..collection.ingest import _is_under
from ..storage import Metadata
from ..storage.records import ErrorRecord, FileError
from .expr import stored
from .files import FileRow, SharedFiles
from .index import SideCollection, quiet

STRONG = "Strong"
#: Collection settings kept in Milvus, not in a worker's SQLite (the rest is each worker's bookkeeping).
SHARED_KEYS = ("roots", "folder_options", "excluded", "codes", "adapt", "last_indexed")
#: Settings that name a file of the collection folder, which travels with them as a blob.
FILE_KEYS = ("codes", "adapt")
CHUNK = 48_000  # bytes per blob row: 64,000 base64 characters
#: How long a worker's view of the shared settings may lag another worker's change (one query per search otherwise).
SETTINGS_TTL_S = 1.0
#: A claim is written, then read back after this long: of two workers that claimed at once, the
#: later write wins on both reads.
CLAIM_SETTLE_S = 0.5
#: A claim's holder that was killed blocks the others at most this long.
CLAIM_LEASE_S = 600.0
_ROWS = 16_384  # Milvus's largest query limit


class SharedState(SideCollection):
    """The keyed rows of one glimpse collection's ``NAME_settings`` Milvus collection."""

    def __init__(self, client, name: str):
        super().__init__(client, f"{name}_settings")
        self.collection = name

    def _fields(self, schema) -> None:
        from pymilvus import DataType

        schema.add_field("value", DataType.VARCHAR, max_length=65535)

    # -- rows ---------------------------------------------------------------------------
    def get(self, keys: list[str]) -> dict:
        """The values of those of ``keys`` that exist."""
        if not keys or not self._exists():
            return {}
        return self._query(f"key in {json.dumps(keys)}")

    def scan(self, prefix: str) -> dict:
        """Every row whose key starts with ``prefix`` (letters, digits and '/' only; small rows, such as errors)."""
        return {row["key"]: json.loads(row["value"]) for row in self._iterate(prefix, ["key", "value"], 256)}

    def keys(self, prefix: str) -> list[str]:
        """The keys that start with ``prefix``."""
        return [row["key"] for row in self._iterate(prefix, ["key"], _ROWS)]

    def _iterate(self, prefix: str, fields: list[str], batch: int) -> list[dict]:
        if not self._exists():
            return []
        with quiet("pymilvus.orm.iterator"):
            iterator = self.client.query_iterator(self.name, filter=f'key like "{prefix}%"', output_fields=fields,
                                                  batch_size=batch, consistency_level=STRONG)
        found = []
        while batch := iterator.next():
            found += batch
        iterator.close()
        return found

    def _query(self, expression: str) -> dict:
        rows = self.client.query(self.name, filter=expression, output_fields=["key", "value"], limit=_ROWS,
                                 consistency_level=STRONG)
        return {row["key"]: json.loads(row["value"]) for row in rows}

    def put(self, values: dict) -> None:
        if not values:
            return
        if not self._exists():
            self._create()
        rows = [{"key": k, "value": json.dumps(v), "unused": [0.0, 0.0]} for k, v in values.items()]
        for start in range(0, len(rows), 16):  # at most 16 x 64 KB per request
            self.client.upsert(self.name, rows[start : start + 16])

    def delete(self, keys: list[str]) -> None:
        if keys and self._exists():
            self.client.delete(self.name, filter=f"key in {json.dumps(keys)}")

    def read(self) -> dict:
        """The encoder rows (those without a prefix)."""
        return {k: v for k, v in self._query('key != ""').items() if "/" not in k} if self._exists() else {}

    # -- blobs --------------------------------------------------------------------------
    def put_blob(self, name: str, data: bytes) -> None:
        """``data`` as ``blob/name``: the chunks first, the manifest naming them last."""
        chunks = [base64.b64encode(data[i : i + CHUNK]).decode() for i in range(0, len(data), CHUNK)] or [""]
        self.put({f"blob/{name}/{i}": chunk for i, chunk in enumerate(chunks)})
        self.put({f"blob/{name}": {"chunks": len(chunks), "sha256": hashlib.sha256(data).hexdigest()}})

    def get_blob(self, name: str) -> bytes | None:
        """The bytes of ``blob/name``; None if it is not (or no longer, or not wholly) there."""
        manifest = self.get([f"blob/{name}"]).get(f"blob/{name}")
        if manifest is None:
            return None
        keys = [f"blob/{name}/{i}" for i in range(manifest["chunks"])]
        chunks = self.get(keys)
        data = b"".join(base64.b64decode(chunks[k]) for k in keys if k in chunks)
        return data if hashlib.sha256(data).hexdigest() == manifest["sha256"] else None

    def has_blob(self, name: str) -> bool:
        return bool(self.get([f"blob/{name}"]))

    def delete_blob(self, name: str) -> None:
        """The manifest first: a reader never takes the chunks left for a whole blob."""
        manifest = self.get([f"blob/{name}"]).get(f"blob/{name}")
        if manifest is not None:
            self.delete([f"blob/{name}"])
            self.delete([f"blob/{name}/{i}" for i in range(manifest["chunks"])])

    # -- errors -------------------------------------------------------------------------
    def put_errors(self, errors: list[FileError], at: float) -> None:
        self.put({_error_key(e.path): {"path": e.path, "reason": e.reason, "size": e.size, "mtime_ns": e.mtime_ns,
                                       "at": at} for e in errors})

    def delete_errors(self, paths: list[str]) -> None:
        """The errors recorded at ``paths``, by any worker (looked up first: errors are few, paths many)."""
        if paths and self._exists():
            recorded = set(self.keys("error/"))
            self.delete(sorted(recorded & {_error_key(p) for p in paths}))

    def errors(self) -> list[ErrorRecord]:
        """Every worker's, newest first."""
        rows = sorted(self.scan("error/").values(), key=lambda e: (-e["at"], e["path"]))
        return [ErrorRecord(e["path"], e["reason"], e["size"], e["mtime_ns"], e["at"]) for e in rows]

    # -- removals -----------------------------------------------------------------------
    def put_removals(self, paths: list[str], at: float) -> list[str]:
        """Returns their keys."""
        rows = {_path_key("removal/", p): {"path": p, "at": at} for p in paths}
        self.put(rows)
        return list(rows)

    def removals(self) -> dict[str, dict]:
        """Every removal recorded, by key: ``{"path": ..., "at": ...}``."""
        return self.scan("removal/")

    def delete_removals(self, paths: list[str]) -> None:
        """The removals at or under ``paths`` (they are being added again)."""
        under = [key for key, row in self.removals().items() if _is_under(row["path"], paths)]
        self.delete(under)

    # -- captions -----------------------------------------------------------------------
    def put_captions(self, captions: list[tuple[str, str, str]]) -> None:
        """(path, content hash, caption) of files just indexed."""
        self.put({_path_key("caption/", path): {"path": path, "hash": digest, "text": text}
                  for path, digest, text in captions})

    def captions(self) -> list[dict]:
        """Every worker's: ``{"path", "hash", "text"}``."""
        return list(self.scan("caption/").values())

    def delete_captions(self, paths: list[str]) -> None:
        for start in range(0, len(paths), _ROWS):
            self.delete([_path_key("caption/", path) for path in paths[start : start + _ROWS]])

    # -- claims -------------------------------------------------------------------------
    @contextmanager
    def claim(self, what: str) -> Iterator[None]:
        """Do ``what`` as the only worker doing it: wait while another holds the claim (until its
        lease ends, should it have died), then hold it."""
        key, me = f"claim/{what}", uuid.uuid4().hex
        while True:
            held = self.get([key]).get(key)
            if held is None or held["until"] < time.time():
                self.put({key: {"owner": me, "until": time.time() + CLAIM_LEASE_S}})
                time.sleep(CLAIM_SETTLE_S)
                if self.get([key]).get(key, {}).get("owner") == me:
                    break
            time.sleep(CLAIM_SETTLE_S)
        try:
            yield
        finally:
            if self.get([key]).get(key, {}).get("owner") == me:
                self.delete([key])


def _error_key(path: str) -> str:
    return _path_key("error/", path)


def _path_key(prefix: str, path: str) -> str:
    return prefix + hashlib.blake2b(os.fsencode(path), digest_size=16).hexdigest()


class SharedMetadata(Metadata):
    """A worker's metadata whose collection settings (:data:`SHARED_KEYS`) and errors live in
    Milvus (:class:`SharedState`); items, files and the vector layout stay in its SQLite.

    The files that settings name (binarizer, adaptation map) are uploaded before the setting
    that names them, and fetched into the worker's folder when it first reads that setting.
    The local part and the shared part of a write are two commits, local first."""

    def __init__(self, path: Path, state: SharedState):
        super().__init__(path)
        self.state = state
        self.files = SharedFiles(state.client, state.collection, self.worker())
        self._shared: tuple[float, dict] | None = None  # (when read, values)
        #: Called with a code setting (or None) before it is written: the collection readies its Milvus rows.
        self.before_codes: Callable[[dict | None], None] = lambda codes: None

    @property
    def folder(self) -> Path:
        return self.path.parent

    def shared(self) -> dict:
        """The shared settings, read at most SETTINGS_TTL_S ago (or just written by this process)."""
        if self._shared is None or time.monotonic() - self._shared[0] > SETTINGS_TTL_S:
            stored = self.state.get([f"setting/{k}" for k in SHARED_KEYS])
            values = {k.split("/", 1)[1]: v for k, v in stored.items()}
            for key in FILE_KEYS:
                self._fetch(values.get(key))
            self._shared = (time.monotonic(), values)
        return self._shared[1]

    def forget_shared(self) -> None:
        """Read the shared settings again on next use (another worker may just have changed them)."""
        self._shared = None

    def _fetch(self, setting: dict | None) -> None:
        name = (setting or {}).get("file")
        if name and not (self.folder / name).exists():
            data = self.state.get_blob(name)
            if data is not None:  # else superseded meanwhile: the setting's reader copes (no such file)
                write_atomic(self.folder / name, data)

    def get_meta(self) -> dict:
        local = {k: v for k, v in super().get_meta().items() if k not in SHARED_KEYS}
        return {**local, **self.shared()}

    def set_meta(self, **values) -> None:
        local = {k: v for k, v in values.items() if k not in SHARED_KEYS}
        if local:
            super().set_meta(**local)
        self._put_shared({k: v for k, v in values.items() if k in SHARED_KEYS})

    def delete_meta(self, key: str) -> None:
        if key not in SHARED_KEYS:
            super().delete_meta(key)
            return
        before = self.shared().get(key)
        if key == "codes":
            self.before_codes(None)
        self.state.delete([f"setting/{key}"])
        self._drop_blob(before, None)
        self.forget_shared()

    def _put_shared(self, values: dict) -> None:
        if not values:
            return
        before = self.shared()
        for key in FILE_KEYS:
            name = (values.get(key) or {}).get("file")
            if name and not self.state.has_blob(name):
                self.state.put_blob(name, (self.folder / name).read_bytes())
        if "codes" in values:
            self.before_codes(values["codes"])
        self.state.put({f"setting/{k}": v for k, v in values.items()})
        for key in FILE_KEYS:
            if key in values:
                self._drop_blob(before.get(key), values[key])
        self._shared = (time.monotonic(), {**before, **values})

    def _drop_blob(self, before: dict | None, after: dict | None) -> None:
        old = (before or {}).get("file")
        if old and old != (after or {}).get("file"):
            self.state.delete_blob(old)

    def remove_paths(self, paths, **meta) -> tuple[int, list[int]]:
        """Locally first, then this worker's rows of the files in Milvus (the caller then removes
        the image rows no file shows). Rows another worker wrote stay: it holds those files still
        (dropped here by a re-shard, or gone from disk: it sees that when it runs); a removal
        deletes every worker's rows itself."""
        paths = list(paths)
        generation, dropped = super().remove_paths(paths, **{k: v for k, v in meta.items() if k not in SHARED_KEYS})
        self._put_shared({k: v for k, v in meta.items() if k in SHARED_KEYS})
        self.state.delete_errors(paths)
        self.files.delete(paths, mine=True)
        held = {row.path for row in self.files.at(paths)}  # by other workers, with their captions
        self.state.delete_captions([path for path in paths if stored(path) not in held])
        self._mirrored(generation)
        return generation, dropped

    def commit_batch(self, items, links, errors, rows) -> tuple[int, list[int]]:
        """Locally first, then the files' rows in Milvus: before the caller pushes the image rows,
        so a worker removing another file of the same image sees these (MilvusIndex.remove)."""
        result = super().commit_batch(items, links, errors, rows)
        self.state.put_errors(list(errors), time.time())
        self.state.delete_errors([link.path for link in links])  # indexed now, by whichever worker
        self.files.delete([error.path for error in errors])
        self.files.put(self.file_rows([link.path for link in links]))
        self._mirrored(result[0])
        return result

    def _mirrored(self, generation: int) -> None:
        """Commit ``generation`` is in the file rows now: so is every commit before it if the one before was."""
        if super().get_meta().get("files_synced") == generation - 1:
            super().set_meta(files_synced=generation)

    def reconcile_files(self) -> list[int]:
        """Put right this worker's file rows where a kill left them behind its SQLite (its
        last commit is not marked as mirrored); returns the items of the rows deleted."""
        generation = self.generation()
        if super().get_meta().get("files_synced") == generation:
            return []
        gone = self.files.reconcile(self.file_rows)
        super().set_meta(files_synced=generation)
        return gone

    def file_rows(self, paths: list[str] | None = None) -> list[FileRow]:
        """This worker's files (all, or those at ``paths``) as Milvus holds them: path, item, size, date."""
        sql = ("SELECT f.path, f.item_id, f.size, COALESCE(i.taken_ns, f.mtime_ns) "
               "FROM files f JOIN items i ON i.id = f.item_id")
        if paths is None:
            rows = self._query(sql)
        else:
            rows = [row for start in range(0, len(paths), 512)
                    for row in self._query(f"{sql} WHERE f.path IN ({','.join('?' * len(paths[start : start + 512]))})",
                                           [os.fsencode(p) for p in paths[start : start + 512]])]
        return [FileRow(os.fsdecode(path), item, size, date) for path, item, size, date in rows]

    def worker(self) -> str:
        """This local folder's name among the workers, drawn once."""
        worker = super().get_meta().get("worker")
        if worker is None:
            super().set_meta(worker=uuid.uuid4().hex)
            worker = super().get_meta()["worker"]
        return worker

    def counts(self) -> dict[str, int]:
        """Files: every worker's, one per path (the rows in Milvus); their errors; images: this
        worker's (the collection counts the rows in Milvus)."""
        return {**super().counts(), "files": self.files.count(), "errors": len(self.state.keys("error/"))}
