"""Coarse lists + RaBitQ residual codes, then an exact re-rank sized per query (issue 15).

One global binary code ranks a cluster of near-copies (bursts, edits, re-encodes of one
photo) by noise: at 200,000 isotropic copies the learned-256 cascade kept 0.10 of the
image top-10. Here a coarse quantiser scores the cluster first and the codes only rank rows
within their list, from their residuals (as IVF-PQ and BEBR do):

* ``IndexPreTransform(projection, IndexIVFRaBitQ)``, all FAISS: the fit's projection (see
  :mod:`glimpse.codes.rabitq`), ``lists`` centroids, and per row ``bits / 8`` bytes of
  residual signs, two float factors and an int64 id. The float query is scored against the
  codes asymmetrically (quantised to ``QUERY_BITS`` per coordinate, not to signs), which is
  what keeps text queries, far from every image, rankable.
* The shortlist is sized per query from the fit's error model: after the top ``FIRST`` x k
  estimates are re-ranked exactly, every further candidate whose estimate could still beat
  the k-th exact score (estimate + shift >= k-th - ``z`` x deviation), found by a FAISS range
  search over the same lists, is re-ranked too, up to ``k * oversample``. Image queries
  mostly stop after the first rows, text queries read hundreds to thousands.
* Each re-rank scores the gathered float16 rows of the vector file in one FAISS fp16 scan; a
  batch's queries are re-ranked in parallel threads after one FAISS search of the batch (its
  coarse assignment one matrix product, its lists scanned per query by FAISS).
* Filters: the plan that reads fewer bytes (see ``CODE_COST``): the exact scan of the allowed
  rows, or FAISS's scan with an id selector (:func:`id_selector`) and proportionally more
  lists probed; a query whose re-rank would read as many rows as the filter passes scores
  those instead, and a query whose probed lists held fewer than k allowed rows is rescanned
  over every list, so k matches give k results.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import faiss
import numpy as np

from ..codes import Binarizer
from ..codes.rabitq import QUERY_BITS, RaBitQFit
from .base import CodeStage
from .binary import CodeBackend, codes_path, write_codes
from .exact import VectorReader, exact_scan, exact_top

#: Estimates re-ranked before the error model decides how many more: FIRST x k.
FIRST = 4
#: Deviations of the estimate's error a candidate may sit below the k-th exact score and
#: still be re-ranked. At 50,000 near-copies (benchmarks/SEARCH_RESULTS.md), 3 kept 0.944 /
#: 0.948 of the text top-10 at cosines 0.79 / 0.93, and 4 0.958 / 0.970.
Z = 4.0
#: A code byte's cost in the filtered scan against a float16 byte of the exact re-rank: FAISS's
#: RaBitQ scan with an id selector took 30-60 ns per 36-byte code at 50,000 vectors, the fp16
#: re-rank 1-2 us per 3,328-byte row (benchmarks/SEARCH_RESULTS.md), about 2x per byte.
CODE_COST = 2.0
#: Rows in the first step of the re-rank past the first FIRST x k (steps double).
STEP = 64
#: Threads that re-rank a batch's queries.
CORES = os.cpu_count() or 1


def id_selector(allowed: np.ndarray) -> faiss.IDSelector:
    """FAISS's test of membership in sorted ``allowed``: a bitmap where the ids are dense
    enough (building an ``IDSelectorBatch`` hash set took 1.5 ms for 15,000 ids, 20x the
    bitmap), else the hash set."""
    top = int(allowed[-1]) + 1 if len(allowed) else 0
    if allowed[0] < 0 or top > max(1 << 20, 64 * len(allowed)):
        return faiss.IDSelectorBatch(allowed)
    bits = np.zeros(top, bool)
    bits[allowed] = True
    bitmap = np.packbits(bits, bitorder="little")
    selector = faiss.IDSelectorBitmap(len(bitmap), faiss.swig_ptr(bitmap))  # n: bytes
    selector.referenced = bitmap  # FAISS reads the numpy buffer: keep it alive with the selector
    return selector


def default_probes(lists: int) -> int:
    """Lists a query visits: 1/16 of them, at least 64 (all of a small index). Text queries
    need them (benchmarks/SEARCH_RESULTS.md, z 4): at 50,000 isotropic near-copies at cosine
    0.79, 32 of 1,024 lists kept 0.918 of their top-10 and 64 0.958; 32 of 512 lists kept 0.916
    on 20,000 structured copies and 64 0.954; 32 of 256 on the 3,285 real vectors 0.940, 64 0.974."""
    return min(lists, max(64, lists // 16))


class IVFCodesIndex(CodeBackend):
    """A fitted :class:`RaBitQFit`'s codes in FAISS IVF lists, with the exact re-rank.

    A search's ``stage.oversample`` caps the re-rank at ``k * oversample`` rows; ``stage.scoring``
    does not apply: these codes are always scored asymmetrically.
    """

    def __init__(self, fit: RaBitQFit, reader: VectorReader | None = None, oversample: int = 300,
                 rerank: bool = True, probes: int | None = None, z: float = Z):
        if not fit.fitted:
            raise ValueError("the ivf-rabitq fit must be fitted before it can index codes")
        super().__init__(fit, reader, oversample, rerank)
        self.probes = default_probes(fit.lists) if probes is None else probes
        self.z = z
        self._index = self._empty()

    def _empty(self) -> faiss.IndexPreTransform:
        fit = self.binarizer
        codes = faiss.IndexIVFRaBitQ(fit.quantizer(), fit.bits, fit.lists, faiss.METRIC_INNER_PRODUCT)
        codes.is_trained = True  # the quantiser holds the fit's centroids; RaBitQ codes need no training
        transform = faiss.LinearTransform(fit.dim, fit.bits, False)
        faiss.copy_array_to_vector(np.ascontiguousarray(fit.projection.T).ravel(), transform.A)
        transform.is_trained = True
        return faiss.IndexPreTransform(transform, codes)

    @property
    def _ivf(self) -> faiss.IndexIVFRaBitQ:
        return faiss.extract_index_ivf(self._index)

    @property
    def lists(self) -> int:
        return int(self._ivf.nlist)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if len(ids):
            self._index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), np.asarray(ids, dtype=np.int64))

    def remove(self, ids: np.ndarray) -> int:
        if not len(ids):
            return 0
        return int(self._index.remove_ids(faiss.IDSelectorBatch(np.asarray(ids, dtype=np.int64))))

    def count(self) -> int:
        return int(self._index.ntotal)

    def nbytes(self) -> int:
        """RAM the scan holds: each row's code and int64 id, and the centroids."""
        ivf = self._ivf
        return self.count() * (ivf.code_size + 8) + ivf.quantizer.ntotal * ivf.d * 4

    def ids(self) -> np.ndarray:
        """The ids of every code held."""
        invlists = self._ivf.invlists
        parts = [faiss.rev_swig_ptr(invlists.get_ids(i), invlists.list_size(i)).copy()
                 for i in range(self.lists) if invlists.list_size(i)]
        return np.concatenate(parts) if parts else np.zeros(0, np.int64)

    def _search_codes(self, queries: np.ndarray, k: int, allowed: np.ndarray | None, stage: CodeStage,
                      rerank: bool, shortlist: int) -> tuple[np.ndarray, np.ndarray]:
        if allowed is not None:
            allowed = np.sort(np.asarray(allowed, dtype=np.int64))
            if rerank and self._exact_is_cheaper(len(allowed), k):
                return exact_scan(self.reader, queries, allowed, k)
        estimates, candidates, params = self._scan(queries, min(shortlist, FIRST * k) if rerank else k, allowed)
        if not rerank:
            return estimates[:, :k], candidates[:, :k]
        shift, spread = self.binarizer.error_model(queries)
        margins = shift + self.z * spread

        def one(row: int) -> tuple[np.ndarray, np.ndarray]:
            return self._rerank(queries[row], estimates[row], candidates[row], k, shortlist, params[row],
                                float(margins[row]), allowed)

        scores = np.full((len(queries), k), -np.inf, np.float32)
        ids = np.full((len(queries), k), -1, np.int64)
        workers = min(len(queries), CORES)
        if workers > 1:  # a batch: the queries' re-ranks in parallel (FAISS and the reads release the GIL)
            with ThreadPoolExecutor(workers) as pool:
                found = list(pool.map(one, range(len(queries))))
        else:
            found = [one(row) for row in range(len(queries))]
        for row, (got_scores, got) in enumerate(found):
            scores[row, : len(got)], ids[row, : len(got)] = got_scores, got
        return scores, ids

    def _scan_cost(self, allowed: int) -> float:
        """Bytes a filtered code scan reads: the probed lists (more of them the less a filter
        passes, see :meth:`_scan`), each code weighted by ``CODE_COST``."""
        ivf = self._ivf
        per_list = self.count() / max(1, self.lists)
        probes = min(self.lists, math.ceil(self.probes * self.count() / max(1, allowed)))
        return probes * per_list * (ivf.code_size + 8) * CODE_COST

    def _exact_is_cheaper(self, allowed: int, k: int) -> bool:
        """Whether scoring every allowed row exactly reads less than the filtered code scan and
        its first re-rank (``FIRST`` x k rows): the exact plan for a selective filter."""
        row = 2 * self.dim  # float16 bytes
        return allowed * row <= self._scan_cost(allowed) + FIRST * k * row

    def _scan(self, queries: np.ndarray, depth: int,
              allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, list]:
        """FAISS's top ``depth`` estimates, best first, and each query's search parameters; a
        filter probes lists in proportion to what it passes."""
        probes = self.probes
        selector = None
        if allowed is not None:
            selector = id_selector(allowed)
            probes = math.ceil(probes * self.count() / max(1, len(allowed)))
        params = self._params(probes, selector)
        estimates, candidates = self._index.search(queries, depth, params=params)
        per_query = [params] * len(queries)
        if allowed is not None:
            short = np.flatnonzero((candidates >= 0).sum(axis=1) < min(depth, len(allowed)))
            if len(short):  # too few allowed rows in the probed lists: every list
                every = self._params(self.lists, selector)
                estimates[short], candidates[short] = self._index.search(queries[short], depth, params=every)
                for row in short:
                    per_query[row] = every
        return estimates, candidates, per_query

    def _params(self, probes: int, selector) -> faiss.IVFRaBitQSearchParameters:
        params = faiss.IVFRaBitQSearchParameters(nprobe=min(self.lists, probes), qb=QUERY_BITS)
        if selector is not None:
            params.sel = selector
        return params

    def _rerank(self, query: np.ndarray, estimates: np.ndarray, candidates: np.ndarray, k: int, cap: int,
                params: faiss.IVFRaBitQSearchParameters, margin: float,
                allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Exact top ``k`` of the first candidates, then of every candidate whose estimate +
        ``margin`` reaches the k-th exact score found (a FAISS range search over the same
        lists: a long top-``cap`` heap measured 3x slower than a short one), at most ``cap``.
        Those are scored best estimate first, in steps that double, and each step's k-th exact
        score raises the floor for the next. A filtered query that would re-rank as many rows
        as the filter passes scores the allowed rows instead: exact, and no dearer."""
        found = candidates >= 0
        estimates, candidates = estimates[found], candidates[found]
        scores, ids = exact_top(self.reader, query, candidates, k)
        if len(candidates) < len(found) or len(scores) < k or estimates[-1] < scores[k - 1] - margin:
            return scores, ids  # every candidate that could reach the top k is scored
        _, more_estimates, more = self._index.range_search(query[None], float(scores[k - 1] - margin), params=params)
        keep = ~np.isin(more, candidates)
        order = np.argsort(-more_estimates[keep], kind="stable")[: cap - len(candidates)]
        if allowed is not None and len(order) + len(candidates) >= len(allowed):
            got_scores, got = exact_scan(self.reader, query[None], allowed, k)
            return got_scores[0], got[0]
        more_estimates, more = -more_estimates[keep][order], more[keep][order]  # ascending negated estimates
        start, step = 0, STEP
        while start < len(more):
            stop = min(start + step, int(np.searchsorted(more_estimates, margin - scores[k - 1], side="right")))
            if stop <= start:
                break
            more_scores, more_ids = exact_top(self.reader, query, more[start:stop], k)
            scores, ids = np.concatenate([scores, more_scores]), np.concatenate([ids, more_ids])
            best = np.argsort(-scores, kind="stable")[:k]
            scores, ids = scores[best], ids[best]
            start, step = stop, 2 * step
        return scores, ids

    def describe(self) -> dict:
        return {"kind": "ivf-rabitq", "bits": self.binarizer.bits, "lists": self.lists, "probes": self.probes,
                "codes": self.count(), "bytes": self.nbytes()}

    def persist(self, directory: Path, generation: int) -> None:
        write_codes(directory, generation, self.binarizer.fit_id, lambda out: faiss.write_index(self._index, out))

    @classmethod
    def restore(cls, directory: Path, generation: int | None, dim: int, *,
                binarizer: Binarizer | None = None) -> IVFCodesIndex | None:
        """The codes ``binarizer`` (a :class:`RaBitQFit`) persisted for ``generation``
        (None: the newest); None if there are none."""
        path = codes_path(directory, generation, binarizer.fit_id) if isinstance(binarizer, RaBitQFit) else None
        if path is None or binarizer.dim != dim:
            return None
        return cls._read(binarizer, path, faiss.read_index)

