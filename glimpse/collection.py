"""A collection: one directory holding metadata, vectors and the search index.

Data flows one way: files -> ingest (scan, read, hash, decode) -> encoder -> vector file
-> metadata commit -> search index. Each batch becomes visible in one SQLite transaction
after its vectors are durable, so a kill at any moment leaves the last committed state.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from itertools import islice
from pathlib import Path

import numpy as np

from .encoders import DEFAULT_ENCODER, Encoder, EncoderInfo, create_encoder
from .codes import create_binarizer, load_binarizer
from .index import FlatIndex, Metadata, VectorIndex, VectorStore, WriteLock
from .index.binary import BINARIZER_FILE, SCORINGS, BinaryIndex, ivf_lists
from .index.lexical import WordHit, WordIndex
from .index.metadata import FileError, FileLink, ItemInfo, NewItem
from .ingest import FileEntry, Prepared, prepare_files, scan
from .query import ImageLike, SearchResult
from .eval.metrics import recall_at_k
from .query.adapt import FORMAT as ADAPT_FORMAT, MIN_PAIRS, TextAdapter, fit_adapter, read_captions, sidecar_caption
from .query.build import QuerySources, build_query
from .query.filters import Filter
from .query import fusion as fuse
from .query.words import Phrase, split_word_terms
from .query.rerank import CANDIDATES, REFINES, refine as rerank_candidates

DB_NAME = "metadata.sqlite"
VECTORS_NAME = "vectors.f16"
LOCK_NAME = "write.lock"

#: Called with (files done, files to do) while ``index``/``add`` run.
ProgressFn = Callable[[int, int], None]


class EncoderMismatchError(ValueError):
    pass


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


class Collection:
    """Open with :func:`glimpse.open`. Safe to search from many processes while one writes."""

    def __init__(self, path: Path, encoder: Encoder, meta: Metadata):
        self.path = path
        self.encoder = encoder
        self._meta = meta
        self._vectors = VectorStore(path / VECTORS_NAME, encoder.dim)
        self._lock = WriteLock(path / LOCK_NAME)
        self._index: VectorIndex | None = None
        self._index_generation = -1
        self._index_ids: set[int] = set()
        self._rows = 0  # committed vector rows, as last seen
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
        ocr: bool = False,
    ) -> IndexReport:
        """Add image files and folders (recursively). Unchanged files are not read again.

        With ``prune``, files under ``paths`` that are gone from disk are dropped too. With
        ``ocr``, the words in the images are read afterwards (:meth:`enrich`; ``progress`` then
        counts that pass too), while the new images are already searchable.
        """
        report = self._ingest(paths, include, exclude, follow_symlinks, prune, batch_size, workers, progress)
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

    def index(self, roots: Iterable[str | os.PathLike] | None = None, **options) -> IndexReport:
        """Bring the collection in line with folders: add new and changed files, drop gone ones.

        Without ``roots``, re-index the folders indexed before. Takes ``add``'s options.
        """
        if roots is None:
            roots = self._meta.get_meta().get("roots", [])
            if not roots:
                raise ValueError("this collection has no folders yet: give one to index")
        return self.add(roots, prune=True, **options)

    def remove(self, paths: Iterable[str | os.PathLike]) -> int:
        """Forget files (or everything under folders); returns how many files went."""
        targets = [str(Path(p).expanduser().absolute()) for p in paths]
        with self._lock:
            doomed = sorted(self._meta.file_records(targets)) + [
                e.path for e in self._meta.error_records() if _is_under(e.path, targets)
            ]
            if doomed:
                generation, dropped = self._meta.remove_paths(doomed)
                self._apply(generation, [], None, dropped)
        return len(doomed)

    def _ingest(self, paths, include, exclude, follow_symlinks, prune, batch_size, workers, progress) -> IndexReport:
        roots = [str(Path(p).expanduser().absolute()) for p in paths]
        for root in roots:
            if not os.path.exists(root):
                raise FileNotFoundError(f"no such file or folder: {root}")
        report = IndexReport()
        with self._lock:
            self._refresh()
            entries = list(scan(roots, include, exclude, follow_symlinks))
            report.scanned = len(entries)
            todo = self._plan(entries, report)
            if prune:
                self._prune(roots, {str(e.path) for e in entries}, report)
            self._embed(todo, report, batch_size, workers, progress)
            self._fit_codes()
            known_roots = self._meta.get_meta().get("roots", [])
            dirs = [r for r in roots if os.path.isdir(r)]
            if prune or dirs:
                self._meta.set_meta(roots=sorted(set(known_roots) | set(dirs)), last_indexed=time.time())
            self._persist_index()
        return report

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

    def _prune(self, roots: list[str], present: set[str], report: IndexReport) -> None:
        gone = [p for p in self._meta.file_records(roots) if p not in present]
        gone += [e.path for e in self._meta.error_records() if _is_under(e.path, roots) and e.path not in present]
        if gone:
            generation, dropped = self._meta.remove_paths(gone)
            self._apply(generation, [], None, dropped)
            report.removed = len(gone)

    def _embed(self, todo: list[FileEntry], report: IndexReport, batch_size, workers, progress) -> None:
        hashes = self._meta.hash_to_item()
        rows = int(self._meta.get_meta().get("rows", 0))
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
                item = NewItem(rows + len(items), p.hash, p.width, p.height, p.taken)
                items.append(item)
                arrays.append(p.array)
                hashes[p.hash] = item.id
                report.embedded += 1
            else:
                report.linked += 1
            links.append(FileLink(path, p.hash, size, mtime))
        vectors = None
        if arrays:
            # Round to the stored precision so this process ranks exactly as a reader will.
            vectors = self.encoder.encode_prepared(np.stack(arrays)).astype(VectorStore.DTYPE).astype(np.float32)
            self._vectors.write(rows, vectors)
        rows += len(items)
        generation, dropped = self._meta.commit_batch(items, links, errors, rows)
        self._rows = rows
        if dropped:  # rare: a changed file left its old content unshown
            gone = set(dropped)
            for h in [h for h, i in hashes.items() if i in gone]:
                del hashes[h]
        self._apply(generation, [it.id for it in items], vectors, dropped)
        return rows

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

    def _refresh(self) -> None:
        """Bring the loaded index up to the committed state (other processes may write)."""
        if self._index is None:
            return
        generation = self._meta.generation()
        if generation == self._index_generation:
            return
        live = set(self._meta.item_ids())
        self._rows = int(self._meta.get_meta().get("rows", 0))
        new = np.array(sorted(live - self._index_ids), dtype=np.int64)
        gone = np.array(sorted(self._index_ids - live), dtype=np.int64)
        for chunk in range(0, len(new), 65536):
            ids = new[chunk : chunk + 65536]
            self._index.add(ids, self._vectors.read(ids, self._rows))
        if len(gone):
            self._index.remove(gone)
        self._index_ids = live
        self._index_generation = generation

    def _ensure_index(self) -> VectorIndex:
        if self._index is None:
            generation = self._meta.generation()
            kind = BinaryIndex if self._codes_ready() else FlatIndex
            restored = kind.restore(self.path, generation, self.encoder.dim)
            if restored is not None:
                self._index, self._index_ids = restored, set(self._meta.item_ids())
                self._index_generation = generation
                self._rows = int(self._meta.get_meta().get("rows", 0))
            else:
                self._index, self._index_ids, self._index_generation = self._empty_index(), set(), -1
            if isinstance(self._index, BinaryIndex):
                self._index.reader = self._read_stored
                self._configure(self._index)
        self._refresh()
        return self._index

    def _empty_index(self, binarizer=None) -> VectorIndex:
        if binarizer is None and self._codes_ready():
            binarizer = load_binarizer(self.path / BINARIZER_FILE)
        if binarizer is None:
            return FlatIndex(self.encoder.dim)
        # Flat scan, or IVF lists once the collection is big enough for them to pay off.
        index = BinaryIndex(binarizer, self._read_stored, lists=ivf_lists(len(self._meta.item_ids())))
        return self._configure(index)

    def _configure(self, index: BinaryIndex) -> BinaryIndex:
        config = self._meta.get_meta()["codes"]
        index.oversample, index.rerank = config["oversample"], config.get("rerank", True)
        return index

    def _read_vectors(self, ids: np.ndarray) -> np.ndarray:
        return self._vectors.read(ids, self._rows)

    def _read_stored(self, ids: np.ndarray) -> np.ndarray:
        """float16 as stored: the re-rank scores them without a float32 copy."""
        return self._vectors.read(ids, self._rows, np.float16)

    def _persist_index(self) -> None:
        if self._index is not None:
            self._index.persist(self.path, self._index_generation)

    # -- binary codes -------------------------------------------------------------------
    def use_codes(self, binarizer: str = "learned", bits: int = 256, oversample: int = 30, seed: int = 0,
                  scoring: str = "auto", rerank: bool = True) -> None:
        """Search through compact binary codes (code scan, then exact float re-rank).

        The binarizer is fitted on the collection's own vectors at the end of the next
        ``add``/``index`` (once there are enough of them), and re-fitted when the collection
        has doubled since. ``scoring`` picks how the codes are scanned (see
        :mod:`glimpse.index.binary`): ``hamming``, ``cascade`` (Hamming, then the float query
        against the codes), ``asymmetric`` (float query against every code), or ``auto``:
        asymmetric for text queries, whose codes would be far from every image's, cascade
        for the rest. Without
        ``rerank``, results keep their code scores and the float vectors are never read.
        Each of these can be changed per query in :meth:`search`.
        """
        create_binarizer(binarizer, bits=bits, seed=seed)  # validates name and bits now
        if scoring != "auto" and scoring not in SCORINGS:
            raise ValueError(f"scoring must be auto or one of {', '.join(SCORINGS)}, not {scoring!r}")
        with self._lock:
            self._meta.set_meta(codes={"binarizer": binarizer, "bits": bits, "oversample": oversample,
                                       "seed": seed, "scoring": scoring, "rerank": rerank, "fitted_on": 0})
            (self.path / BINARIZER_FILE).unlink(missing_ok=True)
            self._index = None
            self._fit_codes()

    def _codes_ready(self) -> bool:
        return bool(self._meta.get_meta().get("codes", {}).get("fitted_on")) and (self.path / BINARIZER_FILE).exists()

    def _fit_codes(self) -> None:
        """Fit (or re-fit) the binarizer when codes are configured and it is due."""
        config = self._meta.get_meta().get("codes")
        if not config:
            return
        ids = np.array(self._meta.item_ids(), dtype=np.int64)
        binarizer = create_binarizer(config["binarizer"], bits=config["bits"], seed=config["seed"])
        if len(ids) < binarizer.min_fit_vectors(self.encoder.dim):
            return  # too few images to fit codes: exact float search serves meanwhile
        if config["fitted_on"] and len(ids) < 2 * config["fitted_on"] and self._codes_ready():
            return
        self._rows = int(self._meta.get_meta().get("rows", 0))
        rng = np.random.default_rng(config["seed"])
        sample = np.sort(rng.choice(ids, size=min(len(ids), 100_000), replace=False))
        binarizer.fit(self._read_vectors(sample))
        # The binarizer file is replaced atomically; codes are derived state, rebuilt from the
        # vector file on open when a crash leaves no codes file for the current generation.
        binarizer.save(self.path / BINARIZER_FILE)
        self._meta.set_meta(codes={**config, "fitted_on": len(ids)})
        self._index = self._empty_index(binarizer)
        self._index_ids, self._index_generation = set(), -1
        self._refresh()

    # -- reading ------------------------------------------------------------------------
    def search(
        self,
        text: str | None = None,
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
        ``exact`` scans every float vector instead (the reference).

        Once the words in the images were read (:meth:`enrich`), a ``text`` query also ranks by
        them: ``fusion`` is ``"calibrated"`` (cosine plus a bounded BM25 bonus), ``"rrf"`` or
        ``"none"`` (see :mod:`glimpse.query.fusion`). ``text:"..."`` terms match those words
        only, and ``Filter(has_text=True)`` keeps the images with words.
        """
        if k < 1:
            raise ValueError("k must be at least 1")
        if refine is not None and refine != "none" and refine not in REFINES:
            raise ValueError(f"unknown refine {refine!r}: use one of {', '.join(REFINES)} or none")
        fuse.check_fusion(fusion)
        terms, phrases = split_word_terms(terms)
        if phrases and terms is None:
            return self._search_words(phrases, filters, k, min_score)
        index = self._ensure_index()
        sources = QuerySources(self._item_vector, self._meta.item_for_hash,
                               self._text_map() if adapted else None)
        query = build_query(self.encoder, sources, text=text, image=image, vector=vector, like=like,
                            terms=terms, alpha=alpha)
        allowed = self._allowed(filters, phrases)
        if allowed is not None:
            allowed = np.setdiff1d(allowed, np.array(sorted(query.exclude), dtype=np.int64))
            if not len(allowed):
                return []
        refining = refine not in (None, "none")
        lexical = self._word_hits(text, allowed, query.exclude) if query.kind == "text" and fusion != "none" else []
        want = max(k, CANDIDATES) if refining else k
        want = max(want, fuse.RRF_DEPTH) if lexical and fusion == "rrf" else want
        want += 0 if allowed is not None else len(query.exclude)
        q = query.vector.reshape(1, -1)
        if exact and isinstance(index, BinaryIndex):
            scores, ids = self._exact_search(q, want, allowed)
        elif isinstance(index, BinaryIndex):
            scoring = scoring or self._scoring(text_only=query.kind == "text")
            scores, ids = index.search(q, want, allowed=allowed, oversample=oversample, rerank=rerank,
                                       scoring=scoring)
        else:
            scores, ids = index.search(q, want, allowed=allowed)
        keep = [(int(i), float(s)) for i, s in zip(ids[0], scores[0]) if i >= 0 and int(i) not in query.exclude]
        if refining and len(keep) > 1:
            new_ids, new_scores = rerank_candidates(
                refine, query.vector, np.array([i for i, _ in keep]), np.array([s for _, s in keep]),
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
            allowed = np.array(self._meta.matching_items(filters.conditions()), dtype=np.int64)
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

    def _scoring(self, text_only: bool) -> str:
        configured = self._meta.get_meta()["codes"].get("scoring", "auto")
        if configured == "auto":
            return "asymmetric" if text_only else "cascade"
        return configured

    def item(self, item_id: int) -> ItemInfo:
        """An item's files, size in pixels and bytes, modification time, and the words read in it."""
        info = self._meta.item_info(item_id)
        if info is None:
            raise KeyError(f"no item {item_id} in this collection")
        return replace(info, words=self._words.words(item_id))

    def _item_vector(self, item_id: int) -> np.ndarray:
        self._ensure_index()
        if item_id not in self._index_ids:
            raise ValueError(f"no item #{item_id} in this collection")
        return self._read_vectors(np.array([item_id], dtype=np.int64))[0]

    def _exact_search(self, query: np.ndarray, k: int, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Score every stored vector (or every ``allowed`` one), in chunks so the float copies stay small."""
        ids = np.array(sorted(self._index_ids), dtype=np.int64)
        if allowed is not None:
            ids = np.intersect1d(ids, allowed)
        scores = np.concatenate(
            [self._read_vectors(ids[i : i + 65536]) @ query[0] for i in range(0, len(ids), 65536)]
        ) if len(ids) else np.zeros(0, np.float32)
        best = np.argsort(-scores, kind="stable")[:k]
        return scores[best][None, :], ids[best][None, :]

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
        with self._lock:
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
        report.seconds = time.perf_counter() - started
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
        )


def batched(items: Iterable, n: int):
    """``itertools.batched`` (Python 3.12+) for 3.11."""
    it = iter(items)
    while chunk := tuple(islice(it, n)):
        yield chunk


def _is_under(path: str, roots: Sequence[str]) -> bool:
    return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)


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
        root.mkdir(parents=True, exist_ok=True)
    meta = Metadata(db_path)
    recorded = meta.get_meta()
    if "encoder" in recorded:
        want = EncoderInfo(recorded["encoder"], recorded["dim"], recorded["encoder_version"])
        if encoder is None:
            encoder = want.name
        # Compare names before building: a model can take seconds to construct.
        name = encoder.name if isinstance(encoder, Encoder) else encoder
        if name != want.name or (isinstance(encoder, Encoder) and encoder.info != want):
            meta.close()
            raise _mismatch(root, want, encoder)
    if not isinstance(encoder, Encoder):
        encoder = create_encoder(encoder or DEFAULT_ENCODER, **encoder_options)
    if "encoder" in recorded:
        if encoder.info != want:  # same name, another version of the model
            meta.close()
            raise _mismatch(root, want, encoder)
    else:
        meta.set_meta(
            encoder=encoder.name, encoder_version=encoder.version, dim=encoder.dim,
            rows=0, generation=0, created=time.time(),
        )
    return Collection(root, encoder, meta)


def _mismatch(root: Path, want: EncoderInfo, got: Encoder | str) -> EncoderMismatchError:
    have = f"{got.name} v{got.version} ({got.dim}-d)" if isinstance(got, Encoder) else got
    return EncoderMismatchError(
        f"collection {root} was built with encoder {want.name} v{want.version} ({want.dim}-d), "
        f"not {have}: their vectors are not comparable. "
        "Open it with its own encoder, or index into a new collection."
    )
