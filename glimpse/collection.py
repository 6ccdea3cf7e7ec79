"""A collection: one directory holding metadata, vectors and the search index.

Data flows one way: files -> ingest (scan, read, hash, decode) -> encoder -> vector file
-> metadata commit -> search index. Each batch becomes visible in one SQLite transaction
after its vectors are durable, so a kill at any moment leaves the last committed state.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from itertools import islice
from pathlib import Path
from typing import BinaryIO

import numpy as np
from fasteners import ReaderWriterLock
import numpy.typing as npt

from .encoders import DEFAULT_ENCODER, Encoder, EncoderInfo, create_encoder, l2_normalize
from .encoders.precomputed import PRECOMPUTED
from .codes import DEFAULT_BINARIZER, Binarizer, create_binarizer, load_binarizer
from .backends import SearchBackend, open_backend
from .backends.binary import BINARIZER_FILE
from .storage import Metadata, VectorStore, WriteLock
from .storage.words import WordHit, WordIndex
from .storage.metadata import FileError, FileLink, ItemInfo, NewItem
from .storage.originals import FileChangedError, open_indexed
from .ingest import FileEntry, Prepared, absolute, prepare_files, scan
from .ingest.names import shown
from .query import ImageLike, SearchResult
from .metrics import recall_at_k
from .query.adapt import FORMAT as ADAPT_FORMAT, KINDS as ADAPT_KINDS, MIN_PAIRS, TextAdapter, fit_adapter, read_captions, sidecar_caption
from .query.build import QuerySources, build_query
from .query.filters import Filter
from .query.limits import MAX_ID
from .query.request import SearchRequest
from .query import fusion as fuse
from .query.words import Phrase, split_word_terms
from .query.refine import CANDIDATES, refine as refine_candidates
from .settings import CodeSettings, check_ingest

DB_NAME = "metadata.sqlite"
VECTORS_NAME = "vectors.f16"
VECTORS_FILE = "vectors-{generation}.f16"  # after a compaction (the generation it committed)
LOCK_NAME = "write.lock"
#: Rows per commit of ``add_vectors``: 16,384 x 1664-d float32 is 109 MB in flight.
VECTOR_BATCH = 16384
#: What a key may not hold: control characters, and lone surrogates (not storable as UTF-8).
_UNSHOWABLE = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")

#: Called with (files done, files to do) while ``index``/``add`` run.
ProgressFn = Callable[[int, int], None]

#: A write compacts the vector file once removed images hold more than this share of its rows
#: and at least ``COMPACT_MIN_ROWS`` rows (below that the space is not worth a rewrite).
COMPACT_SHARE = 0.5
COMPACT_MIN_ROWS = 1000


class EncoderMismatchError(ValueError):
    pass


@dataclass(frozen=True)
class ScanOptions:
    """How a folder is scanned; remembered per folder for later ``index`` runs."""

    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    follow_symlinks: bool = False

    def to_json(self) -> dict:
        return {"include": list(self.include), "exclude": list(self.exclude), "follow_symlinks": self.follow_symlinks}

    @classmethod
    def from_json(cls, saved: dict | None) -> ScanOptions:
        saved = saved or {}
        return cls(tuple(saved.get("include", ())), tuple(saved.get("exclude", ())), bool(saved.get("follow_symlinks")))


@dataclass
class IndexReport:
    """What one ``add``/``index`` run did, by file."""

    scanned: int = 0
    embedded: int = 0  # images that went through the model
    linked: int = 0  # new or changed files whose content was already known
    unchanged: int = 0  # same size and mtime as last time: not read
    skipped: int = 0  # unreadable now, or still the same unreadable file as last time
    removed: int = 0  # files gone from disk, dropped from the collection
    errors: list[tuple[str, str]] = field(default_factory=list)  # (path, reason) new this run

    @property
    def indexed(self) -> int:
        return self.embedded + self.linked


@dataclass
class AdaptReport:
    """What one ``adapt`` run learnt from; R@10 on the held-out captioned images before/after."""

    kind: str
    pairs: int  # captions used (captioned images found in the collection)
    missing: int  # captions whose image the collection does not hold
    version: int = 0
    holdout_images: int = 0
    before: float | None = None
    after: float | None = None
    seconds: float = 0.0


@dataclass(frozen=True)
class CollectionStats:
    path: str
    encoder: str
    encoder_version: str
    dim: int
    files: int
    images: int
    errors: int
    disk_bytes: int
    vector_bytes: int
    roots: list[str]
    codes: dict | None  # binary-code settings when codes are configured, else exact float search
    created: float | None
    updated: float | None
    excluded: list[str] = field(default_factory=list)  # removed paths that later index runs leave out


class Collection:
    """Open with :func:`glimpse.open`. Safe to search from many processes while one writes."""

    def __init__(self, path: Path, encoder: Encoder, meta: Metadata):
        self.path = path
        self.encoder = encoder
        self._meta = meta
        self._vectors = VectorStore(path / VECTORS_NAME, encoder.dim)
        self._lock = WriteLock(path / LOCK_NAME)
        self._index: SearchBackend | None = None
        self._index_generation = -1
        self._index_ids: set[int] = set()
        self._index_settings: CodeSettings | None = None  # the code settings the loaded index follows
        self._next_id = 0
        # Searches scan the in-memory index together (read side); a refresh changes it in
        # place, so it waits for them, and they for it (write side). See _fresh_index.
        self._index_lock = ReaderWriterLock()
        self._rows = 0  # committed vector rows, as last seen
        self._seen = -1  # generation whose vector layout and live ids were last loaded
        self._live = np.zeros(0, np.int64)  # live item ids as of ``_seen``
        self._adapter: tuple[int, TextAdapter] | None = None  # (version, map) of the loaded adaptation
        self._words = WordIndex(path / DB_NAME)  # words read in the images (glimpse.enrich.ocr)

    # -- lifecycle ----------------------------------------------------------------------
    def close(self) -> None:
        self._meta.close()
        self._words.close()

    def __enter__(self) -> Collection:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __len__(self) -> int:
        return self._meta.counts()["images"]

    # -- writing ------------------------------------------------------------------------
    def add(
        self,
        paths: Iterable[str | os.PathLike],
        *,
        prune: bool = False,
        include: Sequence[str] = (),
        exclude: Sequence[str] = (),
        follow_symlinks: bool = False,
        batch_size: int = 32,
        workers: int = 2,
        progress: ProgressFn | None = None,
        fit_progress: ProgressFn | None = None,
        ocr: bool = False,
    ) -> IndexReport:
        """Add image files and folders (recursively). Unchanged files are not read again.

        With ``prune``, files under ``paths`` that are gone from disk are dropped too. Folders
        are remembered with these scan options (a folder indexed before and given none keeps
        its own), for :meth:`index` without folders; adding a path again undoes its removal
        (see :meth:`remove`). ``fit_progress`` gets (steps done, steps) while binary codes are
        fitted at the end. With ``ocr``, the words in the images are read afterwards
        (:meth:`enrich`; ``progress`` then counts that pass too), while the new images are
        already searchable.
        """
        self._require_model()
        check_ingest(batch_size, workers)
        given = ScanOptions(tuple(include), tuple(exclude), follow_symlinks)
        report = self._ingest(self._targets(paths, given), prune, batch_size, workers, progress, fit_progress)
        if ocr:
            self.enrich(ocr=True, progress=progress)
        return report

    def enrich(self, *, ocr: bool = False, progress: ProgressFn | None = None):
        """Read the words in the images not read yet (OCR), for ``text:`` queries and text search.

        Each image's words are committed with its done marker: a killed run resumes where it
        stopped, and search works throughout. Returns an :class:`~glimpse.enrich.ocr.EnrichReport`.
        """
        from .enrich import ocr as ocr_pass

        if not ocr:
            raise ValueError("nothing to enrich: pass ocr=True (glimpse enrich --ocr)")
        reader = ocr_pass.rapidocr_reader()
        report = ocr_pass.EnrichReport()
        with self._lock:
            live = self._meta.item_ids()
            self._words.forget(live)
            read = set(self._words.read_items())
            report.already = len(read)
            files: dict[int, list[tuple[str, str]]] = {}
            for record in sorted(self._meta.file_records().values(), key=lambda r: r.path):
                if record.item_id not in read:
                    files.setdefault(record.item_id, []).append((record.path, record.hash))
            ocr_pass.run_pass(self._words, sorted(files.items()), reader, report, progress)
        return report

    def index(
        self,
        roots: Iterable[str | os.PathLike] | None = None,
        *,
        prune: bool = True,
        include: Sequence[str] = (),
        exclude: Sequence[str] = (),
        follow_symlinks: bool = False,
        batch_size: int = 32,
        workers: int = 2,
        progress: ProgressFn | None = None,
        fit_progress: ProgressFn | None = None,
        ocr: bool = False,
    ) -> IndexReport:
        """Bring the collection in line with folders: add new and changed files, drop gone ones
        (unless ``prune=False``).

        Without ``roots``, re-index the folders indexed before, each with the scan options it
        was last given (unless new ones are given here). Takes ``add``'s options.
        """
        self._require_model()
        if roots is None:
            roots = list(self.folders())
            if not roots:
                raise ValueError("this collection has no folders yet: give one to index")
        return self.add(roots, prune=prune, include=include, exclude=exclude, follow_symlinks=follow_symlinks,
                        batch_size=batch_size, workers=workers, progress=progress, fit_progress=fit_progress,
                        ocr=ocr)

    def _targets(self, paths: Iterable[str | os.PathLike], given: ScanOptions) -> list[tuple[str, ScanOptions]]:
        """Each path with the scan options to use: those given, else the folder's remembered ones."""
        kept = self.folders() if given == ScanOptions() else {}
        return [(path, kept.get(path, given)) for path in (str(absolute(p)) for p in paths)]

    def folders(self) -> dict[str, ScanOptions]:
        """The folders :meth:`index` re-indexes, with the scan options each was last given."""
        meta = self._meta.get_meta()
        saved = meta.get("folder_options", {})
        return {root: ScanOptions.from_json(saved.get(root)) for root in meta.get("roots", [])}

    def _require_model(self) -> None:
        if not self.has_files:
            raise ValueError("this collection holds precomputed vectors and has no model to embed images: "
                             "add vectors with add_vectors (glimpse import-vectors)")

    def remove(self, paths: Iterable[str | os.PathLike]) -> int:
        """Forget files (or everything under folders); returns how many files went.

        A path under a folder that is still indexed stays out of later :meth:`index` runs
        (listed in ``stats().excluded``) until it is added again; removing a folder that was
        indexed forgets the folder. In a collection of precomputed vectors, ``paths`` are keys,
        taken as given: a key also removes the keys under it (``shop`` removes ``shop/1``), as a
        folder would.
        """
        targets = [str(absolute(p)) if self.has_files else str(p) for p in paths]
        with self._lock:
            meta = self._meta.get_meta()
            roots = [r for r in meta.get("roots", []) if not _is_under(r, targets)]
            excluded = {e for e in meta.get("excluded", []) if not _is_under(e, targets)}
            doomed = sorted(self._meta.file_records(targets)) + [
                e.path for e in self._meta.error_records() if _is_under(e.path, targets)
            ]
            # Remembered when under a folder still indexed, and real (not a mistyped path).
            excluded |= {t for t in targets if any(t != r and _is_under(t, [r]) for r in roots)
                         and (os.path.lexists(t) or any(_is_under(d, [t]) for d in doomed))}
            # One transaction: the files go and the removal is remembered, or neither.
            generation, dropped = self._meta.remove_paths(
                doomed, roots=roots, excluded=sorted(excluded),
                folder_options={r: o for r, o in meta.get("folder_options", {}).items() if r in roots})
            self._apply(generation, [], None, dropped)
            self._compact_if_due()
        return len(doomed)

    def _ingest(self, targets: list[tuple[str, ScanOptions]], prune: bool, batch_size, workers, progress,
                fit_progress=None) -> IndexReport:
        for root, _ in targets:
            if not os.path.lexists(root):
                raise FileNotFoundError(f"no such file or folder: {shown(root)}")
        roots = [root for root, _ in targets]
        report = IndexReport()
        with self._lock:
            self._refresh()
            excluded = self._remember(targets)
            problems: dict[str, str] = {}
            entries = self._scan(targets, excluded, problems)
            report.scanned = len(entries)
            todo = self._plan(entries, report)
            self._record_problems(problems, report)
            if prune:
                # What lies under a folder that could not be read this time is not gone.
                self._prune(roots, excluded + list(problems), {str(e.path) for e in entries} | set(problems), report)
            self._embed(todo, report, batch_size, workers, progress)
            self._compact_if_due()
            self._fit_codes(progress=fit_progress)
            self._meta.set_meta(last_indexed=time.time())
            self._persist_index()
        return report

    def _remember(self, targets: list[tuple[str, ScanOptions]]) -> list[str]:
        """Record the folders with their scan options, and undo the removal of what is added
        again, in one transaction before anything is embedded (an interrupted first run still
        leaves its folders known). Returns the removals that still apply.

        Naming a path undoes the removals at or under it, unless it is a folder indexed before:
        re-indexing ``~/Photos`` keeps ``~/Photos/private`` out."""
        meta = self._meta.get_meta()
        known = meta.get("roots", [])
        added = [root for root, _ in targets if root not in known]
        folders = {root: options for root, options in targets if os.path.isdir(root)}
        excluded = [e for e in meta.get("excluded", []) if not _is_under(e, added)]
        self._meta.set_meta(
            roots=sorted(set(known) | set(folders)),
            folder_options={**meta.get("folder_options", {}), **{r: o.to_json() for r, o in folders.items()}},
            excluded=excluded,
        )
        return excluded

    @staticmethod
    def _scan(targets: list[tuple[str, ScanOptions]], excluded: list[str], problems: dict[str, str]) -> list[FileEntry]:
        """Every file under ``targets``, once, in order; what cannot be read goes to ``problems``."""
        entries: dict[Path, FileEntry] = {}
        for root, o in targets:
            for entry in scan([root], o.include, o.exclude, o.follow_symlinks, skip=excluded,
                              on_error=lambda path, reason: problems.setdefault(str(path), reason)):
                entries.setdefault(entry.path, entry)
        return list(entries.values())

    def _plan(self, entries: list[FileEntry], report: IndexReport) -> list[FileEntry]:
        """Keep only the files that are new, or changed since they were last seen."""
        known = self._meta.file_records()
        failed = {e.path: e for e in self._meta.error_records()}
        todo = []
        for entry in entries:
            path = str(entry.path)
            seen = known.get(path) or failed.get(path)
            if seen is not None and (seen.size, seen.mtime_ns) == (entry.size, entry.mtime_ns):
                if path in known:
                    report.unchanged += 1
                else:
                    report.skipped += 1
                continue
            todo.append(entry)
        return todo

    def _record_problems(self, problems: dict[str, str], report: IndexReport) -> None:
        """List what the scan could not read (link loops, dangling links, FIFOs, unreadable
        folders) with the files that could not be indexed; unchanged ones are not rewritten."""
        failed = {e.path: e.reason for e in self._meta.error_records()}
        new = [FileError(path, reason, *_lstat(path)) for path, reason in problems.items()
               if failed.get(path) != reason]
        report.skipped += len(problems)
        report.errors += [(e.path, e.reason) for e in new]
        if new:
            generation, dropped = self._meta.commit_batch([], [], new, int(self._meta.get_meta().get("rows", 0)))
            self._apply(generation, [], None, dropped)

    def _prune(self, roots: list[str], excluded: list[str], present: set[str], report: IndexReport) -> None:
        """Drop what the scan of ``roots`` (less ``excluded``) would have found but did not (gone from disk)."""
        def scanned(path: str) -> bool:
            # The deepest root or removal above a path decides, as in the scan.
            return _depth(path, roots) > _depth(path, excluded)

        gone = [p for p in self._meta.file_records(roots) if p not in present and scanned(p)]
        gone += [e.path for e in self._meta.error_records() if e.path not in present and scanned(e.path)]
        if gone:
            generation, dropped = self._meta.remove_paths(gone)
            self._apply(generation, [], None, dropped)
            report.removed = len(gone)

    def _embed(self, todo: list[FileEntry], report: IndexReport, batch_size, workers, progress) -> None:
        hashes = self._meta.hash_to_item()
        meta = self._meta.get_meta()
        rows = int(meta.get("rows", 0))
        self._next_id = int(meta.get("next_id", rows))  # ids are rows until a compaction
        done = 0
        prepared = prepare_files(
            todo,
            self.encoder.prepare,
            needs_decode=lambda h: h not in hashes,
            target=self.encoder.image_size,
            workers=workers,
        )
        for batch in batched(prepared, batch_size):
            rows = self._commit(batch, hashes, rows, report)
            done += len(batch)
            if progress:
                progress(done, len(todo))

    def _commit(self, batch: Sequence[Prepared], hashes: dict[str, int], rows: int, report: IndexReport) -> int:
        items: list[NewItem] = []
        arrays: list[np.ndarray] = []
        links: list[FileLink] = []
        errors: list[FileError] = []
        for p in batch:
            path, size, mtime = str(p.entry.path), p.entry.size, p.entry.mtime_ns
            new = p.array is not None and p.hash not in hashes
            if p.error is None and not new and p.hash not in hashes:
                p.error = "same content as a file that could not be read"
            if p.error is not None:
                errors.append(FileError(path, p.error, size, mtime))
                report.errors.append((path, p.error))
                report.skipped += 1
                continue
            if new:
                item = NewItem(self._next_id, p.hash, p.width, p.height, p.taken, row=rows + len(items))
                self._next_id += 1
                items.append(item)
                arrays.append(p.array)
                hashes[p.hash] = item.id
                report.embedded += 1
            else:
                report.linked += 1
            links.append(FileLink(path, p.hash, size, mtime))
        vectors = self.encoder.encode_prepared(np.stack(arrays)) if arrays else None
        rows, dropped = self._commit_rows(rows, items, vectors, links, errors)
        if dropped:  # rare: a changed file left its old content unshown
            gone = set(dropped)
            for h in [h for h, i in hashes.items() if i in gone]:
                del hashes[h]
        return rows

    def _commit_rows(self, rows: int, items: Sequence[NewItem], vectors: np.ndarray | None,
                     links: Sequence[FileLink], errors: Sequence[FileError] = ()) -> tuple[int, list[int]]:
        """Make one batch visible: its vectors durable in the vector file first, then one SQLite
        transaction (a kill in between leaves only unreferenced rows past the end), then the
        loaded index. Returns the new row count and the ids of the items no path shows any more."""
        if vectors is not None:
            # Round to the stored precision so this process ranks exactly as a reader will.
            vectors = np.asarray(vectors).astype(VectorStore.DTYPE).astype(np.float32)
            self._vectors.write(rows, vectors)
        rows += len(items)
        generation, dropped = self._meta.commit_batch(items, links, errors, rows)
        self._rows = rows
        self._apply(generation, [it.id for it in items], vectors, dropped)
        return rows, dropped

    def add_vectors(self, vectors: npt.ArrayLike, keys: Sequence[str], *, batch_size: int = VECTOR_BATCH,
                    progress: ProgressFn | None = None) -> np.ndarray:
        """Add embeddings computed elsewhere, one per key; returns their item ids (int64, in order).

        Only for a collection opened with ``encoder="precomputed", dim=D``. ``vectors`` is any
        (n, D) float array (a ``numpy.load(..., mmap_mode="r")`` map is read batch by batch, so
        it need not fit in RAM). Rows must be finite and not all zero; each is L2-normalised on
        the way in, because search ranks by inner product and reports it as a cosine.
        ``keys`` are the user's names for the rows, unique non-empty strings, shown where an
        image collection shows paths (filters match them with ``path_glob``/``path_prefix``).
        A key the collection already holds gets the new vector, under a new id.

        Everything is checked before anything is written. Then, like ``add``, every
        ``batch_size`` rows are made durable in the vector file and visible in one SQLite
        transaction, so a kill leaves the batches committed before it.
        """
        if self.has_files:
            raise ValueError(f"add_vectors needs a collection of precomputed vectors (encoder='precomputed'); "
                             f"this one embeds image files with {self.encoder.name}: index them instead")
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        keys = _checked_keys(keys)
        vectors = vectors if isinstance(vectors, np.ndarray) else np.asarray(vectors)
        if vectors.ndim != 2 or vectors.shape[1] != self.encoder.dim or len(vectors) != len(keys):
            raise ValueError(f"expected vectors of shape ({len(keys)}, {self.encoder.dim}) (one {self.encoder.dim}-d "
                             f"row per key), got {vectors.shape}")
        for start in range(0, len(keys), batch_size):
            _unit_rows(vectors[start : start + batch_size], start)  # refuse bad rows before any write
        ids = np.empty(len(keys), np.int64)
        with self._lock:
            self._refresh()
            rows = int(self._meta.get_meta().get("rows", 0))
            for start in range(0, len(keys), batch_size):
                batch = _unit_rows(vectors[start : start + batch_size], start)
                items = [NewItem(rows + i, f"vector:{rows + i}", 0, 0) for i in range(len(batch))]
                links = [FileLink(key, item.hash, 0, 0) for key, item in zip(keys[start : start + len(batch)], items)]
                ids[start : start + len(batch)] = [item.id for item in items]
                rows, _ = self._commit_rows(rows, items, batch, links)
                if progress:
                    progress(start + len(batch), len(keys))
            self._fit_codes()
            self._persist_index()
        return ids

    @property
    def has_files(self) -> bool:
        """False for a collection of precomputed vectors: its items are keys, with no image file."""
        return self.encoder.name != PRECOMPUTED

    # -- index maintenance ----------------------------------------------------------------
    def _apply(self, generation: int, ids: list[int], vectors: np.ndarray | None, dropped: list[int]) -> None:
        """Mirror a commit of this process in the in-memory index, if one is loaded."""
        if self._index is None:
            return
        if self._index_generation != generation - 1:
            self._refresh()  # another writer came in between: resync from disk
            return
        if ids:
            self._index.add(np.asarray(ids), vectors)
            self._index_ids.update(ids)
        if dropped:
            self._index.remove(np.asarray(dropped))
            self._index_ids.difference_update(dropped)
        self._index_generation = generation

    def _sync(self) -> None:
        """Follow the committed state (other processes write): the vector file, each item's row
        in it and the live ids, read in one snapshot. A compaction may delete the file just
        named before it is opened: then the snapshot is read again."""
        if self._meta.generation() == self._seen:
            return
        for attempt in range(3):
            meta, pairs = self._meta.snapshot()
            table = np.array(pairs, dtype=np.int64).reshape(-1, 2)
            self._vectors.locate(self.path / meta.get("vectors", VECTORS_NAME), table[:, 0], table[:, 1])
            self._rows = int(meta.get("rows", 0))
            try:
                self._vectors.view(self._rows)
            except FileNotFoundError:
                if attempt == 2:
                    raise
                continue
            self._live, self._seen = table[:, 0], int(meta.get("generation", 0))
            return

    def _refresh(self) -> None:
        """Bring the loaded index up to the committed state (other processes may write)."""
        self._sync()
        if self._index is None or self._index_generation == self._seen:
            return
        live = set(self._live.tolist())
        new = np.array(sorted(live - self._index_ids), dtype=np.int64)
        gone = np.array(sorted(self._index_ids - live), dtype=np.int64)
        for chunk in range(0, len(new), 65536):
            ids = new[chunk : chunk + 65536]
            self._index.add(ids, self._vectors.read(ids, self._rows))
        if len(gone):
            self._index.remove(gone)
        self._index_ids = live
        self._index_generation = self._seen

    def _ensure_index(self) -> SearchBackend:
        settings = self._code_settings()
        if self._index is not None and settings != self._index_settings:
            self._index = None  # the code settings changed (perhaps in another process)
        if self._index is None:
            self._sync()
            self._index = open_backend(self.path, self.encoder.dim, settings, self._binarizer(settings),
                                       self._read_stored, len(self._live))
            self._index_ids = set(self._index.ids().tolist())
            self._index_generation, self._index_settings = -1, settings
        self._refresh()
        return self._index

    def _read_vectors(self, ids: np.ndarray) -> np.ndarray:
        return self._vectors.read(ids, self._rows)

    def _read_stored(self, ids: np.ndarray) -> np.ndarray:
        """float16 as stored: the re-rank scores them without a float32 copy."""
        return self._vectors.read(ids, self._rows, np.float16)

    def _persist_index(self) -> None:
        if self._index is not None:
            self._index.persist(self.path, self._index_generation)

    # -- the vector file -------------------------------------------------------------------
    def compact(self) -> int:
        """Rewrite the vector file without the rows of removed images; returns the rows reclaimed.

        Writes also do this on their own once removed images hold more than half of the rows
        (``COMPACT_SHARE``, ``COMPACT_MIN_ROWS``). Item ids do not change.
        """
        with self._lock:
            return self._compact()

    def _compact_if_due(self) -> None:
        self._sync()
        dead = self._rows - len(self._live)
        if dead >= COMPACT_MIN_ROWS and dead > COMPACT_SHARE * self._rows:
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
        """Vector files the metadata no longer names: replaced ones, and those of killed compactions."""
        for old in self.path.glob("vectors*.f16"):
            if old != self._vectors.path:
                old.unlink(missing_ok=True)

    # -- binary codes -------------------------------------------------------------------
    def use_codes(self, binarizer: str | None = DEFAULT_BINARIZER, bits: int | None = None,
                  oversample: int | None = None, seed: int = 0,
                  scoring: str = "auto", rerank: bool = True, progress: ProgressFn | None = None) -> None:
        """Search through compact codes (code scan, then exact float re-rank).

        ``binarizer`` picks the codes: ``ivf-rabitq`` (the default: coarse lists and RaBitQ
        residual codes, see :mod:`glimpse.index.ivfcodes`), ``learned``, ``itq`` or ``sign``
        (one binary code per image, see :mod:`glimpse.index.binary`); ``bits`` and
        ``oversample`` default per kind (:func:`glimpse.codes.default_bits`).

        The binarizer is fitted on the collection's own vectors now, or at the end of the
        next ``add``/``index`` when there are too few of them yet, and re-fitted when the
        collection has doubled since. ``scoring`` picks how the codes are scanned (see
        :mod:`glimpse.backends.binary`): ``hamming``, ``cascade`` (Hamming, then the float query
        against the codes), ``asymmetric`` (float query against every code), or ``auto``:
        asymmetric for text queries, whose codes would be far from every image's, cascade
        for the rest. Without
        ``rerank``, results keep their code scores and the float vectors are never read.
        Each of these can be changed per query in :meth:`search`. ``binarizer=None`` (or
        ``"none"``) switches codes off: exact float search.

        Every option is checked first (ValueError). The settings change in one commit, after
        the new binarizer is fitted and saved: an interrupted change leaves the old settings,
        whole. ``progress`` gets (steps done, steps) while a binarizer fits.
        """
        if binarizer is None or binarizer == "none":
            with self._lock:
                self._meta.delete_meta("codes")
                self._index = None
                self._drop_stale_fits(None)
            return
        settings = CodeSettings(binarizer, bits, oversample, seed, scoring, rerank).validate(self.encoder.dim)
        with self._lock:
            current = self._code_settings()
            if current is not None and current.same_codes(settings) and self._binarizer(current) is not None:
                settings = settings.fitted(current.fit, current.file, current.fitted_on)  # no need to re-fit
            self._fit_codes(settings, progress)
            self._persist_index()

    def _code_settings(self) -> CodeSettings | None:
        return CodeSettings.from_meta(self._meta.get_meta().get("codes"))

    def _binarizer(self, settings: CodeSettings | None) -> Binarizer | None:
        """The fitted binarizer ``settings`` name, if its file holds that very fit."""
        if settings is None or settings.file is None:
            return None
        try:
            binarizer = load_binarizer(self.path / settings.file)
        except (FileNotFoundError, ValueError):  # deleted by a newer fit, or damaged: not usable
            return None
        if binarizer.dim != self.encoder.dim or settings.fit not in (None, binarizer.fit_id):
            return None
        return binarizer

    def _fit_codes(self, settings: CodeSettings | None = None, progress: ProgressFn | None = None) -> None:
        """Fit (or re-fit) the binarizer when it is due, then switch the settings to it.

        Under the write lock. ``settings``: new settings to store (default: the stored ones).
        The binarizer file (named by its fit id) is durable before the one metadata commit
        that names it, and other fits' files go only after that commit, so a kill at any
        moment leaves settings whose binarizer is on disk. Codes are derived state: codes of
        another fit are never scanned, and missing ones are rebuilt from the vector file.
        """
        stored = self._code_settings()
        settings = settings or stored
        if settings is None:
            self._drop_stale_fits(None)  # codes switched off by a change that was killed halfway
            return
        self._sync()
        binarizer = create_binarizer(settings.binarizer, bits=settings.bits, seed=settings.seed)
        enough = len(self._live) >= binarizer.min_fit_vectors(self.encoder.dim)
        fitted = self._binarizer(settings) is not None
        if enough and (not fitted or len(self._live) >= 2 * settings.fitted_on):
            rng = np.random.default_rng(settings.seed)
            sample = np.sort(rng.choice(self._live, size=min(len(self._live), 100_000), replace=False))
            binarizer.fit(self._read_vectors(sample), progress)
            name = BINARIZER_FILE.format(fit=binarizer.fit_id)
            binarizer.save(self.path / name)
            settings = settings.fitted(binarizer.fit_id, name, len(self._live))
        elif not fitted:
            settings = settings.unfitted()  # too few images yet: exact float search meanwhile
        if settings != stored:
            self._meta.set_meta(codes=settings.to_meta())
        if settings.file is not None:
            self._ensure_index()  # this fit's codes, to persist for the current generation
        self._drop_stale_fits(settings)

    def _drop_stale_fits(self, settings: CodeSettings | None) -> None:
        """Binarizer and codes files the committed settings do not name."""
        keep = settings.file if settings is not None else None
        for old in self.path.glob("binarizer*.npz"):
            if old.name != keep:
                old.unlink(missing_ok=True)
        for half_written in [*self.path.glob(".binarizer*.tmp"), *self.path.glob("codes-*.tmp")]:  # killed saves
            half_written.unlink(missing_ok=True)
        if keep is None:
            for old in self.path.glob("codes-*.faissbin"):
                old.unlink(missing_ok=True)

    # -- reading ------------------------------------------------------------------------
    def search(
        self,
        text: str | SearchRequest | None = None,
        image: ImageLike | None = None,
        *,
        vector: np.ndarray | None = None,
        like: int | None = None,
        terms: str | list[tuple[object, float]] | None = None,
        alpha: float | None = None,
        filters: Filter | None = None,
        min_score: float | None = None,
        refine: str | None = None,
        k: int = 10,
        exact: bool = False,
        oversample: int | None = None,
        rerank: bool | None = None,
        scoring: str | None = None,
        adapted: bool = True,
        fusion: str = "calibrated",
    ) -> list[SearchResult]:
        """Top-``k`` images for a query, best first, each with its cosine score.

        The query is one of: ``text``; ``image`` (path, bytes or Pillow image); both, a
        composed query ``norm((1 - alpha) * image + alpha * text)``; a raw ``vector``; ``like``,
        an item id (more like this one, itself left out); or ``terms``, a query-language string
        or ``[(term, weight)]`` (see :mod:`glimpse.query.language`). A composed query leaves
        out its reference image when the collection holds it.

        ``filters`` restrict the candidates before ranking, so ``k`` results come back when
        ``k`` images match. ``min_score`` drops weaker results. ``refine`` re-ranks the top
        candidates: ``"aqe"`` or ``"superglobal"`` (off by default: neither helped in
        measurements, see benchmarks/QUERY_NOTES.md). ``adapted=False`` ignores the caption
        adaptation (``glimpse adapt``) for this query. With binary codes in use,
        ``oversample``, ``rerank`` and ``scoring`` tune the two stages for this query, and
        ``exact`` scans every float vector instead (the reference). The work one query may ask
        for is bounded (``k`` <= 1000, 64 terms, ...: :mod:`glimpse.query.limits`); beyond it,
        and for any malformed input, this raises ValueError. Many threads may search at once;
        a thread that writes (``add``, ``remove``, ...) needs its own Collection, as in the server.

        Once the words in the images were read (:meth:`enrich`), a ``text`` query also ranks by
        them: ``fusion`` is ``"calibrated"`` (cosine plus a bounded bonus for the query's words
        found in the picture), ``"rrf"`` or ``"none"`` (see :mod:`glimpse.query.fusion`).
        ``text:"..."`` terms match those words only, and ``Filter(has_text=True)`` keeps the
        images with words.

        A :class:`~glimpse.query.request.SearchRequest` may be given instead of these arguments:
        ``col.search(SearchRequest(text="a cat", k=5))``.
        """
        request = _request(text, SearchRequest(
            image=image, vector=vector, like=like, terms=terms, alpha=alpha, filters=filters, min_score=min_score,
            refine=refine, k=k, exact=exact, oversample=oversample, rerank=rerank, scoring=scoring, adapted=adapted,
            fusion=fusion))
        return self._search(request)

    def _search(self, request: SearchRequest) -> list[SearchResult]:
        k, filters, min_score, fusion = request.k, request.filters, request.min_score, request.fusion
        terms, phrases = split_word_terms(request.terms)
        if phrases and terms is None:
            return self._search_words(phrases, filters, k, min_score)
        # Searches run in parallel (the server answers each request on its own thread): the
        # query's encoding (the model: most of a text or image query's time), the filters' SQL
        # and refinement take no lock, and backend scans share theirs; only a refresh after a
        # commit makes them wait (benchmarks/parallel_search.py measures it).
        sources = QuerySources(self._item_vector, self._meta.item_for_hash,
                               self._text_map() if request.adapted else None)
        query = build_query(self.encoder, sources, text=request.text, image=request.image, vector=request.vector,
                            like=request.like, terms=terms, alpha=request.alpha)
        allowed = self._allowed(filters, phrases)
        if allowed is not None:
            allowed = np.setdiff1d(allowed, np.array(sorted(query.exclude), dtype=np.int64))
            if not len(allowed):
                return []
        lexical = (self._word_hits(request.text, allowed, query.exclude)
                   if query.kind == "text" and fusion != "none" else [])
        want = max(k, CANDIDATES) if request.refining else k
        want = max(want, fuse.RRF_DEPTH) if lexical and fusion == "rrf" else want
        want += 0 if allowed is not None else len(query.exclude)
        with self._fresh_index() as index:
            stage = request.stage(self._index_settings, text_only=query.text_only)
            scores, ids = index.search(query.vector.reshape(1, -1), want, allowed=allowed, stage=stage)
        keep = [(int(i), float(s)) for i, s in zip(ids[0], scores[0]) if i >= 0 and int(i) not in query.exclude]
        if request.refining and len(keep) > 1:
            new_ids, new_scores = refine_candidates(
                request.refine, query.vector, np.array([i for i, _ in keep]), np.array([s for _, s in keep]),
                self._read_vectors)
            keep = list(zip(new_ids.tolist(), new_scores.tolist()))
        if lexical:
            keep = fuse.reciprocal_rank(keep, lexical) if fusion == "rrf" else fuse.calibrated(
                keep, lexical, lambda ids: self._read_vectors(ids) @ query.vector)
        hits = [(i, s) for i, s in keep[:k] if min_score is None or s >= min_score]
        paths = self._meta.paths_for([i for i, _ in hits])
        return [SearchResult(i, paths[i], s) for i, s in hits if i in paths]

    def _allowed(self, filters: Filter | None, phrases: list[Phrase]) -> np.ndarray | None:
        """The item ids that filters and ``text:`` phrases let through; None when all pass."""
        allowed = None
        if filters is not None and not filters.is_empty():
            conditions = filters.conditions() if self.has_files else filters.key_conditions()
            allowed = np.array(self._meta.matching_items(conditions), dtype=np.int64)
            if filters.has_text is not None:
                with_text = np.array(self._words.items_with_text(), dtype=np.int64)
                allowed = (np.intersect1d if filters.has_text else np.setdiff1d)(allowed, with_text)
        for phrase, sign in phrases:
            found = np.array([h.item_id for h in self._words.search(phrase, phrase=True)], dtype=np.int64)
            if sign > 0:
                allowed = found if allowed is None else np.intersect1d(allowed, found)
            else:
                allowed = np.setdiff1d(np.array(self._meta.item_ids(), dtype=np.int64) if allowed is None else allowed, found)
        return allowed

    def _word_hits(self, text: str, allowed: np.ndarray | None, exclude: set[int]) -> list[WordHit]:
        """Matches of a text query in the words read in the images, best first (BM25)."""
        hits = self._words.search(fuse.lexical_text(text), limit=None if allowed is not None or exclude else fuse.RRF_DEPTH)
        keep = set(allowed.tolist()) if allowed is not None else None
        return [h for h in hits if h.item_id not in exclude and (keep is None or h.item_id in keep)][:fuse.RRF_DEPTH]

    def _search_words(self, phrases: list[Phrase], filters: Filter | None, k: int,
                      min_score: float | None) -> list[SearchResult]:
        """A query of ``text:`` terms only: images whose words hold the phrases, by BM25."""
        allowed = self._allowed(filters, phrases)
        scores: dict[int, float] = {}
        for phrase, sign in phrases:
            if sign > 0:
                for hit in self._words.search(phrase, phrase=True):
                    scores[hit.item_id] = scores.get(hit.item_id, 0.0) + hit.bm25
        if not scores:  # only negative phrases: every other image, in id order
            scores = dict.fromkeys(allowed.tolist() if allowed is not None else self._meta.item_ids(), 0.0)
        keep = set(allowed.tolist()) if allowed is not None else set(scores)
        ranked = sorted(((i, s) for i, s in scores.items() if i in keep), key=lambda x: (-x[1], x[0]))
        hits = [(i, s) for i, s in ranked[:k] if min_score is None or s >= min_score]
        paths = self._meta.paths_for([i for i, _ in hits])
        return [SearchResult(i, paths[i], s) for i, s in hits if i in paths]

    def item(self, item_id: int) -> ItemInfo:
        """An item's files, size in pixels and bytes, modification time, and the words read in it."""
        info = self._meta.item_info(item_id) if 0 <= item_id <= MAX_ID else None
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
        files = self._meta.item_files(item_id) if 0 <= item_id <= MAX_ID else []
        if not files:
            raise KeyError(f"no item {item_id} in this collection")
        allowed = [*self._meta.get_meta().get("roots", []), *roots]
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

    def _item_vector(self, item_id: int) -> np.ndarray:
        with self._fresh_index():
            known = item_id in self._index_ids
        if not known:
            raise ValueError(f"no item #{item_id} in this collection")
        return self._read_vectors(np.array([item_id], dtype=np.int64))[0]

    # -- caption adaptation ---------------------------------------------------------------
    def adapt(
        self,
        captions: str | os.PathLike | None = None,
        *,
        kind: str = "contrastive",
        holdout: float = 0.2,
        seed: int = 0,
        progress: ProgressFn | None = None,
    ) -> AdaptReport:
        """Learn how this collection's captions word things, so text queries find its images.

        ``captions``: a TSV (``image<TAB>caption``, paths relative to the TSV); without it,
        sidecar ``photo.jpg.txt``/``photo.txt`` (or XMP ``dc:description``) files next to the indexed images. A seeded
        ``holdout`` share of the captioned images is first kept out to report R@10 before and
        after on them; the stored map is then trained on every pair. Replaces any earlier map.
        """
        started = time.perf_counter()
        if not 0.0 <= holdout < 1.0:
            raise ValueError("holdout must be in [0, 1)")
        if kind not in ADAPT_KINDS:
            raise ValueError(f"unknown adaptation {kind!r}: use one of {', '.join(ADAPT_KINDS)}")
        # The lock first: a second writer must hear "locked" now, not after minutes of training.
        with self._lock:
            report = self._adapt(captions, kind, holdout, seed, progress)
        report.seconds = time.perf_counter() - started
        return report

    def _adapt(self, captions, kind: str, holdout: float, seed: int, progress: ProgressFn | None) -> AdaptReport:
        pairs = read_captions(captions) if captions is not None else [
            (Path(p), text) for p in sorted(self._meta.file_records()) if (text := sidecar_caption(p))]
        ids, texts, missing = [], [], 0
        for path, text in pairs:
            item = self._meta.item_for_path(str(path))
            if item is None:
                missing += 1
            else:
                ids.append(item)
                texts.append(text)
        if not ids:
            where = f"in {captions}" if captions is not None else "as .txt or .xmp files next to the indexed images"
            raise ValueError(f"no captioned image {where} is in this collection"
                             + (f" ({missing} captions name images it does not hold: index them first)" if missing else ""))
        self._ensure_index()
        ids_arr = np.array(ids, dtype=np.int64)
        text_vectors = self.encoder.encode_texts(texts)
        image_vectors = self._read_vectors(ids_arr)
        report = AdaptReport(kind=kind, pairs=len(ids), missing=missing)
        items = np.unique(ids_arr)
        held = np.random.default_rng(seed).random(len(items)) < holdout
        test = np.isin(ids_arr, items[held])
        if holdout and test.any() and (~test).sum() >= MIN_PAIRS:
            trial = fit_adapter(text_vectors[~test], image_vectors[~test], kind, seed)
            gallery = items[held]
            relevant = np.searchsorted(gallery, ids_arr[test])
            gallery_vectors = self._read_vectors(gallery)
            report.holdout_images = len(gallery)
            report.before = recall_at_k(text_vectors[test] @ gallery_vectors.T, relevant, 10)
            report.after = recall_at_k(trial(text_vectors[test]) @ gallery_vectors.T, relevant, 10)
        adapter = fit_adapter(text_vectors, image_vectors, kind, seed, progress)
        version = int(self._meta.get_meta().get("adapt", {}).get("version", 0)) + 1
        name = f"adapt-{version}.npz"
        adapter.save(self.path / name)
        previous = self._meta.get_meta().get("adapt")
        self._meta.set_meta(adapt={
            "version": version, "file": name, "kind": kind, "format": ADAPT_FORMAT,
            "pairs": len(ids), "trained": time.time(), "holdout_r10": [report.before, report.after],
        })
        if previous:
            (self.path / previous["file"]).unlink(missing_ok=True)
        report.version = version
        return report

    def remove_adapt(self) -> bool:
        """Forget the caption adaptation; text queries go back to the plain encoder. True if one was there."""
        with self._lock:
            previous = self._meta.get_meta().get("adapt")
            if not previous:
                return False
            self._meta.delete_meta("adapt")
            (self.path / previous["file"]).unlink(missing_ok=True)
        return True

    def _text_map(self) -> TextAdapter | None:
        config = self._meta.get_meta().get("adapt")
        if not config:
            return None
        if self._adapter is None or self._adapter[0] != config["version"]:
            self._adapter = (config["version"], TextAdapter.load(self.path / config["file"]))
        return self._adapter[1]

    def item_ids(self) -> list[int]:
        """Ids of every image in the collection, ascending."""
        return self._meta.item_ids()

    def errors(self, limit: int | None = None):
        """Files that could not be indexed, newest first, with the reason."""
        return self._meta.error_records(limit)

    def stats(self) -> CollectionStats:
        self._sync()
        meta = self._meta.get_meta()
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
            roots=meta.get("roots", []),
            codes=meta.get("codes"),
            created=meta.get("created"),
            updated=meta.get("updated"),
            excluded=meta.get("excluded", []),
        )


