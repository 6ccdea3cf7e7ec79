"""Search configurations the harness compares, and how each one scores a query.

A configuration is either **exact float** search, or a **binarizer at a bit count** scanned
with Hamming (or asymmetric) scores, with or without an exact **re-rank** of a shortlist.
Specs on the command line: ``learned:256``, ``itq:128``, ``sign:512``, ``learned:256:asym``.
Each code spec gives two configurations: codes only, and codes + re-rank.

For ranking metrics every configuration yields a score for *every* database item, so the
ranking it implies is complete:

* exact: the cosine ``q . x``.
* codes only: ``1 - 2 * hamming / bits`` (equal to the ±1 codes' dot product over bits), or
  the asymmetric score ``query_vector(q) . (±1 code)``. Hamming scores tie a lot; the
  metrics' tie rule decides (see :mod:`glimpse.metrics`).
* re-rank: the ``shortlist`` best by code score (code-score ties go to the lower item index)
  come first, in exact cosine order; every other item follows in code-score order. That is
  what :class:`~glimpse.backends.binary.BinaryIndex` returns for ``k * oversample = shortlist``.

Latency is measured on the real search backends (``FlatIndex``, ``BinaryIndex``) at batch 1
and k = 10; bytes per image are what the search path holds in RAM per image.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ..codes import create_binarizer, load_binarizer, unpack_codes
from ..backends.binary import CASCADE_WIDEN
from ..query.refine import CANDIDATES, REFINES, refine

#: Shortlist re-ranked by default: k = 10 results x the collection's default oversample 10.
DEFAULT_SHORTLIST = 100
ID_BYTES = 8  # int64 id per code in the FAISS id map


@dataclass(frozen=True)
class Config:
    binarizer: str | None = None  # None: exact float
    bits: int = 0
    rerank: bool = False
    scoring: str = "hamming"
    shortlist: int = DEFAULT_SHORTLIST
    refine: str | None = None  # a re-ranking stage of glimpse.query.refine on the top candidates

    @property
    def name(self) -> str:
        suffix = f" +{self.refine}" if self.refine else ""
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
                "refine": self.refine}


def parse_configs(specs: str | list[str] | None, shortlist: int = DEFAULT_SHORTLIST,
                  refine: list[str] = ()) -> list[Config]:
    """``"learned:256,itq:128:asym"`` -> float + (codes only, codes + re-rank) per spec.

    Each ``refine`` method (``aqe``, ``superglobal``) adds a copy of every configuration with
    that re-ranking stage applied to its top candidates."""
    if isinstance(specs, str):
        specs = [specs]
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
    return configs + [replace(c, refine=m) for m in refine for c in configs]


@dataclass
class Scorer:
    """One configuration, prepared on a database: scores queries against every item."""

    config: Config
    database: np.ndarray
    seed: int = 0
    fit_seconds: float = 0.0
    binarizer: object | None = None
    _signs: np.ndarray | None = field(default=None, repr=False)
    codes: np.ndarray | None = field(default=None, repr=False)

    @classmethod
    def prepare(cls, config: Config, database: np.ndarray, seed: int = 0, fitted: dict | None = None,
                store: Path | None = None) -> Scorer:
        """Fit the config's binarizer on the database, reusing one fitted before.

        ``fitted`` shares binarizers between configurations of one run (by kind and bits);
        ``store`` is a folder where fitted binarizers are kept across runs, keyed by the
        database vectors, kind, bits, seed and binarizer version (a learned fit takes minutes).
        """
        scorer = cls(config, np.ascontiguousarray(database, dtype=np.float32), seed)
        if config.binarizer is None:
            return scorer
        fitted = {} if fitted is None else fitted
        key = config.code_key
        if key not in fitted:
            binarizer = create_binarizer(config.binarizer, bits=config.bits, seed=seed)
            need = binarizer.min_fit_vectors(database.shape[1])
            if len(database) < need:
                raise ValueError(f"{config.binarizer}:{config.bits} needs at least {need} database vectors "
                                 f"to fit, this dataset has {len(database)}: use fewer bits")
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
        scorer._signs = unpack_codes(scorer.codes, config.bits)
        return scorer

    def subset(self, rows: np.ndarray) -> Scorer:
        """The same configuration on some database items only, with the binarizer already fitted."""
        part = replace(self, database=self.database[rows])
        if self.codes is not None:
            part.codes, part._signs = self.codes[rows], self._signs[rows]
        return part

    def scores(self, queries: np.ndarray) -> np.ndarray:
        """(q, dim) -> (q, items) scores, higher first; see the module docstring."""
        base = self._base_scores(queries)
        if not self.config.refine:
            return base
        out = np.empty_like(base)
        for row, query in enumerate(np.asarray(queries, dtype=np.float32)):
            top = np.argsort(-base[row], kind="stable")[:CANDIDATES]
            ids, scores = refine(self.config.refine, query, top, base[row, top], lambda i: self.database[i])
            # The refined head, then the rest in its old order, strictly below the head.
            out[row] = base[row] - base[row].max() + scores.min() - 1.0
            out[row, ids] = scores
        return out

    def _base_scores(self, queries: np.ndarray) -> np.ndarray:
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if self.config.binarizer is None:
            return queries @ self.database.T
        if self.config.scoring == "asymmetric":
            code = self.binarizer.query_vector(queries) @ self._signs.T
        elif self.config.scoring == "cascade":  # Hamming top 4 x shortlist, re-scored asymmetrically
            hamming = unpack_codes(self.binarizer.encode(queries), self.config.bits) @ self._signs.T
            asym = self.binarizer.query_vector(queries) @ self._signs.T
            keep = np.argsort(-hamming, axis=1, kind="stable")[:, : CASCADE_WIDEN * self.config.shortlist]
            code = hamming / self.config.bits - 2.0 * np.abs(asym).max() - 3.0
            rows = np.arange(len(code))[:, None]
            code[rows, keep] = asym[rows, keep]
        else:
            code = unpack_codes(self.binarizer.encode(queries), self.config.bits) @ self._signs.T / self.config.bits
        if not self.config.rerank:
            return code
        short = min(self.config.shortlist, code.shape[1])
        order = np.argsort(-code, axis=1, kind="stable")[:, :short]
        # The tail keeps its code order (and ties) strictly below every cosine in [-1, 1].
        out = code - code.max(axis=1, keepdims=True) - 3.0
        rows = np.arange(len(code))[:, None]
        out[rows, order] = np.einsum("qd,qsd->qs", queries, self.database[order])
        return out

    def latency_ms(self, queries: np.ndarray, k: int = 10, repeats: int = 100) -> dict[str, float]:
        """Batch-1 search latency (ms) on the real backend (plus the refine stage), over up to ``repeats`` queries."""
        from ..backends import FlatIndex
        from ..backends.binary import BinaryIndex

        ids = np.arange(len(self.database), dtype=np.int64)
        if self.config.binarizer is None:
            index = FlatIndex(self.database.shape[1])
            index.add(ids, self.database)
            search = index.search
        else:
            index = BinaryIndex(self.binarizer, lambda rows: self.database[rows],
                                oversample=max(1, self.config.shortlist // k), rerank=self.config.rerank,
                                scoring=self.config.scoring)
            index.add_codes(ids, self.codes)
            search = index.search
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
