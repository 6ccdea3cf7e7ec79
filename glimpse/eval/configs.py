"""Search configurations the harness compares, and how each one scores a query.

A configuration is either **exact float** search, or a **binarizer at a bit count** scanned
with Hamming (or asymmetric) scores, with or without an exact **re-rank** of a shortlist.
Specs on the command line: ``learned:256``, ``itq:128``, ``sign:512``, ``learned:256:asym``.
Each code spec gives two configurations: codes only, and codes + re-rank.

Every configuration scores queries through the engine's own search backends
(:class:`~glimpse.backends.flat.FlatIndex`, :class:`~glimpse.backends.binary.BinaryIndex`, or with
``--backend`` a Milvus collection's :class:`~glimpse.milvus.index.MilvusIndex`), called
in one place (:func:`engine_search`), so a figure here is what a collection's search returns.
Ranking metrics need a score for *every* database item, so each query's complete ranking is:

* exact: the backend's cosine ``q . x`` for every item.
* codes only (Hamming or asymmetric): the backend's code score for every item, Hamming
  ``1 - 2 * hamming / bits`` or the asymmetric ``query_vector(q) . (±1 code)``. Hamming
  scores tie a lot; the metrics' tie rule decides (see :mod:`glimpse.metrics`).
* with a ``shortlist`` (re-rank, or the cascade's code stage): first the backend's result
  list for ``k = shortlist`` (oversample 1: the same code candidates as ``k = 10`` with
  oversample ``shortlist / 10``, so its top 10 is that search's result), then every other
  item below it in Hamming (asymmetric for ``asymmetric``) code order.

Latency is measured on the same backends at batch 1 and k = 10; bytes per image are what
the search path holds in RAM per image.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ..codes import Binarizer, create_binarizer, load_binarizer
from ..backends.base import CodeStage, SearchBackend
from ..backends.binary import BinaryIndex
from ..backends.flat import FlatIndex
from ..query.fusion import check_fusion
from ..query.refine import CANDIDATES, REFINES, refine
from .milvus import MilvusPlace

#: Code candidates eval re-ranks per query unless told otherwise; fixed, so reports compare across
#: kinds (a collection's own shortlist is k x its kind's oversample: glimpse.codes.default_oversample).
DEFAULT_SHORTLIST = 100
ID_BYTES = 8  # int64 id per code in the FAISS id map


@dataclass(frozen=True)
class Config:
    binarizer: str | None = None  # None: exact float
    bits: int = 0
    rerank: bool = False
    scoring: str = "hamming"
    shortlist: int = DEFAULT_SHORTLIST
    refine: str | None = None  # a refinement stage of glimpse.query.refine on the top candidates
    fusion: str | None = None  # text queries fused with the words read in the images (glimpse.eval.words)

    @property
    def name(self) -> str:
        suffix = (f" +{self.refine}" if self.refine else "") + (f" +words:{self.fusion}" if self.fusion else "")
        if self.binarizer is None:
            return "float" + suffix
        name = f"{self.binarizer}-{self.bits}" + {"asymmetric": "-asym", "cascade": "-cascade"}.get(self.scoring, "")
        return name + (f" +rerank{self.shortlist}" if self.rerank else "") + suffix

    @property
    def code_key(self) -> tuple[str, int] | None:
        return None if self.binarizer is None else (self.binarizer, self.bits)

    def bytes_per_image(self, dim: int) -> int:
        """RAM per image in the search path: float32 vectors, or a code and its id."""
        return 4 * dim if self.binarizer is None else self.bits // 8 + ID_BYTES

    def to_dict(self) -> dict:
        return {"name": self.name, "binarizer": self.binarizer, "bits": self.bits, "rerank": self.rerank,
                "scoring": self.scoring, "shortlist": self.shortlist if self.rerank else None,
                "refine": self.refine, "fusion": self.fusion}


def parse_configs(specs: str | list[str] | None, shortlist: int = DEFAULT_SHORTLIST,
                  refine: list[str] = (), fusions: list[str] = ()) -> list[Config]:
    """``"learned:256,itq:128:asym"`` -> float + (codes only, codes + re-rank) per spec.

    Each ``refine`` method (``aqe``, ``superglobal``) adds a copy of every configuration with
    that re-ranking stage applied to its top candidates; then each fusion (``calibrated``,
    ``rrf``) a copy of every one with text queries fused with the words in the images."""
    if isinstance(specs, str):
        specs = [specs]
    if isinstance(shortlist, bool) or not isinstance(shortlist, int) or shortlist < 1:
        raise ValueError(f"shortlist must be at least 1 candidate per query, got {shortlist!r}")
    configs = [Config()]
    for spec in (s.strip() for group in (specs or []) for s in group.split(",")):
        if not spec:
            continue
        parts = spec.split(":")
        scorings = {"asym": "asymmetric", "cascade": "cascade", "hamming": "hamming"}
        if len(parts) not in (2, 3) or not parts[1].isdigit() or (len(parts) == 3 and parts[2] not in scorings):
            raise ValueError(f"bad code spec {spec!r}: use BINARIZER:BITS[:asym|:cascade], e.g. learned:256 or itq:128:asym")
        kind, bits = parts[0], int(parts[1])
        create_binarizer(kind, bits=bits)  # validates the kind and the bit count now
        scoring = scorings[parts[2]] if len(parts) == 3 else "hamming"
        for rerank in (False, True):
            config = Config(kind, bits, rerank, scoring, shortlist)
            if config not in configs:
                configs.append(config)
    for method in refine:
        if method not in REFINES:
            raise ValueError(f"unknown refine method {method!r}: use one of {', '.join(REFINES)}")
    configs += [replace(c, refine=m) for m in refine for c in configs]
    for fusion in fusions:
        if check_fusion(fusion) == "none":
            raise ValueError("fusion none is every configuration without --ocr: use calibrated or rrf")
    return configs + [replace(c, fusion=f) for f in fusions for c in configs]


@dataclass
class Scorer:
    """One configuration, prepared on a database: scores queries against every item."""

    config: Config
    database: np.ndarray
    seed: int = 0
    fit_seconds: float = 0.0
    binarizer: Binarizer | None = None
    codes: np.ndarray | None = field(default=None, repr=False)
    index: SearchBackend | None = field(default=None, repr=False)
    place: MilvusPlace | None = field(default=None, repr=False)  # None: the engine's in-process backends

    @classmethod
    def prepare(cls, config: Config, database: np.ndarray, seed: int = 0, fitted: dict | None = None,
                store: Path | None = None, place: MilvusPlace | None = None) -> Scorer:
        """Fit the config's binarizer on the database, reusing one fitted before, and load the backend.

        ``fitted`` shares binarizers between configurations of one run (by kind and bits);
        ``store`` is a folder where fitted binarizers are kept across runs, keyed by the
        database vectors, kind, bits, seed and binarizer version (a learned fit takes minutes).
        ``place``: a Milvus whose collections hold the database (``glimpse eval --backend``).
        """
        scorer = cls(config, np.ascontiguousarray(database, dtype=np.float32), seed, place=place)
        if config.binarizer is None:
            return scorer.loaded()
        fitted = {} if fitted is None else fitted
        key = config.code_key
        if key not in fitted:
            binarizer = create_binarizer(config.binarizer, bits=config.bits, seed=seed)
            need = binarizer.min_fit_vectors(database.shape[1])
            if len(database) < need:
                raise ValueError(f"{config.binarizer}:{config.bits} needs at least {need} database vectors "
                                 f"to fit, this dataset has {len(database)}: give fewer bits (--codes "
                                 f"{config.binarizer}:N) or score float search only (--codes '')")
            # Fit on the rows in a canonical order (by row hash), so the same vectors listed in
            # another order (one folder, two adapters) give the same binarizer and cache file.
            rows = [hashlib.blake2b(r.tobytes(), digest_size=8).digest() for r in scorer.database]
            order = np.argsort(np.array(rows, dtype="S8"), kind="stable")
            data = hashlib.blake2b(b"".join(sorted(rows)), digest_size=16).hexdigest()
            file = None
            if store is not None:
                file = Path(store) / f"binarizer-{config.binarizer}-v{binarizer.version}-{config.bits}-s{seed}-{data}.npz"
            t0 = time.perf_counter()
            if file is not None and file.exists():
                binarizer = load_binarizer(file)
            else:
                binarizer.fit(scorer.database[order])
                if file is not None:
                    file.parent.mkdir(parents=True, exist_ok=True)
                    binarizer.save(file)
            fitted[key] = (binarizer, binarizer.encode(scorer.database), time.perf_counter() - t0)
        scorer.binarizer, scorer.codes, scorer.fit_seconds = fitted[key]
        return scorer.loaded()

    def loaded(self) -> Scorer:
        """This scorer with its database (and codes) in the engine's backend, under ids 0..n-1."""
        if self.place is not None:
            self.index = self.place.index(self.database, self.binarizer)
            return self
        ids = np.arange(len(self.database), dtype=np.int64)
        if self.binarizer is None:
            self.index = FlatIndex(self.database.shape[1])
            self.index.add(ids, self.database)
        else:
            self.index = BinaryIndex(self.binarizer, lambda rows: self.database[rows])
            self.index.add_codes(ids, self.codes)
        return self

    def subset(self, rows: np.ndarray) -> Scorer:
        """The same configuration on some database items only, with the binarizer already fitted."""
        codes = None if self.codes is None else self.codes[rows]
        return replace(self, database=self.database[rows], codes=codes).loaded()

    def scores(self, queries: np.ndarray) -> np.ndarray:
        """(q, dim) -> (q, items) scores, higher first; see the module docstring."""
        base = self._base_scores(queries)
        if not self.config.refine:
            return base
        out = np.empty_like(base)
        for row, query in enumerate(np.asarray(queries, dtype=np.float32)):
            top = np.argsort(-base[row], kind="stable")[:CANDIDATES]
            ids, scores = refine(self.config.refine, query, top, base[row, top], lambda i: self.database[i])
            out[row] = head_first(base[row], ids, scores)
        return out

    def _base_scores(self, queries: np.ndarray) -> np.ndarray:
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        config, everything = self.config, len(self.database)
        if config.binarizer is None:
            return _scatter(*self._search(queries, everything), everything)
        # The full code ranking, by the scan the shortlist itself starts from.
        order = "asymmetric" if config.scoring == "asymmetric" else "hamming"
        code = _scatter(*self._search(queries, everything, rerank=False, scoring=order), everything)
        if not config.rerank and config.scoring != "cascade":
            return code
        head_scores, head_ids = self._search(queries, min(config.shortlist, everything), rerank=config.rerank)
        return head_first(code, head_ids, head_scores)

    def _search(self, queries: np.ndarray, k: int, oversample: int = 1, rerank: bool | None = None,
                scoring: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        rerank = self.config.rerank if rerank is None else rerank
        return engine_search(self.index, queries, k, oversample=oversample, rerank=rerank,
                             scoring=scoring or self.config.scoring)

    def latency_ms(self, queries: np.ndarray, k: int = 10, repeats: int = 100) -> dict[str, float]:
        """Batch-1 search latency (ms) on the backend (plus the refine stage), over up to ``repeats`` queries."""
        oversample = max(1, self.config.shortlist // k)

        def search(q: np.ndarray, k: int):
            return self._search(q, k, oversample)

        if self.config.refine:  # as the collection does: the top CANDIDATES, then the stage on them
            plain, method = search, self.config.refine

            def search(q, k):
                scores, found = plain(q, max(k, CANDIDATES))
                return refine(method, q[0], found[0], scores[0], lambda i: self.database[i])
        sample = np.ascontiguousarray(queries[:repeats], dtype=np.float32)
        search(sample[:1], k)  # warm-up
        times = []
        for q in sample:
            # Best of 3 per query: on a shared machine one descheduled BLAS/OpenMP thread can
            # stall a call for a whole time slice, which says nothing about the index.
            best = np.inf
            for _ in range(3):
                t0 = time.perf_counter()
                search(q[None, :], k)
                best = min(best, time.perf_counter() - t0)
            times.append(best * 1000)
        return {"p50": float(np.median(times)), "mean": float(np.mean(times))} if times else {}


def engine_search(index: SearchBackend, queries: np.ndarray, k: int, *, oversample: int, rerank: bool,
                  scoring: str) -> tuple[np.ndarray, np.ndarray]:
    """The one call from the harness into the engine's search: (scores, ids), best first.

    Backends without codes ignore the code-stage options."""
    return index.search(queries, k, stage=CodeStage(scoring=scoring, oversample=oversample, rerank=rerank))


def head_first(rest: np.ndarray, ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Scores (last axis: items) that rank ``ids`` first with their ``scores``, and every other
    item strictly below them in the order (and ties) of its ``rest`` score."""
    out = rest - rest.max(axis=-1, keepdims=True) + scores.min(axis=-1, keepdims=True) - 1.0
    np.put_along_axis(out, ids, scores, axis=-1)
    return out


def _scatter(scores: np.ndarray, ids: np.ndarray, items: int) -> np.ndarray:
    """A backend's (scores, ids) holding every item -> the (queries, items) score matrix."""
    out = np.empty((len(ids), items), np.float32)
    np.put_along_axis(out, ids, scores, axis=1)
    return out