def _request(first: str | SearchRequest | None, rest: SearchRequest) -> SearchRequest:
    """The request of a ``search`` call: one given whole, or the arguments as one."""
    if not isinstance(first, SearchRequest):
        return replace(rest, text=first)
    if rest.given():
        raise ValueError(f"give a SearchRequest alone, not with other arguments ({', '.join(sorted(rest.given()))})")
    return first


def batched(items: Iterable, n: int):
    """``itertools.batched`` (Python 3.12+) for 3.11."""
    it = iter(items)
    while chunk := tuple(islice(it, n)):
        yield chunk


def _checked_keys(keys: Sequence[str]) -> list[str]:
    """The keys of ``add_vectors`` as a list, or a ValueError naming the first bad one."""
    if isinstance(keys, (str, bytes)):
        raise ValueError("keys must be a list of strings, one per vector, not one string")
    keys = list(keys)
    seen: set[str] = set()
    for row, key in enumerate(keys):
        if not isinstance(key, str) or not key:
            raise ValueError(f"key {row} must be a non-empty string, got {key!r}")
        if key in seen:
            raise ValueError(f"key {key!r} is given twice (rows {keys.index(key)} and {row}): each vector needs its own key")
        seen.add(key)
    bad = next((row for row, key in enumerate(keys) if _UNSHOWABLE.search(key)), None)
    if bad is not None:
        raise ValueError(f"key {bad} ({keys[bad]!r}) holds control characters or invalid Unicode: keys are shown as paths")
    return keys


def _unit_rows(batch, first_row: int) -> np.ndarray:
    """float32 rows of unit length, or a ValueError naming the first unusable row."""
    with np.errstate(over="ignore", invalid="ignore"):  # too large for float32 -> inf, refused below
        x = np.asarray(batch, dtype=np.float32)
    bad = ~np.isfinite(x).all(axis=1)
    if bad.any():
        raise ValueError(f"vector {first_row + int(np.argmax(bad))} holds NaN or infinite values "
                         "(or numbers too large for float32)")
    peak = np.abs(x).max(axis=1, keepdims=True)
    if (peak == 0).any():
        raise ValueError(f"vector {first_row + int(np.argmax(peak[:, 0] == 0))} is all zeros: it has no direction to search by")
    return l2_normalize(x / peak)  # scaled first, so squaring cannot overflow


def _is_under(path: str, roots: Sequence[str]) -> bool:
    return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)


def _depth(path: str, above: Sequence[str]) -> int:
    """Length of the longest of ``above`` that is ``path`` or a folder holding it; -1 if none."""
    return max((len(a) for a in above if _is_under(path, [a])), default=-1)


def _lstat(path: str) -> tuple[int, int]:
    """Size and mtime of the path itself (a link, not its target); zeros if it is gone."""
    try:
        st = os.lstat(path)
    except OSError:
        return 0, 0
    return st.st_size, st.st_mtime_ns


def open_collection(
    path: str | os.PathLike,
    encoder: str | Encoder | None = None,
    *,
    create: bool = True,
    **encoder_options,
) -> Collection:
    """Open (or create) the collection in directory ``path``.

    ``encoder`` is a registered name or an :class:`Encoder`; by default, the one the
    collection was built with, or the default encoder for a new collection. Opening a
    collection with a different encoder than the one that filled it is an error: their
    vectors are not comparable.
    """
    root = Path(path).expanduser().absolute()
    db_path = root / DB_NAME
    if not db_path.exists():
        if not create:
            raise FileNotFoundError(f"no glimpse collection at {root} (create one with `glimpse index FOLDER`)")
        if not isinstance(encoder, Encoder):  # a bad name or option, or weights that cannot load, fail before anything is created
            encoder = create_encoder(encoder or DEFAULT_ENCODER, **encoder_options)
        root.mkdir(parents=True, exist_ok=True)
    meta = Metadata(db_path)
    try:
        encoder = _open_encoder(root, meta, encoder, encoder_options)
    except BaseException:
        meta.close()
        raise
    return Collection(root, encoder, meta)


def _open_encoder(root: Path, meta: Metadata, encoder: str | Encoder | None, options: dict) -> Encoder:
    """The collection's encoder: the one asked for, checked against the one that filled it.

    Without an encoder or model options, the recorded ones rebuild the same encoder; options
    given now (other weights, a device) override them. The weights' fingerprint in the
    encoder's version decides: the same weights from a moved file are accepted (and the new
    path recorded), other weights are refused.
    """
    recorded = meta.get_meta()
    if "encoder" not in recorded:
        if not isinstance(encoder, Encoder):
            encoder = create_encoder(encoder or DEFAULT_ENCODER, **options)
        meta.set_meta(
            encoder=encoder.name, encoder_version=encoder.version, dim=encoder.dim,
            rows=0, generation=0, created=time.time(),
            **({"encoder_options": encoder.options} if encoder.options else {}),
        )
        return encoder
    want = EncoderInfo(recorded["encoder"], recorded["dim"], recorded["encoder_version"])
    want_options = recorded.get("encoder_options", {})
    if encoder is None:
        encoder = want.name
    # Compare names before building: a model can take seconds to construct.
    name = encoder.name if isinstance(encoder, Encoder) else encoder
    if name != want.name:
        raise _mismatch(root, want, want_options, encoder)
    if not isinstance(encoder, Encoder):
        encoder = create_encoder(encoder, **{**want_options, **options})
    if encoder.info != want:  # same name, other weights or another version of the model
        raise _mismatch(root, want, want_options, encoder)
    if encoder.options and encoder.options != want_options:
        meta.set_meta(encoder_options=encoder.options)
    return encoder


def _mismatch(root: Path, want: EncoderInfo, want_options: dict, got: Encoder | str) -> EncoderMismatchError:
    def described(name: str, version: str, dim: int, options: dict) -> str:
        chosen = "".join(f", {k} {v}" for k, v in options.items())
        return f"{name} v{version} ({dim}-d{chosen})"

    have = described(got.name, got.version, got.dim, got.options) if isinstance(got, Encoder) else got
    return EncoderMismatchError(
        f"collection {root} was built with encoder {described(want.name, want.version, want.dim, want_options)}, "
        f"not {have}: their vectors are not comparable. "
        "Open it with its own encoder, or index into a new collection."
    )
