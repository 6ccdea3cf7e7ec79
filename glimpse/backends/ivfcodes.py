"""Coarse lists + RaBitQ residual codes, then an exact re-rank sized per query (issue 15).

One global binary code ranks a cluster of near-copies (bursts, edits, re-encodes of one
photo) by noise: at 200,000 isotropic copies the learned-256 cascade kept 0.10 of the
image top-10. Here a coarse quantiser scores the cluster first and the codes only rank rows
within their list, from their residuals (as IVF-PQ and BEBR do):

* ``IndexPreTransform(projection, IndexIVFRaBitQ)``, all FAISS: the fit's projection (see
  :mod:`glimpse.codes.rabitq`), ``lists`` centroids, and per row ``bits / 8`` bytes of
  residual signs, two float factors and an int64 id. The float query is scored against the
  codes asymmetrically (quantised to ``QUERY_BITS`` per coordinate, not to signs), which is
  what keeps text queries, far from every image, rankable. For a query far from its lists'
  centroids (a caption), each list scores only the part of the query its centroid does not
  explain (see :meth:`IVFCodesIndex._range`), which halves its error against FAISS's
  residual to the centroid.
* The lists probed and the rows re-ranked are sized per query, from errors measured on the
  query itself (``_QuerySearch``): the first ``probes`` lists are scanned (one FAISS range
  search returns every row's estimate; past 500,000 rows fewer, doubled where the query's list model
  wants as many more), their best ``FIRST`` x k estimates, a sample of rows evenly spaced
  over them and one of the lists next in line (``sample_size``: more rows as the lists hold more)
  are scored exactly. The first sample gives the spread of (exact - estimate) in each row's own unit
  (its norm outside the projection weighs in: see ``IVFCodesIndex._row_units``), the second that of
  (exact - the row's centroid score) in units of the row's list's own spread (the RMS norm
  of its rows' residuals, measured as rows are added and stored with the codes), each at a
  95% upper confidence bound (the fit's error model where a filter passes too few sampled
  rows). Then further lists are probed (keeping only the rows whose estimate could reach the k-th
  exact score under the measured error), best centroid first, until the expected number of
  the k-th exact score's beaters left in the lists not probed is below ``MISSES / 2``
  (normal tails: rows related to the query in lists of other photos lie further out, so
  this undercounts on clustered data, see benchmarks/SEARCH_RESULTS.md; the spread is widened
  until it allows the rows the query found above its k-th score in its first lists: ``allowing``); and candidates
  are re-ranked, best chance of beating the k-th score first, in doubling steps (each step's k-th exact score
  raises the bar; a step takes the rest when it is at most ``WHOLE`` steps), until the
  expected number left among the candidates not re-ranked is below ``MISSES / 2``; at most
  ``k * oversample`` rows; a query whose plan wants ``WHOLE_SHARE`` of the rows or more (data with
  no structure for the codes) scores every row in one exact pass instead, past the cap (judged
  before further lists are probed where their sampled rows foretell it: see ``_QuerySearch._wants_most``). A burst of
  thousands of near-copies gets many lists and rows, an isolated photo few.
* Rows whose stored vectors are identical (found as rows are added: see
  ``IVFCodesIndex._find_twins``) are one candidate: one is read, the others take its exact score.
  Each row's unit of error is used only where it explains the query's sample (``units_explain``).
* Rows within ``ON_CENTROID`` of their list's centroid (a burst of copies becomes one) are scored as it:
  FAISS's code of so short a residual is wrong by up to 0.4 (see ``IVFCodesIndex._centre``).
* Each re-rank scores the gathered float16 rows of the vector file in one FAISS fp16 scan; a
  batch's queries are scanned and re-ranked in parallel threads (its coarse assignment one
  matrix product), and those that want every row scored share one pass (``_exact_pass``).
* Filters: the plan that reads fewer bytes (see ``CODE_COST``): the exact scan of the allowed
  rows, or FAISS's scan with an id selector (:func:`id_selector`) and proportionally more
  lists probed; a query whose re-rank would read as many rows as the filter passes scores
  those instead, and a query whose probed lists held fewer than k allowed rows probes every
  list, so k matches give k results.
"""

from __future__ import annotations

import contextlib
import math
import os
from statistics import NormalDist
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import faiss
import numpy as np

from ..codes import Binarizer
from ..codes.rabitq import QUERY_BITS, RaBitQFit
from .base import CodeStage
from .binary import CodeBackend, codes_path, read_codes, read_delta, seal_of, write_codes, write_delta
from .exact import NORM_TOLERANCE, RowCheck, VectorReader, exact_scan, exact_top, one_thread

#: Estimates re-ranked first, whatever the error model says: FIRST x k. The error model is measured on rows
#: evenly spaced, nearly all unrelated to the query; a query's true neighbours err upward, the part of their
#: score outside the projection adding to it (at 1M ``mix`` an image query's true top-10 were estimated a mean
#: 1.5-6.7 of the sample's deviations low), so their chances were too small, and 46 of the 51 rows missed by 200
#: image queries lay in lists the plan had probed. 16 x k read there, paired in one process (CPU p50, 100 image and
#: 50 caption queries, the second of 2 rounds): recall@10 0.968 / 0.984 -> 0.989 / 0.986 at 14.04 -> 14.01 ms (the
#: higher k-th score it starts from spares later steps); ``structured`` 34.04 -> 32.16 ms, ``iso0.79`` 6.77 -> 7.02,
#: ``iso0.93`` 9.37 -> 9.38 (benchmarks/SEARCH_RESULTS.md, s39).
FIRST = 16
#: The chance a search may take, under its measured error model, of leaving out one of the
#: true top k: half for the lists it does not probe, half for the candidates it does not
#: re-rank (each a union bound over the rows concerned).
MISSES = 0.05
#: Rows of the first probed lists, evenly spaced, scored exactly to measure each query's
#: error: the spread of (exact - estimate) and of (exact - its list's centroid score). As many
#: while those lists hold up to ``SAMPLE_ROWS`` rows, then more as their rows^(2/3), up to
#: ``MAX_SAMPLE`` (:func:`sample_size`).
SAMPLE = 48
#: Rows of the sampled lists up to which ``SAMPLE`` rows are sampled: the first lists of 200,000
#: ``iso0.79`` rows (25,000); 96 rows there cost 7% more CPU per query, and 6% at 50,000 ``mix``.
SAMPLE_ROWS = 25_000
#: The most rows sampled: 128 at 1,000,000 ``mix`` (125,000 rows in the first lists) took 14-20% less CPU
#: per query than 48 and 96 took 11% less, at the same recall; 192 cost recall there (0.961 / 0.966).
MAX_SAMPLE = 128
#: Fewer sampled rows than this measure nothing: the fit's error model (or every list) instead.
MIN_SAMPLE = 8
#: A code byte's cost in the filtered scan against a float16 byte of the exact re-rank: FAISS's
#: RaBitQ scan with an id selector took 30-60 ns per 36-byte code at 50,000 vectors, the fp16
#: re-rank 1-2 us per 3,328-byte row (benchmarks/SEARCH_RESULTS.md), about 2x per byte.
CODE_COST = 2.0
#: Rows in the first step of the re-rank past the first candidates (steps double). A step's fixed work
#: (a call of the exact re-rank: the read's set-up, the scorer, the top's check; the chances of the rest)
#: took 130-250 us of CPU at 50,000 rows, as much as reading and scoring 100-300 rows: steps from 64 spent
#: on calls what they spared in rows (caption queries on 50,000 ``mix`` and ``iso0.79`` and 100,000
#: ``dups``: 0.36-0.50 ms less CPU each from 256, image queries level; a superset of the rows read).
STEP = 256
#: A step re-ranks every candidate still wanted when they number at most this many steps (>= 1): a
#: superset of what smaller steps would re-rank (the k-th exact score only rises, so the rows wanted
#: only shrink), and a step's fixed work (a read, a scan, a merge: 40 us with hot caches) costs as
#: much as about 35 rows (50,000 ``mix``: image queries read 2.15 times instead of 2.76, 2% more rows).
WHOLE = 4.0
#: A query's lists are scanned for ``q - beta c`` (see ``IVFCodesIndex._range``) only where that
#: residual is at most this share of FAISS's ``q - c`` over its first lists (the estimate's error
#: scales with it): one FAISS query per list costs more set-up, which an image query near its lists'
#: centroids does not win back (3,285 real vectors: 1.9 ms against 1.5 ms of CPU per image query).
LEAST_SHARE = 0.8
#: A query whose plan wants at least this share of the collection's rows re-ranked scores every row
#: in one exact pass instead (before the ``oversample`` cap, which would leave rows out): a planned row
#: cost about twice a row of one pass (20,000 isotropic 768-d vectors, one thread: 35 ms of CPU for a
#: plan re-ranking 19,422 rows in steps, 18.6 ms to score 19,400 rows at once).
WHOLE_SHARE = 0.5
#: A batch's queries whose first lists are scanned at once, per thread, before their plans run: all 64 of a
#: batch at once left each plan's estimates cold (1M `mix`, 2 threads, 6 alternating rounds of 192 queries: a
#: median 58 q/s; in parts of 2 / 4 / 8 per thread 54 / 63 / 64; `iso0.79` 140 -> 155 with 4).
BATCH_PART = 4
#: A save writes the rows added and removed since the last full codes file as a delta beside it while they are
#: at most this share of the codes held (at 10M codes the full file, 462 MB, took 0.73 s of a 1.22 s add of 1,000
#: rows); past it, a full file again.
DELTA_SHARE = 1 / 16
#: What a delta holds (see IVFCodesIndex.persist).
DELTA_PARTS = ("ids", "lists", "codes", "removed", "spreads", "outside_ids", "outside", "twins", "stats")
#: A fit is stale once the rows held leave out of its projection this share more of what it keeps
#: of rows of its own distribution (``RaBitQFit.outside_reference``): at 100,000 ``drift55`` rows
#: (55% fitted, 45% of another distribution added) it kept 0.46 of their squared norm against 0.73,
#: and the added rows' text queries, almost wholly outside it, took longer than the exact scan. As
#: the share of rows added rises, one tenth is crossed at 12% of such rows.
DRIFT = 0.1
#: In a batch of at least this many queries, those whose plans want every row scored defer that pass, and
#: at least this many of them share it as float32 matrix products (``IVFCodesIndex._exact_pass``): decoding
#: a float16 row to float32 cost about 8 queries' fp16 scans of it, the product about a sixth of one
#: scan per query (20,000 x 1664-d rows, one thread: decode 45 ms, scan 5.3 ms, product 0.9 ms a query).
SHARED_PASS = 8
#: Rows of one part of an exact pass over every row (a query's top k is taken per part, then merged).
PASS_ROWS = 65536
#: Queries whose products a shared pass holds at once (PASS_ROWS x 4 bytes each).
PASS_QUERIES = 256
#: Bytes of float32 rows a shared pass decodes at a time (per thread).
PASS_BLOCK = 1 << 21
#: A row whose residual to its list's centroid (in the projection) is shorter than this is scored as
#: the centroid: FAISS's RaBitQ code of a residual under about 3.5e-4 (at any dimension and scale) gets a
#: dot-product multiplier as for a unit residual, so its estimate errs by up to 0.4 where it should err
#: by 1e-4; exact copies sitting on their centroid (float16 rounding leaves 2e-4) were estimated 0.2 off,
#: one error for the whole burst. Scored as the centroid instead, such a row errs by at most this times
#: ``|q - c|`` (see :meth:`IVFCodesIndex._centre`).
ON_CENTROID = 5e-4
#: Threads that re-rank a batch's queries.
CORES = os.cpu_count() or 1
#: The range search's radius: below every estimate, so it returns every row of the lists.
FLOOR = -3.0e38
#: One-sided confidence of the bounds on a measured mean and deviation, as a normal quantile.
CONFIDENT = NormalDist().inv_cdf(0.95)
#: Candidates further below the k-th exact score than this many deviations are never re-ranked
#: (a normal error exceeds 8 deviations with probability 6e-16).
FAR = 8.0
#: The least deviation a sample measures: rows that are all copies on their centroids (estimated from their
#: centroid, scored from the same float16 rows) can err alike to the last bit, and a zero deviation divides the
#: plan's chances by zero; far under the float16 rounding of a score (about 1e-4 of a unit vector's).
LEAST_SPREAD = 1e-7
#: Lists whose ids are gathered first when finding the lists that hold a few rows (then twice as many, ...).
GATHER_LISTS = 32
#: Rows a query's first lists hold on average, at most, to start with: 1/16 of 1,000,000, where 1/8 of the
#: lists is the most first lists (see :func:`default_probes`); a query whose list model then wants at least as
#: many more lists scans those as first lists too (``_QuerySearch.reranked``).
FIRST_ROWS = 62_500


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


def widest_probes(lists: int) -> int:
    """The most lists a query scans first: 1/8 of them, at least 64 (all of a small index)."""
    return min(lists, max(64, lists // 8))


def default_probes(lists: int, rows: int = 0) -> int:
    """Lists a query scans first: :func:`widest_probes`, and past 500,000 ``rows`` (``FIRST_ROWS`` x 8)
    only as many as hold ``FIRST_ROWS`` on average, at least 64; a query whose list model wants at least
    as many more lists scans those as first lists too (doubling, up to :func:`widest_probes`), and each
    query then probes more as its measured errors ask.

    Why a narrower start on large collections: the first lists' codes are every query's fixed cost, where
    data whose neighbours lie in a few lists (copies of a photo) needs few of them; data that wants more
    (clustered photos) asks for them and gets them scanned as first lists, its errors and spreads then
    measured past them. At 1,000,000 rows (2,048 lists, paired, second rounds of 100 image and 50 caption
    queries, CPU p50) 128 first lists doubling to 256 against 256 took ``iso0.79`` 7.29 -> 4.64 ms, ``iso0.93``
    10.02 -> 7.14, ``mix`` 14.99 -> 15.11 (images 12.96 -> 14.73, captions 20.44 -> 16.80), ``structured`` 33.28
    -> 34.42 at recall level or higher (128 without the doubling: ``mix`` 15.45 against 13.58); at 2,000,000 clustered 256-d rows 64 first lists, growing, against 128 took
    14.8-15.8 ms against 18.3-18.4 at recall@10 0.997; at 100,000 rows (1,024 lists) 1/16 first cost up to 30% more on
    ``benchmarks/shapes.py``'s shapes, so they keep 1/8 (benchmarks/SEARCH_RESULTS.md, s39 and s40). The
    lists stop at ``MAX_LISTS``, so 1/8 of them would scan 1/8 of every row: 1.25M codes a query at
    10,000,000 rows (256-d clusters, ``docs/search.md``), where 256 / 128 / 64 first lists took a CPU p50 of
    101 / 56 / 39 ms in one paired run and 128 / 64 / 32 took 41 / 26 / 19 ms in another (120 queries;
    recall@10 0.990 / 0.997 / 0.998, and 0.994 at 32). On clustered data a narrow start with no doubling
    misses rows in lists of other photos: at 300,000 ``mix`` vectors (benchmarks/SEARCH_RESULTS.md, eighth
    round) 64 first lists kept 0.938 / 0.974 of the image / text top-10 at a CPU p50 of 10.76 ms, 128 kept
    0.963 / 0.974 at 10.26 ms."""
    widest = widest_probes(lists)
    if rows <= FIRST_ROWS * 8:
        return widest
    return min(widest, max(64, math.ceil(FIRST_ROWS * lists / rows)))


class IVFCodesIndex(CodeBackend):
    """A fitted :class:`RaBitQFit`'s codes in FAISS IVF lists, with the exact re-rank.

    A search's ``stage.oversample`` caps the re-rank at ``k * oversample`` rows; ``stage.scoring``
    does not apply: these codes are always scored asymmetrically.
    """

    def __init__(self, fit: RaBitQFit, reader: VectorReader | None = None, oversample: int = 300,
                 rerank: bool = True, probes: int | None = None, misses: float = MISSES):
        if not fit.fitted:
            raise ValueError("the ivf-rabitq fit must be fitted before it can index codes")
        super().__init__(fit, reader, oversample, rerank)
        self._probes = probes  # None: default_probes at the rows held when searched
        self.misses = misses
        self._ivf_of: tuple[faiss.IndexPreTransform, faiss.IndexIVFRaBitQ] | None = None
        self._index = self._empty()
        self._ids_of: list[np.ndarray] | None = None  # each list's ids (see _list_ids)
        self._factors_of: list[np.ndarray] | None = None  # and their codes' factors (see _list_factors)
        self._params_of: dict[int, faiss.IVFRaBitQSearchParameters] = {}  # unfiltered scans' parameters, per width
        self._centroid_squares: np.ndarray | None = None
        self._size_of = np.zeros(0, np.int64)
        self._top_id: int | None = None
        # Per list: rows added and the sum of their squared residuals to the list's centroid in
        # the full space (see _residuals); None until measured (codes of an older version).
        self._spread_sums: np.ndarray | None = np.zeros((2, fit.lists))
        self._scales_of: np.ndarray | None = None  # _scales, until the next add
        # Per id: the norm of the row's part outside the projection (see _row_units), float16; ids
        # past its end (sparse ids) have none. None until measured (codes of an older version).
        self._outside: np.ndarray | None = np.zeros(0, np.float16)
        self._outside_square: float | None = None  # the mean square of _outside over the ids held
        self._outside_range = (0.0, 0.0)  # and its least and largest value (with _outside_square)
        self._outside_count = 0  # the values _outside_square is the mean of
        # Rows whose stored vector is identical to another's (see _find_twins), as runs of consecutive
        # ids of one group (see runs_of); None until measured (codes of an older version).
        self._twins: np.ndarray | None = np.zeros((3, 0), np.int64)
        self._centred = True  # rows on their centroid are scored as it (see _centre); False: codes of an older version
        # The full codes file (and its seal) that this index is, but for the rows added (with their lists) and
        # removed since: what a delta holds (see persist). None: no such file (a new index, or an older version's).
        self._base: tuple[Path, bytes] | None = None
        self._since: tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]] = ([], [], [])

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
        """The IVF index inside the transform, found once per index object (FAISS's Python
        downcast took 0.1 ms, several times a query)."""
        if self._ivf_of is None or self._ivf_of[0] is not self._index:
            self._ivf_of = (self._index, faiss.extract_index_ivf(self._index))
        return self._ivf_of[1]

    @property
    def lists(self) -> int:
        return int(self._ivf.nlist)

    @property
    def probes(self) -> int:
        """Lists a query scans first (:func:`default_probes` of the rows held, unless set)."""
        return default_probes(self.lists, self.count()) if self._probes is None else self._probes

    @probes.setter
    def probes(self, value: int | None) -> None:
        self._probes = value

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if len(ids):
            ids = np.ascontiguousarray(ids, dtype=np.int64)
            vectors = np.ascontiguousarray(vectors, dtype=np.float32)
            before = self._sizes.copy()
            self._ids_of = None
            # The rows projected and assigned once, here: FAISS's own add did both again, and the spreads
            # and the rows on their centroid need them too (at 500,000 rows, 40% of the coding's CPU).
            projected, lists = _assigned(self.binarizer, vectors)
            self._ivf.add_core(len(ids), faiss.swig_ptr(projected), faiss.swig_ptr(ids), faiss.swig_ptr(lists))
            self._index.ntotal = self._ivf.ntotal
            self._changed(ids, lists, None)
            self._centre_added(before, ids, projected)
            self._scales_of = None
            if self._spread_sums is not None:
                self._measure(self._spread_sums, vectors, lists, projected)
            if self._outside is not None:
                self._outside = self._record_outside(self._outside, ids, vectors)
                self._count_outside(ids)
            if self._twins is not None:
                grown = np.flatnonzero(self._sizes != before)  # the lists the rows went to
                self._twins = self._find_twins(self._twins, grown, ids, vectors, before)

    def _record_outside(self, table: np.ndarray, ids: np.ndarray, vectors: np.ndarray) -> np.ndarray:
        """``table`` with the norms of ``vectors`` outside the projection at their ``ids`` (see :meth:`_put_outside`)."""
        return self._put_outside(table, ids, self.binarizer.outside_norms(vectors))

    def _put_outside(self, table: np.ndarray, ids: np.ndarray, norms: np.ndarray) -> np.ndarray:
        """``table`` (grown to the ids where they are dense enough, as a bitmap of ids is: see
        _marked) with ``norms`` at their ``ids``."""
        if not len(ids):
            return table
        top = int(ids.max()) + 1
        if len(table) < top and ids.min() >= 0 and top <= max(1 << 20, 8 * self.count()):
            table = np.concatenate([table, np.zeros(top - len(table), np.float16)])  # a copy per add: small
        held = (ids >= 0) & (ids < len(table))
        table[ids[held]] = norms[held]
        return table

    def _count_outside(self, ids: np.ndarray) -> None:
        """Take the norms of rows just added at ``ids`` into the mean square and range of
        :meth:`_outside_stats`, where measured (at 10M rows measuring them again took 0.15 s an add)."""
        if self._outside_square is None:
            return
        values = self._outside[ids[(ids >= 0) & (ids < len(self._outside))]].astype(np.float64)
        if len(values):
            count = self._outside_count + len(values)
            self._outside_square = (self._outside_square * self._outside_count + float(np.sum(values**2))) / count
            low, high = self._outside_range if self._outside_count else (np.inf, -np.inf)
            self._outside_range = (min(low, float(values.min())), max(high, float(values.max())))
            self._outside_count = count

    def _measure(self, sums: np.ndarray, vectors: np.ndarray, lists: np.ndarray | None = None,
                 projected: np.ndarray | None = None) -> None:
        """Add ``vectors`` (assigned to ``lists``, or to their nearest centroid, as FAISS
        assigns them; ``projected``: their projection, where known) to the per-list residual ``sums``
        (rows, squared norms)."""
        for start in range(0, len(vectors), 16384):
            part = slice(start, start + 16384)
            lists_of, squares = _residuals(self.binarizer, vectors[part], None if lists is None else lists[part],
                                           None if projected is None else projected[part])
            sums[0] += np.bincount(lists_of, minlength=self.lists)
            sums[1] += np.bincount(lists_of, squares, minlength=self.lists)

    def _scales(self) -> np.ndarray:
        """Per list: the RMS norm of its rows' residuals to its centroid in the full space, the
        scale of ``q . x - q . centroid`` over its rows (measured when the rows were added; codes
        of an older version measure it once from the vector file). Removals leave it as it was:
        a list's spread, not its exact content. Cached until the next add (it was recomputed, with a
        median over the lists, twice per query)."""
        if self._scales_of is not None:
            return self._scales_of
        self._measure_older()
        rows, squares = self._spread_sums
        scales = np.sqrt(squares / np.maximum(rows, 1))
        # A list of identical rows still spreads the query's own error, and the index knows a row only
        # to ON_CENTROID of its centroid: below that, exact copies' lists (4e-5 at 100,000 ``dups``) turned
        # rounding-sized misses (6e-5) into 1.4 units, and their queries probed half of the other lists.
        floor = max(1e-3 * (float(np.median(scales[rows > 0])) if rows.any() else 1.0), ON_CENTROID)
        self._scales_of = np.maximum(scales, floor)
        return self._scales_of

    def _measure_older(self) -> None:
        """The per-list spreads and per-row norms outside the projection that codes of an older
        version did not store, measured once from the vector file (each whole, or not at all: a
        batch's threads may read them)."""
        sums = np.zeros((2, self.lists)) if self._spread_sums is None else None
        outside = np.zeros(0, np.float16) if self._outside is None else None
        if sums is None and outside is None:
            return
        for number, ids in enumerate(self._list_ids()):
            for start in range(0, len(ids), 16384):
                part = np.sort(ids[start : start + 16384])
                vectors = np.asarray(self.reader(part), np.float32)
                if sums is not None:
                    self._measure(sums, vectors, np.full(len(part), number))
                if outside is not None:
                    outside = self._record_outside(outside, part, vectors)
        if sums is not None:
            self._spread_sums = sums
        if outside is not None:
            self._outside = outside

    def _centre(self, lists: np.ndarray, positions: np.ndarray, projected: np.ndarray) -> None:
        """Score as their centroid the rows at ``positions`` of ``lists`` (one each; ``projected``: their
        vectors times the fit's projection) lying within ``ON_CENTROID`` of it in the projection: their
        code's dot-product multiplier is set to 0, so FAISS's estimate keeps its exact terms (the
        centroid's score and the row's first factor) and leaves out only ``(q - c) . (x - c)``, at most
        ``ON_CENTROID |q - c|``."""
        fit, invlists, size = self.binarizer, self._ivf.invlists, self._ivf.code_size
        residuals = projected - fit.centroids[lists]
        near = np.einsum("nb,nb->n", residuals, residuals) < ON_CENTROID**2
        start = (fit.bits + 7) // 8 + 4  # the signs, then |x - c|^2 - |x|^2, then the multiplier (float32 each)
        for number in np.unique(lists[near]).tolist():
            codes = faiss.rev_swig_ptr(invlists.get_codes(number), int(self._sizes[number]) * size)
            multipliers = codes.reshape(-1, size)[:, start : start + 4].view(np.float32)
            multipliers[positions[near & (lists == number)], 0] = 0.0

    def _centre_added(self, before: np.ndarray, ids: np.ndarray, projected: np.ndarray) -> None:
        """:meth:`_centre` over the rows ``ids`` (``projected``: their vectors times the fit's projection)
        just added to lists of ``before`` rows each (FAISS appends them)."""
        grown = np.flatnonzero(self._sizes != before)
        new = self._sizes[grown] - before[grown]
        positions = np.arange(int(new.sum())) - np.repeat(np.cumsum(new) - new, new) + np.repeat(before[grown], new)
        at = np.concatenate([self._list_ids()[number][first:] for number, first in zip(grown, before[grown])])
        order = np.argsort(ids, kind="stable")
        self._centre(np.repeat(grown, new), positions, projected[order[np.searchsorted(ids[order], at)]])

    def _centre_older(self) -> None:
        """Codes of an older version: their rows on a centroid scored as it (see :meth:`_centre`), from the
        vector file in id order, once."""
        if self._centred or self.reader is None:
            return
        ids_of, sizes = self._list_ids(), self._sizes
        held = np.concatenate(ids_of) if len(ids_of) else np.zeros(0, np.int64)
        lists = np.repeat(np.arange(self.lists), sizes)
        positions = np.arange(len(held)) - np.repeat(np.cumsum(sizes) - sizes, sizes)
        order = np.argsort(held, kind="stable")
        for start in range(0, len(order), 16384):
            part = order[start : start + 16384]
            rows = np.asarray(self.reader(held[part]), np.float32)
            self._centre(lists[part], positions[part], rows @ self.binarizer.projection)
        self._centred = True

    def _find_twins(self, table: np.ndarray, lists: np.ndarray, ids: np.ndarray | None = None,
                    vectors: np.ndarray | None = None, before: np.ndarray | None = None) -> np.ndarray:
        """``table`` with, in ``lists``, the rows ``ids`` (just added, as ``vectors``, past each list's
        ``before`` rows: FAISS appends them; None: every row, read from the vector file, for codes of an
        older version) whose stored vector is
        identical to another row's: a burst of exact copies (re-saves, re-imports) is one row to a
        query's plan (see :meth:`_twin_keys`), where it re-ranked every copy (5,000 rows) before.

        Identical vectors get the same code bits in the same list (not always the same float
        factors: FAISS's batched transform rounds a row by its place in the batch), so only rows
        whose bits another row of the list shares are compared, and their rows decide, as float32 (equal
        codes do not prove equal vectors: rows differing only outside the projection share them): the
        added rows as given against the stored rows as read, so rows that are only equal once rounded to
        float16 are not twins unless the stored rows are that rounding (a collection's are).
        A group's key is the first id recorded for it; ids are never reused, so no other row's own
        id is a key."""
        found = []
        if ids is not None:
            order = np.argsort(ids, kind="stable")
            ids, vectors = ids[order], np.asarray(vectors)[order]

        def rows_of(members: np.ndarray) -> np.ndarray:
            if ids is None:
                return np.asarray(self.reader(np.sort(members)), np.float32)[np.argsort(np.argsort(members))]
            return np.asarray(vectors[np.searchsorted(ids, members)], np.float32)

        ids_of, invlists, size = self._list_ids(), self._ivf.invlists, self._ivf.code_size
        signs = (self.binarizer.bits + 7) // 8  # the code's bits, without its float factors
        for number in lists.tolist():
            held = ids_of[number]
            if len(held) < 2:
                continue
            codes = faiss.rev_swig_ptr(invlists.get_codes(number), len(held) * size).reshape(len(held), size)
            # Equal bits share their first 64: only rows whose first word another row shares (a new row's,
            # for an add) are grouped by all their bits (sorting every row's bits took 0.75 s per 1,000
            # rows at 10M).
            words = first_words(codes, signs)
            first_new = 0 if ids is None else int(before[number])  # positions of the rows just added
            if ids is None:
                _, group, counts = np.unique(words, return_inverse=True, return_counts=True)
                maybe = np.flatnonzero(counts[group] > 1)
            else:
                maybe = np.flatnonzero(np.isin(words, words[first_new:]))
            if len(maybe) < 2:
                continue
            bits = np.ascontiguousarray(codes[maybe, :signs]).view(np.dtype((np.void, signs))).ravel()
            _, group, counts = np.unique(bits, return_inverse=True, return_counts=True)
            shared = counts[group] > 1
            maybe, group = maybe[shared], group[shared]
            if not len(maybe):
                continue
            order = maybe[np.argsort(group, kind="stable")]
            for places in np.split(order, np.flatnonzero(np.diff(np.sort(group))) + 1):
                members, fresh = held[places], places >= first_new
                if not fresh.any():
                    continue
                # One row per group already recorded and each other row known, then the new rows:
                # equal bytes are twins, under the recorded key where one is among them.
                known = members[~fresh]
                _, keys = twin_lookup(table, known)
                _, first = np.unique(keys, return_index=True)
                known, keys = known[first], keys[first]
                read = np.asarray(self.reader(known), np.float32) if len(known) else np.zeros((0, self.dim), np.float32)
                rows = np.concatenate([read, rows_of(members[fresh])])
                both, keys = np.concatenate([known, members[fresh]]), np.concatenate([keys, members[fresh]])
                _, same = np.unique(rows.view(np.dtype((np.void, rows.shape[1] * 4))).ravel(), return_inverse=True)
                for value in np.flatnonzero(np.bincount(same) > 1):
                    at = np.flatnonzero(same == value)
                    key = keys[at][np.argmin(keys[at] == both[at])]  # a recorded key, else the first id
                    new = at[~twin_lookup(table, both[at])[0]]  # rows not yet recorded (not the key rows read)
                    found.append(np.stack([both[new], np.full(len(new), key)]))
        if not found:
            return table
        pairs = np.concatenate([np.stack(pairs_of(table)), *found], axis=1)
        return runs_of(pairs[0], pairs[1])

    def _twin_keys(self, ids: np.ndarray) -> np.ndarray:
        """Per id: its group's key where its stored vector is identical to another row's (see
        :meth:`_find_twins`), else the id itself."""
        return twin_lookup(self._twins, ids)[1]

    def _twin_table(self) -> np.ndarray:
        """The rows with an identical twin, found first for codes of an older version (whole before
        it is set: a batch's threads may read it)."""
        if self._twins is None:
            self._twins = self._find_twins(np.zeros((3, 0), np.int64), np.flatnonzero(self._sizes > 1))
        return self._twins

    def _outside_stats(self) -> tuple[np.ndarray, float]:
        """The per-id norms outside the projection (measured first for older codes) and their
        mean square over the ids held, with their range: measured once, then rows added count in;
        removals leave them as they were, as they leave the lists' spreads."""
        self._measure_older()
        table = self._outside
        if self._outside_square is None:
            held = self.ids()
            values = table[held[(held >= 0) & (held < len(table))]].astype(np.float32)
            self._outside_range = (float(values.min()), float(values.max())) if len(values) else (0.0, 0.0)
            self._outside_square = float(np.mean(values**2)) if len(values) else 0.0
            self._outside_count = len(values)
        return table, self._outside_square

    def _row_units(self, query: np.ndarray, projected: np.ndarray | None = None):
        """Per candidate row, the scale of ``exact - estimate`` for ``query``, relative to the
        others': ``(units(ids), lowest, highest)``, or None where the rows' norms are unknown.

        The estimate misses ``q_out . x_out`` (the parts outside the projection) and the code's
        error. The first grows with the row's own ``|x_out|``: a copy with more noise strays
        further, which one pooled spread cannot tell. With the fit's two parts for this query
        (:meth:`RaBitQFit.error_parts`), a row's unit is ``sqrt(code^2 + tail^2 |x_out|^2 /
        mean |x_out|^2)``; the query's sample measures errors in these units. At 300,000 ``mix``
        vectors, the rows a caption must re-rank to reach its true top-10 (ordered by their chance
        of beating the k-th score): mean 9,430 with one spread, 4,208 with these units (p90 15,029
        and 7,452); an image query's 361 and 263."""
        table, square = self._outside_stats()
        inside = None if projected is None else projected[None]
        _, tail, code = (float(v[0]) for v in self.binarizer.error_parts_unchecked(query[None], inside))
        if square <= 0 or tail**2 + code**2 <= 0:
            return None
        weight = tail**2 / square

        def units(ids: np.ndarray) -> np.ndarray | None:
            if len(ids) and (int(ids.min()) < 0 or int(ids.max()) >= len(table)):
                return None
            # float32, as the estimates (the chances computed from them cost a fifth of float64's), in place:
            # sqrt(code^2 + weight |x_out|^2)
            squares = np.square(table[ids].astype(np.float32))
            squares *= weight
            squares += code**2
            return np.sqrt(squares, out=squares)

        low, high = self._outside_range
        return units, math.sqrt(code**2 + weight * low**2), math.sqrt(code**2 + weight * high**2)

    def refit_reason(self) -> str | None:
        """Why the fit is stale, if the rows held (unit vectors, as a collection's) leave out of its
        projection clearly more of their squared norm than rows of its own distribution do
        (``DRIFT``): rows of another distribution were added since, whose neighbours the codes
        cannot tell apart (a query among them re-ranks most of them). A fit of an older version
        measured no reference: None."""
        reference = self.binarizer.outside_reference
        if reference is None or not self.count():
            return None
        _, outside = self._outside_stats()  # the mean of |x_out|^2: the share left out, for unit rows
        kept, kept_by_fit = 1 - outside, 1 - reference
        if kept >= (1 - DRIFT) * kept_by_fit:
            return None
        return (f"the rows added since the fit lie further outside its projection: it keeps {kept:.0%} of the "
                f"rows' squared norm, against {kept_by_fit:.0%} of rows like those it was fitted on")

    def remove(self, ids: np.ndarray) -> int:
        if not len(ids):
            return 0
        self._ids_of = None
        ids = np.asarray(ids, dtype=np.int64)
        self._changed(None, None, ids)
        if self._twins is not None:  # the others of a group keep its key: ids are never reused
            held, keys = pairs_of(self._twins)
            kept = ~np.isin(held, ids)
            self._twins = runs_of(held[kept], keys[kept])
        return int(self._index.remove_ids(faiss.IDSelectorBatch(ids)))

    def count(self) -> int:
        return int(self._index.ntotal)

    def nbytes(self) -> int:
        """RAM the scan holds: each row's code and int64 id, the centroids and each list's spread,
        each id's float16 norm outside the projection, and the runs of rows with an identical twin."""
        ivf = self._ivf
        extra = sum(0 if table is None else table.nbytes for table in (self._outside, self._twins))
        return self.count() * (ivf.code_size + 8) + ivf.quantizer.ntotal * (ivf.d * 4 + 16) + extra

    def ids(self) -> np.ndarray:
        """The ids of every code held."""
        invlists = self._ivf.invlists
        parts = [faiss.rev_swig_ptr(invlists.get_ids(i), invlists.list_size(i)).copy()
                 for i in range(self.lists) if invlists.list_size(i)]
        return np.concatenate(parts) if parts else np.zeros(0, np.int64)

    def _search_codes(self, queries: np.ndarray, k: int, allowed: np.ndarray | None, stage: CodeStage,
                      rerank: bool, shortlist: int) -> tuple[np.ndarray, np.ndarray]:
        selector, share = None, 1.0
        if allowed is not None:
            allowed = np.sort(np.asarray(allowed, dtype=np.int64))
            if rerank and self._exact_is_cheaper(len(allowed), k):
                return exact_scan(self.reader, queries, allowed, k, self.check)
            selector, share = id_selector(allowed), len(allowed) / max(1, self.count())
        fit = self.binarizer
        projected = np.ascontiguousarray(queries @ fit.projection, dtype=np.float32)
        centroid_scores = projected @ fit.centroids.T
        # A filter's k-th allowed row ranks about k / share overall, yet lists in proportion (1 / share) measured
        # slower and no closer: at 1M `mix` with 30% allowed, image p50 19.6 -> 15.2 ms, captions 40.2 -> 31.4 (recall
        # 0.985 / 0.956 -> 0.993 / 0.964) with 1 / sqrt(share); the plan probes more where its errors ask.
        probes = min(self.lists, math.ceil(self.probes / math.sqrt(share)))
        widest = max(probes, min(self.lists, math.ceil(widest_probes(self.lists) / math.sqrt(share))))
        order = np.argsort(-centroid_scores, axis=1, kind="stable")  # every list, best centroid first
        first = order[:, :probes]
        least = self._least(projected, centroid_scores, first) if selector is None else np.zeros(len(queries), bool)
        self._centre_older()  # before any scan (older codes)
        if rerank:
            self._scales()  # measured here, once, before a batch's threads need it (older codes)
            self._outside_stats()
            self._twin_table()
        self._list_factors()  # and the lists' views, before the threads read them

        # A batch's queries that want every row scored share one pass (see _exact_pass): their plans defer it.
        shared = len(queries) >= SHARED_PASS
        found: list[tuple[np.ndarray, np.ndarray] | None] = [None] * len(queries)

        def scan(rows: np.ndarray) -> None:
            """The first lists of the queries ``rows``, in one FAISS call per estimator, threaded over the
            queries by FAISS (a batch's Python threads hold the GIL for their numpy work; FAISS's do not)."""
            with one_thread() if len(queries) == 1 else contextlib.nullcontext():
                for flag in (False, True):
                    these = rows[least[rows] == flag]
                    if len(these):
                        for row, got in zip(these.tolist(), self._range(projected[these], centroid_scores[these],
                                                                        first[these], selector, flag,
                                                                        across=len(queries) > 1)):
                            found[row] = got

        def one(row: int) -> tuple[np.ndarray, np.ndarray] | None:
            search = _QuerySearch(self, queries[row], projected[row], centroid_scores[row], order[row], probes,
                                  widest, selector, share, bool(least[row]), *found[row])
            found[row] = None  # its estimates are the search's now: a part's are freed as its plans end
            if shared:
                search.whole = lambda query, k: None
            with one_thread():
                return search.reranked(k, shortlist, allowed) if rerank else search.estimated(k)

        scores = np.full((len(queries), k), -np.inf, np.float32)
        ids = np.full((len(queries), k), -1, np.int64)
        workers = min(len(queries), CORES)
        results: list[tuple[np.ndarray, np.ndarray] | None] = []
        # A batch in parts (BATCH_PART): each part's first lists, then its plans, while its estimates are warm.
        with ThreadPoolExecutor(workers) if workers > 1 else contextlib.nullcontext() as pool:
            for start in range(0, len(queries), BATCH_PART * workers):
                rows = np.arange(start, min(len(queries), start + BATCH_PART * workers))
                scan(rows)
                # the queries' re-ranks in parallel (FAISS and the reads release the GIL)
                results += list(pool.map(one, rows.tolist()) if pool is not None else map(one, rows.tolist()))
        deferred = [row for row, got in enumerate(results) if got is None]
        if deferred:
            for row, got in zip(deferred, self._exact_pass(queries[deferred], k)):
                results[row] = got
        for row, (got_scores, got) in enumerate(results):  # type: ignore[misc]
            scores[row, : len(got)], ids[row, : len(got)] = got_scores, got
        return scores, ids

    def _least(self, projected: np.ndarray, centroid_scores: np.ndarray, first: np.ndarray) -> np.ndarray:
        """Per query: whether its lists are scanned for ``q - beta c`` (:meth:`_range`), by
        ``LEAST_SHARE`` of ``|q - c|`` over its ``first`` lists."""
        scores, squares = np.take_along_axis(centroid_scores, first, 1), self._squares()[first]
        norms = np.einsum("qb,qb->q", projected, projected)[:, None]
        least = (norms - scores**2 / squares).sum(axis=1)  # |q - beta c|^2
        theirs = (norms - 2 * scores + squares).sum(axis=1)  # |q - c|^2
        return least <= LEAST_SHARE**2 * theirs

    def _range(self, projected: np.ndarray, centroid_scores: np.ndarray, lists: np.ndarray,
               selector, least: bool, across: bool = False, floor: float = FLOOR) -> list[tuple[np.ndarray, np.ndarray]]:
        """Every row of each query's ``lists`` (allowed by ``selector``) with its estimate of
        ``q . x``: FAISS's range search below any score, over the lists given (without ``least``,
        only the rows estimated above ``floor``: FAISS leaves the others out of its results).

        FAISS scores a list's codes against the query's residual to the list's centroid,
        ``q - c``, with an error in proportion to ``|q - c|``; a text query, far from every
        image, has a residual larger than itself (at 50,000 ``mix`` vectors the error's
        deviation was 0.016, as large as the spread of a caption's top 1,000 exact scores).
        With ``least`` (never with a filter), each list is scanned for the part of the query its
        centroid does not explain, ``q - beta c`` (``beta = q . c / |c|^2``, the least norm),
        and the rest, ``beta c . x``, is added back exactly from the code's own factor: the text
        error's deviation fell to 0.0085 (an image query's from 0.0158 to 0.0140). Otherwise
        FAISS's own estimate (with a filter, the rows a selector passes would not line up with
        the codes' factors). ``across``: FAISS's threads take whole queries (a batch; always the
        pseudo-queries of ``least``), else a query's lists."""
        if not lists.shape[1]:
            return [(np.zeros(0, np.float32), np.zeros(0, np.int64))] * len(projected)
        if not least:
            return self._range_search(projected, lists, np.take_along_axis(centroid_scores, lists, 1), selector,
                                      across, floor)
        width = lists.shape[1]
        flat = lists.reshape(-1)
        centroids = self.binarizer.centroids[flat]
        squares = self._squares()[flat]
        scores = np.take_along_axis(centroid_scores, lists, 1).reshape(-1)
        shift = 1 - scores / squares  # 1 - beta
        pseudo = (shift[:, None] * centroids).reshape(len(projected), width, -1)  # minus c: q - beta c
        pseudo += projected[:, None]  # each query added in place to its lists' terms (no repeated copy)
        pseudo = pseudo.reshape(len(flat), -1)
        # Each pseudo-query is one list: FAISS's threads take the pseudo-queries, as a batch's queries (its
        # per-query loop over one list cost 100 us more per 128 lists, on one thread as a query's plan runs).
        limits, estimates, ids = self._scan(pseudo, flat[:, None], (scores + shift * squares)[:, None], None, True)
        # Unfiltered and below any score, each pseudo-query returns its whole list, in the list's order.
        factors_of, order = self._list_factors(), flat.tolist()
        factors = np.concatenate([factors_of[i] for i in order])  # |x - c|^2 - |x|^2 = |c|^2 - 2 c . x
        if len(factors) != len(estimates):
            raise RuntimeError("FAISS's range search left out rows of the lists scanned")
        sizes = np.diff(limits)
        estimates -= np.repeat(shift * squares / 2, sizes) - np.repeat(shift / 2, sizes) * factors  # (1 - beta) c . x
        bounds = limits[::width]
        return [(estimates[a:b], ids[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]

    def _squares(self) -> np.ndarray:
        """Each centroid's squared norm (computed once)."""
        if self._centroid_squares is None:
            centroids = self.binarizer.centroids
            self._centroid_squares = np.einsum("lb,lb->l", centroids, centroids)
        return self._centroid_squares

    def _range_search(self, projected: np.ndarray, lists: np.ndarray, coarse: np.ndarray,
                      selector, across: bool = False, floor: float = FLOOR) -> list[tuple[np.ndarray, np.ndarray]]:
        """FAISS's own estimates (of the query's residual to each list's centroid) above ``floor``, and ids."""
        limits, estimates, ids = self._scan(projected, lists, coarse, selector, across, floor)
        return [(estimates[a:b], ids[a:b]) for a, b in zip(limits[:-1], limits[1:])]

    def _scan(self, queries: np.ndarray, lists: np.ndarray, coarse: np.ndarray,
              selector, across: bool = False, floor: float = FLOOR) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(limits, estimates, ids) of FAISS's range search over each query's ``lists``: the rows
        estimated above ``floor`` (FAISS's threads over the queries with ``across``, else over each
        query's lists)."""
        params = self._params_of.get(lists.shape[1]) if selector is None else None
        if params is None:
            params = faiss.IVFRaBitQSearchParameters(nprobe=lists.shape[1], qb=QUERY_BITS)
            if selector is None:  # made once per width (12 us each, 1-2 a query): read only, a batch's threads share it
                self._params_of[lists.shape[1]] = params
            else:
                params.sel = selector
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        lists = np.ascontiguousarray(lists, dtype=np.int64)
        coarse = np.ascontiguousarray(coarse, dtype=np.float32)
        found = faiss.RangeSearchResult(len(queries))
        # A batch's first lists: FAISS's threads take whole queries. Otherwise a query's lists (each
        # pseudo-query is one list, scanned serially; a batch's queries run in threads of their own).
        mode = 0 if across else 1
        if self._ivf.parallel_mode != mode:  # FAISS's checking setter: 3 us
            self._ivf.parallel_mode = mode
        # FAISS's Python wrapper of this call refuses search parameters; the C++ call takes them.
        self._ivf.range_search_preassigned_c(len(queries), faiss.swig_ptr(queries), floor, faiss.swig_ptr(lists),
                                             faiss.swig_ptr(coarse), found, False, params, None)
        limits = faiss.rev_swig_ptr(found.lims, len(queries) + 1).astype(np.int64)
        estimates = faiss.rev_swig_ptr(found.distances, int(limits[-1])).copy()
        ids = faiss.rev_swig_ptr(found.labels, int(limits[-1])).copy()
        return limits, estimates, ids

    def _exact_all(self, query: np.ndarray, k: int, chosen: list[np.ndarray] | None = None,
                   ids: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The exact top ``k`` of every row held (``ids``: :meth:`_held_ids`), ``PASS_ROWS`` at a
        time (a copy of 1M float16 rows would be GBs), in id order: dense ids are runs of rows,
        which the reader scores in place. ``chosen``: per part, the ids that hold its top ``k``
        (:meth:`_exact_pass`), scored instead of the whole part: the same scores and order."""
        ids = self._held_ids() if ids is None else ids
        scores, found = np.zeros(0, np.float32), np.zeros(0, np.int64)
        for number, start in enumerate(range(0, len(ids), PASS_ROWS)):
            part = ids[start : start + PASS_ROWS] if chosen is None else chosen[number]
            more_scores, more = exact_top(self.reader, query, part, k, self.check)
            scores, found = np.concatenate([scores, more_scores]), np.concatenate([found, more])
            best = np.argsort(-scores, kind="stable")[:k]
            scores, found = scores[best], found[best]
        return scores, found

    def _held_ids(self) -> np.ndarray:
        """Every id held, ascending."""
        held = [self._list_ids()[i] for i in np.flatnonzero(self._sizes)]
        if self._id_top is None:
            return np.sort(np.concatenate(held)) if held else np.zeros(0, np.int64)
        bits = np.zeros(self._id_top, bool)  # a bitmap orders dense ids in one pass (sorting 100,000 took 5 ms)
        for part in held:
            bits[part] = True
        return np.flatnonzero(bits)

    def _exact_pass(self, queries: np.ndarray, k: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """:meth:`_exact_all` for each of a batch's ``queries``, their results identical. From
        ``SHARED_PASS`` queries on, each part of the rows is decoded to float32 once and scored for
        all of them as one matrix product (:func:`pass_candidates`); each query then scores in
        float16, as alone, only the rows whose product lies within rounding of the part's k-th."""
        ids = self._held_ids()
        chosen: list = [[] if len(queries) >= SHARED_PASS else None for _ in queries]
        for start in range(0, len(ids) if chosen[0] is not None else 0, PASS_ROWS):
            for first in range(0, len(queries), PASS_QUERIES):  # the products' scores stay within 64 MB
                group = queries[first : first + PASS_QUERIES]
                for row, kept in enumerate(pass_candidates(self.reader, self.check, group,
                                                           ids[start : start + PASS_ROWS], k), first):
                    chosen[row].append(kept)

        def one(row: int) -> tuple[np.ndarray, np.ndarray]:
            with one_thread():
                return self._exact_all(queries[row], k, chosen[row], ids)

        with ThreadPoolExecutor(max(1, min(len(queries), CORES))) as pool:
            return list(pool.map(one, range(len(queries))))
    def _lists_holding(self, ids: np.ndarray, lists: np.ndarray, scanned: np.ndarray | None = None) -> np.ndarray:
        """The list of ``lists`` that holds each of ``ids`` (a few ids, each held by one of them).
        ``scanned``: the ids of the lists' rows as an unfiltered scan of them returned them, each list whole and
        in order (a query's own: gathering the ids of its 128 first lists took 0.15-0.2 ms of CPU at 50,000
        rows); each id's list by that order is taken only where that list holds it at that place. Otherwise
        the lists' ids are gathered in doubling runs, best list first, until every id is found: a query's
        best rows lie in its first lists (a filtered query's 427 first lists took 0.4 ms at 50,000 rows)."""
        ids_of, sizes = self._list_ids(), self._sizes[lists]
        if scanned is not None and len(scanned) == int(sizes.sum()):
            ends = np.cumsum(sizes)
            at = np.flatnonzero(_marked(scanned, ids, self._id_top))
            if len(at):
                order = np.argsort(scanned[at])
                at = at[order[np.minimum(np.searchsorted(scanned[at][order], ids), len(at) - 1)]]  # each id's place
            if len(at) == len(ids) and (scanned[at] == ids).all():
                which = np.searchsorted(ends, at, side="right")
                places = (at - ends[which] + sizes[which]).tolist()
                if all(ids_of[number][place] == i for number, place, i in zip(lists[which].tolist(), places, ids.tolist())):
                    return lists[which]
        wanted = np.unique(ids)
        holding = np.full(len(wanted), -1, np.int64)
        top = self._id_top
        if top is not None:
            bits = np.zeros(top, bool)
            bits[wanted[(wanted >= 0) & (wanted < top)]] = True
        start, step = 0, GATHER_LISTS
        while start < len(lists) and (holding < 0).any():
            part = lists[start : start + step]
            held = np.concatenate([ids_of[i] for i in part.tolist()])
            at = np.flatnonzero(bits[held] if top is not None else among(held, wanted))
            if len(at):
                which = np.searchsorted(np.cumsum(self._sizes[part]), at, side="right")
                holding[np.searchsorted(wanted, held[at])] = part[which]
            start, step = start + step, 2 * step
        if (holding < 0).any():
            raise ValueError("an id is not held by the lists given")
        return holding[np.searchsorted(wanted, ids)]

    def _list_ids(self) -> list[np.ndarray]:
        """Each list's ids, as views of FAISS's arrays (cached until the next add or remove)."""
        if self._ids_of is None:
            invlists = self._ivf.invlists
            self._ids_of = [faiss.rev_swig_ptr(invlists.get_ids(i), invlists.list_size(i)) if invlists.list_size(i)
                            else np.zeros(0, np.int64) for i in range(self.lists)]
            self._size_of = np.array([len(ids) for ids in self._ids_of], np.int64)
            held = [ids for ids in self._ids_of if len(ids)]
            low = min((int(ids.min()) for ids in held), default=0)
            top = max((int(ids.max()) for ids in held), default=-1) + 1
            self._top_id = top if low >= 0 and top <= max(1 << 20, 8 * self.count()) else None  # a bitmap of <= 8 B per code
            self._factors_of = None
        return self._ids_of

    def _list_factors(self) -> list[np.ndarray]:
        """Each list's first RaBitQ factor per row, ``|x - c|^2 - |x|^2`` for inner products, as
        views of FAISS's codes: a 1-bit code is ``bits / 8`` bytes of signs, then that factor
        and the dot-product multiplier, two float32 (cached with :meth:`_list_ids`)."""
        self._list_ids()
        if self._factors_of is None:
            invlists, size = self._ivf.invlists, self._ivf.code_size
            start = (self.binarizer.bits + 7) // 8
            self._factors_of = [
                faiss.rev_swig_ptr(invlists.get_codes(i), int(n) * size).reshape(n, size)[:, start : start + 4]
                .view(np.float32)[:, 0] if n else np.zeros(0, np.float32) for i, n in enumerate(self._size_of)]
        return self._factors_of

    @property
    def _id_top(self) -> int | None:
        """One past the largest id held, where the ids are dense enough for a bitmap (see _marked)
        and none is negative; else None (cached with :meth:`_list_ids`)."""
        self._list_ids()
        return self._top_id

    @property
    def _sizes(self) -> np.ndarray:
        """Rows per list (cached with :meth:`_list_ids`)."""
        self._list_ids()
        return self._size_of

    def _scan_cost(self, allowed: int) -> float:
        """Bytes a filtered code scan reads: the probed lists (more of them the less a filter
        passes), each code weighted by ``CODE_COST``."""
        ivf = self._ivf
        per_list = self.count() / max(1, self.lists)
        probes = min(self.lists, math.ceil(self.probes * self.count() / max(1, allowed)))
        return probes * per_list * (ivf.code_size + 8) * CODE_COST

    def _exact_is_cheaper(self, allowed: int, k: int) -> bool:
        """Whether scoring every allowed row exactly reads less than the filtered code scan and
        its first re-rank (``FIRST`` x k rows): the exact plan for a selective filter."""
        row = 2 * self.dim  # float16 bytes
        return allowed * row <= self._scan_cost(allowed) + FIRST * k * row

    def describe(self) -> dict:
        return {"kind": "ivf-rabitq", "bits": self.binarizer.bits, "lists": self.lists, "probes": self.probes,
                "codes": self.count(), "bytes": self.nbytes()}

    def persist(self, directory: Path, generation: int) -> None:
        """The FAISS index, then the per-list residual sums, the per-id norms outside the
        projection and the rows with identical twins, in one file (written atomically). Where this
        index is a full file on disk but for at most ``DELTA_SHARE`` of its rows added and removed
        since, those instead, with the small tables whole, in a delta beside that file."""
        if self._delta_serves(directory):
            base, seal = self._base  # type: ignore[misc]
            write_delta(directory, generation, self.binarizer.fit_id, base, seal, self._delta())
            return
        spread, outside, twins = self._spread_sums, self._outside, self._twins

        def write(f) -> None:
            faiss.write_index(self._index, faiss.PyCallbackIOWriter(f.write))
            if spread is not None:
                np.save(f, spread)
                if outside is not None:
                    np.save(f, outside)
                    if twins is not None:
                        np.save(f, twins)
                        if self._centred:  # a mark: rows on their centroid are scored as it (see _centre)
                            np.save(f, np.ones(1, np.int8))
                            if self._outside_square is not None:  # _outside_stats: 0.15 s to measure at 10M rows
                                np.save(f, np.array([self._outside_square, *self._outside_range, self._outside_count]))

        written = write_codes(directory, generation, self.binarizer.fit_id, write)
        seal = seal_of(written)
        self._base = (written, seal) if seal is not None and self._whole() else None
        self._since = ([], [], [])

    def persist_changes(self, directory: Path, generation: int) -> None:
        """A delta where one serves (see :meth:`persist`); never the whole file."""
        if self._delta_serves(directory):
            self.persist(directory, generation)

    def _changed(self, added: np.ndarray | None, lists: np.ndarray | None, removed: np.ndarray | None) -> None:
        """Note rows added (in ``lists``) or ``removed`` for the next delta, while one could hold them."""
        if self._base is None:
            return
        for part, ids in zip(self._since, (added, lists, removed)):
            if ids is not None:
                part.append(ids)
        if self._changes() > DELTA_SHARE * self.count():  # the next save writes a full file
            self._base, self._since = None, ([], [], [])

    def _changes(self) -> int:
        return sum(len(ids) for ids in self._since[0]) + sum(len(ids) for ids in self._since[2])

    def _whole(self) -> bool:
        """Whether every table a delta carries is measured (codes of an older version lack some until the first search)."""
        return self._spread_sums is not None and self._outside is not None and self._twins is not None and self._centred

    def _delta_serves(self, directory: Path) -> bool:
        """Whether a delta over this index's full file (still there, as written) holds what changed."""
        if self._base is None or not self._whole() or self._base[0].parent != Path(directory):
            return False
        return self._changes() <= DELTA_SHARE * self.count() and seal_of(self._base[0]) == self._base[1]

    def _delta(self) -> dict[str, np.ndarray]:
        """The ids removed since the full file, then the rows added since and held now (their ids, lists and
        codes as FAISS holds them, rows on their centroid marked: a restore removes, then adds, so a row
        removed and added again, as a repair does, comes back), and the small tables whole."""
        none = np.zeros(0, np.int64)
        added, lists, removed = (np.concatenate(part) if part else none for part in self._since)
        _, last = np.unique(added[::-1], return_index=True)  # an id added again: its last list
        added, lists = added[len(added) - 1 - last], lists[len(added) - 1 - last]
        size, invlists, ids_of = self._ivf.code_size, self._ivf.invlists, self._list_ids()
        parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        for number in np.unique(lists).tolist():
            held = ids_of[number]
            at = np.flatnonzero(np.isin(held, added[lists == number]))  # rows removed since are not held
            codes = faiss.rev_swig_ptr(invlists.get_codes(number), len(held) * size).reshape(-1, size)
            parts.append((held[at], np.full(len(at), number, np.int64), codes[at]))
        added, lists, codes = (np.concatenate(part) for part in zip(*parts)) if parts else (
            none, none, np.zeros((0, size), np.uint8))
        outside_ids = added[added < len(self._outside)]
        return {"ids": added, "lists": lists, "codes": codes, "removed": removed, "spreads": self._spread_sums,
                "outside_ids": outside_ids, "outside": self._outside[outside_ids], "twins": self._twins,
                "stats": np.array([np.nan] * 4 if self._outside_square is None  # measured at the first search
                                  else [self._outside_square, *self._outside_range, self._outside_count])}

    def _apply_delta(self, delta: dict[str, np.ndarray]) -> bool:
        """Bring this index, restored from a full file, to what ``delta`` says (False, unchanged, where its
        arrays do not fit this index: then the caller's refresh codes the difference)."""
        ids, lists, codes, removed = (delta[key] for key in ("ids", "lists", "codes", "removed"))
        outside_ids, outside, spreads, twins, stats = (delta[key] for key in ("outside_ids", "outside", "spreads", "twins", "stats"))
        fits = (ids.dtype == lists.dtype == removed.dtype == outside_ids.dtype == twins.dtype == np.int64
                and codes.dtype == np.uint8 and codes.shape == (len(ids), self._ivf.code_size) and lists.shape == ids.shape
                and (not len(lists) or 0 <= lists.min() <= lists.max() < self.lists) and removed.ndim == 1
                and spreads.shape == (2, self.lists) and twins.ndim == 2 and len(twins) == 3 and stats.shape == (4,)
                and outside.shape == outside_ids.shape and outside.dtype == np.float16)
        if not fits:
            return False
        if len(removed):  # first: a row removed and added again is added back below
            self._index.remove_ids(faiss.IDSelectorBatch(removed))
        invlists = self._ivf.invlists
        order = np.argsort(lists, kind="stable")
        ids, lists, codes = np.ascontiguousarray(ids[order]), lists[order], np.ascontiguousarray(codes[order])
        numbers, starts, counts = np.unique(lists, return_index=True, return_counts=True)
        for number, start, count in zip(numbers.tolist(), starts.tolist(), counts.tolist()):
            invlists.add_entries(number, count, faiss.swig_ptr(ids[start:]), faiss.swig_ptr(codes[start:]))
        self._ivf.ntotal += len(ids)
        self._index.ntotal = self._ivf.ntotal
        self._ids_of = self._scales_of = None
        self._spread_sums, self._twins = spreads, twins
        self._outside = self._put_outside(self._outside, outside_ids, outside)
        if not np.isnan(stats).any():
            self._outside_square, low, high, count = stats.tolist()
            self._outside_range, self._outside_count = (low, high), int(count)
        self._since = ([ids], [lists], [removed])
        return True

    @classmethod
    def restore(cls, directory: Path, generation: int | None, dim: int, *,
                binarizer: Binarizer | None = None) -> IVFCodesIndex | None:
        """The codes ``binarizer`` (a :class:`RaBitQFit`) persisted for ``generation``
        (None: the newest); None if there are none."""
        path = codes_path(directory, generation, binarizer.fit_id) if isinstance(binarizer, RaBitQFit) else None
        if path is None or binarizer.dim != dim:
            return None

        def parse(f) -> tuple:
            index = faiss.read_index(faiss.PyCallbackIOReader(f.read))
            parts = []
            try:  # codes of an older version lack some of these: measured at the first search
                for _ in range(5):  # the spreads, the outside norms, the twins, the mark of centred rows, their stats
                    parts.append(np.load(f))
            except (ValueError, EOFError):
                pass
            return f.seal, index, *parts, *[None] * (5 - len(parts))

        parsed = read_codes(path, parse)
        if parsed is None:
            return None
        backend = cls(binarizer)
        seal, backend._index, spread, outside, twins, centred, stats = parsed
        backend._spread_sums = spread if spread is not None and spread.shape == (2, backend.lists) else None
        usable = backend._spread_sums is not None and outside is not None and outside.ndim == 1
        backend._outside = outside.astype(np.float16) if usable else None
        whole = usable and twins is not None and twins.ndim == 2 and len(twins) == 3
        backend._twins = twins.astype(np.int64) if whole else None
        backend._centred = whole and centred is not None and centred.shape == (1,)
        if backend._centred and stats is not None and stats.shape == (4,):
            backend._outside_square, low, high, count = stats.tolist()
            backend._outside_range, backend._outside_count = (low, high), int(count)
        if seal is not None and backend._whole():
            backend._base = (path, seal)
            delta = read_delta(path, seal, binarizer.fit_id, DELTA_PARTS)
            if delta is not None:
                backend._apply_delta(delta)
        return backend


def _assigned(fit: RaBitQFit, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``vectors`` times the fit's projection (C-contiguous float32, as FAISS adds them), and each
    row's list: its nearest centroid by inner product, as FAISS's quantiser assigns it."""
    projected = np.ascontiguousarray(vectors @ fit.projection, dtype=np.float32)
    lists = np.empty(len(vectors), np.int64)
    for start in range(0, len(vectors), 16384):  # scores of 16,384 rows x 2,048 lists: 134 MB at a time
        lists[start : start + 16384] = np.argmax(projected[start : start + 16384] @ fit.centroids.T, axis=1)
    return projected, lists


def _residuals(fit: RaBitQFit, vectors: np.ndarray, lists: np.ndarray | None,
               projected: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(list, squared norm of x - the list's centroid lifted to the full space) per row of
    ``vectors`` (``projected``: times the fit's projection, where known); ``lists`` None: each row's
    nearest centroid (FAISS's assignment)."""
    projected = vectors @ fit.projection if projected is None else projected
    if lists is None:
        lists = np.argmax(projected @ fit.centroids.T, axis=1)
    centroids = fit.centroids[lists]
    squares = (np.einsum("nd,nd->n", vectors, vectors) - 2 * np.einsum("nb,nb->n", projected, centroids)
               + np.einsum("nb,nb->n", centroids, centroids))
    return lists, np.maximum(squares, 0.0)


def pass_candidates(reader: VectorReader, check: RowCheck, queries: np.ndarray, ids: np.ndarray,
                    k: int) -> list[np.ndarray]:
    """Per query, the ``ids`` (ascending) whose rows hold its top ``k`` under FAISS's fp16 scan:
    each block of rows decoded to float32 once and its top ``k`` found for all queries by FAISS's
    BLAS scan (the blocks in threads), and the rows within twice the rounding bound of the k-th
    of them all kept (a float32 dot product of ``dim`` terms of unit rows is off by at most
    ``dim`` x 2^-24 x |q| each way, so no row of the fp16 scan's top k lies further below); a
    block whose own k-th lies within it may hold more such rows: all of its rows are kept. A
    query whose kept rows include a damaged one (``check``) keeps every id: its top k is the
    part's after the damaged are left out, as :func:`exact_top` finds it."""
    rows = reader(ids)
    count, dim = rows.shape
    if count <= k or not k:
        return [ids] * len(queries)
    block = max(256, PASS_BLOCK // (4 * dim))
    starts = list(range(0, count, block))
    decoder = faiss.IndexScalarQuantizer(dim, faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT)
    scores = np.full((len(queries), len(starts), k), -np.inf, np.float32)
    positions = np.full((len(queries), len(starts), k), -1, np.int64)

    def top(number: int) -> None:
        part = rows[starts[number] : starts[number] + block]
        with one_thread():  # a thread per block; FAISS's OpenMP team over a block's decode cost 3-70x more
            floats = (decoder.sa_decode(np.ascontiguousarray(part).view(np.uint8)) if part.dtype == np.float16
                      else np.ascontiguousarray(part, dtype=np.float32))
            got, at = faiss.knn(queries, floats, min(k, len(part)), faiss.METRIC_INNER_PRODUCT)
        scores[:, number, : got.shape[1]] = got
        positions[:, number, : at.shape[1]] = np.where(at >= 0, at + starts[number], -1)

    with ThreadPoolExecutor(CORES) as pool:
        list(pool.map(top, range(len(starts))))
    scores[positions < 0] = -np.inf  # FAISS's empty slots (and NaN rows, which never enter its top)
    flat = scores.reshape(len(queries), -1)
    kth = -np.partition(-flat, k - 1, axis=1)[:, k - 1]
    floor = kth - 4 * dim * 2.0**-24 * np.linalg.norm(queries, axis=1) * (1 + NORM_TOLERANCE)
    full = (scores[:, :, k - 1] >= floor[:, None]) & (np.diff(starts + [count]) > k)[None]  # more rows may tie in
    chosen = []
    for row in range(len(queries)):
        kept = [positions[row][(scores[row] >= floor[row]) & (positions[row] >= 0)]]  # under k rows not NaN: floor -inf
        kept += [np.arange(starts[number], min(count, starts[number] + block)) for number in np.flatnonzero(full[row])]
        kept = np.unique(np.concatenate(kept))
        chosen.append(ids[kept] if check(ids[kept], rows[kept]).all() else ids)
    return chosen


def first_words(codes: np.ndarray, signs: int) -> np.ndarray:
    """Per row of ``codes`` (uint8 columns, the bits' ``signs`` bytes first), its first 8 bytes of
    bits as one uint64 (zero-padded where the bits are fewer)."""
    take = min(8, signs)
    if take == 8:
        return np.ascontiguousarray(codes[:, :8]).view(np.uint64).ravel()
    words = np.zeros((len(codes), 8), np.uint8)
    words[:, :take] = codes[:, :take]
    return words.view(np.uint64).ravel()


def runs_of(ids: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """(3, runs) int64: the first id, one past the last and the key of each run of consecutive ``ids``
    (sorted here) of one key. Copies arrive together (a burst, a re-import): at 100,000 ``dups`` rows,
    52,717 twin rows are 467 runs (11 kB, where an id and a key per row took 843 kB)."""
    order = np.argsort(ids, kind="stable")
    ids, keys = np.asarray(ids, np.int64)[order], np.asarray(keys, np.int64)[order]
    if not len(ids):
        return np.zeros((3, 0), np.int64)
    starts = np.flatnonzero(np.concatenate([[True], (np.diff(ids) != 1) | (np.diff(keys) != 0)]))
    ends = np.append(starts[1:], len(ids))
    return np.stack([ids[starts], ids[ends - 1] + 1, keys[starts]])


def pairs_of(runs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The (ids, keys) that :func:`runs_of` made ``runs`` of."""
    lengths = runs[1] - runs[0]
    ids = np.repeat(runs[0] - (np.cumsum(lengths) - lengths), lengths) + np.arange(int(lengths.sum()))
    return ids, np.repeat(runs[2], lengths)


def twin_lookup(runs: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per id: whether ``runs`` hold it, and its key there (else the id itself)."""
    if not runs.shape[1]:
        return np.zeros(len(ids), bool), ids
    at = np.searchsorted(runs[0], ids, side="right") - 1
    safe = np.maximum(at, 0)
    held = (at >= 0) & (ids < runs[1, safe])
    return held, np.where(held, runs[2, safe], ids)


def upper_bounds(errors: np.ndarray) -> tuple[float, float] | None:
    """(mean, deviation) of a sample of ``errors``, each at its one-sided 95% upper bound (the
    mean's normal bound; the deviation's chi-square bound, by Wilson and Hilferty's cube-root
    approximation); None when the sample is too small to measure."""
    if len(errors) < MIN_SAMPLE:
        return None
    free = len(errors) - 1
    mean = float(np.add.reduce(errors)) / len(errors)  # np.mean and np.std: 10 us of wrappers per query
    deviation = math.sqrt(float(np.add.reduce((errors - mean) ** 2)) / free)
    low = (1 - 2 / (9 * free) - CONFIDENT * math.sqrt(2 / (9 * free))) ** 3  # chi-square 5% quantile / free
    return mean + CONFIDENT * deviation / math.sqrt(len(errors)), max(LEAST_SPREAD, deviation / math.sqrt(low))


def units_explain(errors: np.ndarray, units: np.ndarray) -> bool:
    """Whether a sample of ``errors`` is likelier as normal with a deviation in proportion to each
    row's ``units`` than with one deviation for all (each model's own best mean and deviation, so
    the same two parameters; too few to tell: the units). The units come from the fit's model of
    the error; where it does not hold for the data (at 100,000 rows in bursts of exact copies the fit
    calibrated the code's error on copies lying on their centroids, so rows off them were given a
    unit 47 times smaller than others, and each query re-ranked the 20,000 rows of its cap) one
    spread serves better."""
    if len(errors) < MIN_SAMPLE or not (units > 0).all():
        return len(errors) < MIN_SAMPLE
    scaled, alone = deviation(errors / units), deviation(errors)
    if not scaled or not alone:  # a sample with no spread either way (rows that are copies): the one it has none in
        return not scaled and bool(alone)
    # the normal log-likelihoods at their maximum differ by n log(deviation) + sum log(unit) terms
    own = len(errors) * math.log(scaled) + float(np.log(units).sum())
    one = len(errors) * math.log(alone)
    return own <= one


def sample_size(rows: int) -> int:
    """Rows to sample from lists holding ``rows``: ``SAMPLE``, then growing as ``rows^(2/3)`` past
    ``SAMPLE_ROWS``, at most ``MAX_SAMPLE``. The sample's reads cost in proportion to its size; the
    slack of the error bound it gives falls as the square root of its size and widens the re-rank
    in proportion to the rows probed. The sum of the two is least at a size that grows as ``rows^(2/3)``."""
    return int(min(MAX_SAMPLE, max(SAMPLE, SAMPLE * (rows / SAMPLE_ROWS) ** (2 / 3))))


def deviation(values: np.ndarray) -> float:
    """``np.std(values)``, the same operations without its wrappers (15 us a call on 48 values)."""
    mean = np.add.reduce(values) / len(values)
    return math.sqrt(float(np.add.reduce(np.square(values - mean))) / len(values))


def allowing(spread: float, furthest: float, rows: float) -> float:
    """A measured ``spread``, widened where the normal model it makes is rejected (at 95%) by
    ``furthest``: how far the furthest of the rows found above the k-th score lies above the measured
    mean, in the spread's units, among ``rows`` rows; widened just enough that it is not (the largest
    of ``rows`` normal draws exceeds the ``1 - 0.05 / rows`` quantile 5% of the time). The spread is
    measured on evenly spaced rows, nearly all unrelated to the query; the rows that matter are like
    its neighbours, and on clustered data lie further out: at 100,000 ``drift15`` rows a caption's true
    top-10 in the lists not probed first lay a median 4.0 (p90 8.3) measured deviations above their
    centroid's score, as far as those found in its first lists (4.2, p90 7.2), where the largest of
    12,500 normal draws lies at about 3.9. Widening on every excess (the ``1 - 1/rows`` quantile) cost
    image queries 8-11% of CPU on ``mix``, ``iso0.79`` and ``drift55`` (their found rows lie in the lists
    nearest the query, which spread more along it) for text recall 0.974 against 0.961 on ``drift15``."""
    return max(spread, furthest / NormalDist().inv_cdf(1 - 0.05 / max(1.0, rows)))


def normal_tail(z: np.ndarray) -> np.ndarray:
    """P(N(0, 1) > z), elementwise over the array ``z``, to a relative error below 1.2e-7 far into
    the tail (Numerical Recipes' Chebyshev fit of erfc): SciPy's ``ndtr`` would add SciPy to every
    search's imports."""
    # Horner's scheme in place (the same operations, in the same order, as the formula written out:
    # -1.26551223 + t * (1.00002368 + t * (... + t * 0.17087277)); about 15% less CPU over 50,000 values)
    x = np.abs(z)
    x /= math.sqrt(2)
    t = 0.5 * x
    t += 1
    np.divide(1, t, out=t)
    poly = t * 0.17087277
    for c in (-0.82215223, 1.48851587, -1.13520398, 0.27886807, -0.18628806, 0.09678418, 0.37409196, 1.00002368):
        poly += c
        poly *= t
    poly += -1.26551223
    x *= x
    poly -= x
    upper = t
    upper *= 0.5
    upper *= np.exp(poly, out=poly)  # erfc(x) / 2
    return np.where(z >= 0, upper, 1 - upper)


def among(values: np.ndarray, pool: np.ndarray) -> np.ndarray:
    """Which of ``values`` are in ``pool`` (``np.isin``), by a binary search of the sorted pool: np.isin
    took 30-50 us a call even on ten values (its checks, and a table over their range), this a few."""
    if not len(pool):
        return np.zeros(len(values), bool)
    pool = np.sort(pool)
    return pool[np.minimum(np.searchsorted(pool, values), len(pool) - 1)] == values


def _marked(ids: np.ndarray, wanted: np.ndarray, top: int | None) -> np.ndarray:
    """Which of ``ids`` are in ``wanted`` (ids of an index whose ids lie in ``[0, top)``; None: sparse
    or negative ids), by a fresh bitmap (zeroed pages cost nothing until written): ``np.isin``'s table
    also spans the ids, but took 340 us for 70,000 candidates into 140 at 1M ids, this 95 us."""
    if top is None:
        return among(ids, wanted)
    bits = np.zeros(top, bool)
    bits[wanted] = True
    return bits[ids]


def largest(values: np.ndarray, count: int) -> np.ndarray:
    """Positions of the ``count`` largest ``values``, in no order. Over many values, the ``count``-th
    largest of an evenly spaced subset bounds the answer from below, and only the values above it are
    partitioned (one pass instead of a partition of all: 70,000 estimates at 300,000 vectors took
    0.7 ms under load)."""
    if len(values) <= count:
        return np.arange(len(values))
    stride = math.isqrt(len(values) // count)  # the subset and the values above its bound: ~sqrt(len x count) each
    if stride >= 4:
        subset = values[::stride]
        floor = np.partition(subset, len(subset) - count)[len(subset) - count]
        over = np.flatnonzero(values >= floor)
        return over if len(over) == count else over[np.argpartition(-values[over], count)[:count]]
    return np.argpartition(-values, count)[:count]


def best_first(values: np.ndarray, count: int) -> np.ndarray:
    """Positions of the ``count`` largest float32 ``values``, largest first, ties in position order
    (``np.argsort(-values, kind="stable")[:count]``, NaN last). Each value's order-preserving bits
    and its position are packed in one unsigned 64-bit key, so an unstable sort (a partition first
    when ``count`` is smaller) gives the stable order: 14,000 values in 0.4 ms against 1.4 ms."""
    count = min(count, len(values))
    if count <= 0:
        return np.zeros(0, np.int64)
    bits = (np.asarray(values, np.float32) + np.float32(0)).view(np.uint32)  # + 0: -0.0 is 0.0, as argsort has it
    # largest first: a negative value's bits ascend as it falls, a positive one's descend as it rises
    keys = np.where(bits >> 31 != 0, bits, ~bits & np.uint32(0x7FFFFFFF))
    keys[np.isnan(values)] = 0xFFFFFFFF
    packed = keys.astype(np.uint64) << np.uint64(32) | np.arange(len(values), dtype=np.uint64)
    if count < len(packed):
        packed = np.partition(packed, count - 1)[:count]
    return (np.sort(packed) & np.uint64(0xFFFFFFFF)).astype(np.int64)


def enough(chances: np.ndarray, budget: float) -> int:
    """How many of ``chances`` (ordered) to take so that the rest sum to at most ``budget``."""
    rest = np.cumsum(chances[::-1], dtype=np.float64)[::-1]  # rest[i]: the sum from i on, never increasing
    return int(np.count_nonzero(rest > budget))


class _Twins:
    """A query's candidates left unread because their stored vector is identical to a row read
    (see :meth:`IVFCodesIndex._find_twins`): each takes that row's exact score, and is read (checked)
    only if it ends in the top k."""

    def __init__(self, keys: np.ndarray, ids: np.ndarray):
        order = np.argsort(keys, kind="stable")
        self.keys, self.ids = keys[order], ids[order]
        self.unread = np.zeros(0, np.int64)  # twins merged into a top k, not read yet

    @classmethod
    def split(cls, index: IVFCodesIndex, ids: np.ndarray, candidates: np.ndarray,
              read: np.ndarray) -> tuple[np.ndarray, _Twins | None]:
        """The ``candidates`` (positions in ``ids``) to plan for, one per group of identical rows
        and none of a group ``read`` holds, and the others as twins (None: there are none)."""
        if not index._twin_table().shape[1] or not len(candidates):
            return candidates, None
        keys = index._twin_keys(ids[candidates])
        own = keys == ids[candidates]  # a group's own row (its key): kept
        twin = np.flatnonzero(~own)
        if not len(twin):
            return candidates, None
        _, first = np.unique(keys[twin], return_index=True)
        left = np.ones(len(twin), bool)
        left[first] = False
        # a group read already, or whose own row is a candidate, keeps none (two of a group read in one step
        # merged its twins twice: a top k with rows in it twice)
        left |= among(keys[twin], np.concatenate([index._twin_keys(read), keys[own]]))
        out = twin[left]
        kept = np.ones(len(candidates), bool)
        kept[out] = False
        return candidates[kept], cls(keys[out], ids[candidates[out]])

    def take(self, keys: np.ndarray) -> np.ndarray:
        """The ids of the twins of ``keys``, no longer twins here (they are to be read)."""
        taken = among(self.keys, keys)
        ids = self.ids[taken]
        self.keys, self.ids = self.keys[~taken], self.ids[~taken]
        return ids

    def merge(self, scores: np.ndarray, ids: np.ndarray, read_keys: np.ndarray, read_scores: np.ndarray,
              k: int) -> tuple[np.ndarray, np.ndarray]:
        """The top ``k`` of ``scores``, ``ids`` and up to ``k`` more twins of each row read (distinct
        ``read_keys``, exact ``read_scores``), best first; the twins merged leave the pool."""
        low, high = np.searchsorted(self.keys, read_keys), np.searchsorted(self.keys, read_keys, side="right")
        counts = np.minimum(high - low, k)
        if counts.any():
            at = np.repeat(low - (np.cumsum(counts) - counts), counts) + np.arange(counts.sum())
            self.unread = np.concatenate([self.unread, self.ids[at]])
            ids = np.concatenate([ids, self.ids[at]])
            scores = np.concatenate([scores, np.repeat(read_scores, counts)])
            left = np.ones(len(self.keys), bool)
            left[at] = False
            self.keys, self.ids = self.keys[left], self.ids[left]
        best = np.argsort(-scores, kind="stable")[:k]
        return scores[best], ids[best]

    def checked(self, search: _QuerySearch, scores: np.ndarray, ids: np.ndarray, k: int,
                report) -> tuple[np.ndarray, np.ndarray]:
        """The top ``k`` with each twin in it read and checked: a damaged one (told to ``report``) gives
        its place to the next twin of its group."""
        index = search.index
        while True:
            check = ids[among(ids, self.unread)]
            if not len(check):
                return scores, ids
            self.unread = self.unread[~among(self.unread, check)]
            _, whole = exact_top(index.reader, search.query, check, len(check), report)
            bad = among(ids, check[~among(check, whole)])
            if not bad.any():
                return scores, ids
            keys, at = np.unique(index._twin_keys(ids[bad]), return_index=True)
            scores, ids = self.merge(scores[~bad], ids[~bad], keys, scores[bad][at], k)


def distinct(scores: np.ndarray, lists: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The sampled rows' exact ``scores`` and ``lists``, each (list, score) pair once: identical rows
    (a burst of exact copies: one score in one list) are one draw of how the query lies to their photo,
    not one each. Evenly spaced rows sample a burst as often as it is large, and at 100,000 ``dups`` a
    third of a query's 48 rows were copies of 3-6 photos; counted once each, the measured spread no
    longer leans on them (image recall@10 with the scale floor alone 0.968, with this 0.973)."""
    order = np.lexsort((scores, lists))
    scores, lists = scores[order], lists[order]
    new = np.ones(len(scores), bool)
    new[1:] = (scores[1:] != scores[:-1]) | (lists[1:] != lists[:-1])
    return scores[new], lists[new]


class _QuerySearch:
    """One query after its first probed lists were scanned (``estimates`` of ``ids``): how
    many more lists to probe and rows to re-rank, from errors measured on the query itself."""

    def __init__(self, index: IVFCodesIndex, query: np.ndarray, projected: np.ndarray, centroid_scores: np.ndarray,
                 order: np.ndarray, probes: int, widest: int, selector, share: float, least: bool,
                 estimates: np.ndarray, ids: np.ndarray):
        self.index, self.query, self.projected, self.selector, self.share = index, query, projected, selector, share
        self.least = least  # the estimator of IVFCodesIndex._range, one for all of the query's lists
        self.centroid_scores = centroid_scores
        self.first, self.rest = order[:probes], order[probes:]  # the lists probed first and the others, best first
        self.widest = widest  # the most lists the first may grow to (see reranked)
        self.read = (np.zeros(0, np.float32), np.zeros(0, np.int64))  # rows scored exactly: (scores best first, ids)
        self.tried = np.zeros(0, np.int64)  # the ids asked for, sorted (damaged rows too: in none of read)
        self.beyond = np.zeros(0, np.int64)  # rows read that lie past the first lists (a sample of lists not grown)
        self.estimates, self.ids = estimates, ids
        self.whole = index._exact_all  # the one exact pass over every row (a batch defers it: _search_codes)

    def _probe(self, lists: np.ndarray, floor: float = FLOOR) -> None:
        """Add the rows of ``lists`` to the candidates; where FAISS's own estimates are taken (not
        ``least``), only those estimated above ``floor``."""
        if len(lists):
            estimates, ids = self.index._range(self.projected[None], self.centroid_scores[None], lists[None],
                                               self.selector, self.least, floor=floor)[0]
            self.estimates, self.ids = np.concatenate([self.estimates, estimates]), np.concatenate([self.ids, ids])

    def _read(self, ids: np.ndarray) -> None:
        """Score ``ids`` exactly into ``read``, each row once a query (a plan that grows its first lists
        asks again for rows it read)."""
        unread = np.setdiff1d(ids, self.tried)
        got, got_ids = exact_top(self.index.reader, self.query, unread, len(unread), self.index.check)
        self.tried = np.union1d(self.tried, unread)
        scores, ids = np.concatenate([self.read[0], got]), np.concatenate([self.read[1], got_ids])
        best = np.argsort(-scores, kind="stable")
        self.read = scores[best], ids[best]

    def _kth(self, k: int, allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, float]:
        """The exact top ``k`` of the rows read (those ``allowed``: sampled rows the filter does not pass
        measure, but are no results) and its k-th score (-inf: fewer)."""
        scored, scored_ids = self.read
        if allowed is not None:
            passed = np.isin(scored_ids, allowed, assume_unique=True)
            scored, scored_ids = scored[passed], scored_ids[passed]
        top_scores, top_ids = scored[:k], scored_ids[:k]
        return top_scores, top_ids, float(top_scores[k - 1]) if len(top_scores) >= k else -np.inf

    def _exact(self, ids: np.ndarray) -> np.ndarray:
        """The exact scores of ``ids`` (asked for already), as float64 for the error sums; NaN: damaged."""
        scored, scored_ids = self.read
        exact = np.full(len(self.tried), np.nan)
        exact[np.searchsorted(self.tried, scored_ids)] = scored
        return exact[np.searchsorted(self.tried, ids)]

    def estimated(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The top ``k`` estimates (no re-rank); too few allowed rows probed: every list."""
        if len(self.ids) < k:
            self._probe(self.rest)
        best = best_first(self.estimates, k)  # a stable argsort of 190,000 estimates (1M rows): 13 ms of a 20 ms search
        return self.estimates[best], self.ids[best]

    def _sample(self, lists: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:func:`sample_size` rows evenly spaced over ``lists`` (filter or not): (ids, their lists)."""
        ids_of, sizes = self.index._list_ids(), self.index._sizes[lists]
        total = int(sizes.sum())
        count = min(sample_size(total), total)
        positions = ((np.arange(count) + 0.5) * total / max(1, count)).astype(np.int64)
        ends = np.cumsum(sizes)
        which = np.searchsorted(ends, positions, side="right")
        offsets = positions - (ends[which] - sizes[which])
        held = lists[which]
        return np.array([ids_of[w][o] for w, o in zip(held.tolist(), offsets.tolist())], np.int64), held

    def _more_lists(self, rest: np.ndarray, kth: float, far: np.ndarray, far_lists: np.ndarray, found: np.ndarray,
                    found_exact: np.ndarray) -> np.ndarray:
        """The lists of ``rest`` (not probed first; best centroid first) to probe, as they may hold a
        row scoring above ``kth``. ``far``: the exact scores of sampled rows of the first of them (as
        many lists as were probed first), in ``far_lists``: how far rows lie above their list's
        centroid score, in units of the list's own scale (:meth:`IVFCodesIndex._scales`), at
        95% upper bounds, gives each list's expected rows above ``kth`` (normal tails), and lists
        are probed until the rest expect fewer than ``misses / 2``. The spread is measured on the
        lists next in line, not on those probed first: rows of the lists nearest the query
        spread more along it (at 300,000 ``mix`` vectors, image queries probed a median 625 of
        1,024 lists with the first lists' spread, 238 with the next lists': recall@10 0.975 and 0.965).
        The rows of the first lists found at or above ``kth`` (``found``, scores ``found_exact``) widen
        that spread where they lie further out than it allows (:func:`allowing`)."""
        scales = self.index._scales()
        far, far_lists = distinct(far, far_lists)
        around = upper_bounds((far - self.centroid_scores[far_lists]) / scales[far_lists])
        if around is None or kth == -np.inf:  # nothing to measure (a list of a few rows) or to beat
            return rest
        shift, spread = around
        if len(found):  # rows like the query's neighbours lie further out than the sample's: see allowing
            lists = self.index._lists_holding(found, self.first, self.ids)  # only the first lists' rows yet
            furthest = float(((found_exact - self.centroid_scores[lists]) / scales[lists]).max()) - shift
            spread = allowing(spread, furthest, float(self.index._sizes[self.first].sum()) * self.share)
        chances = self.index._sizes[rest] * self.share * normal_tail(
            (kth - self.centroid_scores[rest] - shift * scales[rest]) / (spread * scales[rest]))
        return rest[: enough(chances, self.index.misses / 2)]

    def _wants_most(self, kth: float, more: np.ndarray, far: np.ndarray, far_exact: np.ndarray, shift: float,
                    spread: float, row_units) -> bool:
        """Whether the re-rank would want ``WHOLE_SHARE`` of the rows or more, judged before the lists
        ``more`` are probed: the first lists' candidates by their chances of beating ``kth``, each row
        of ``more`` as one of the sampled rows of the lists next in line (ids ``far``, exact scores
        ``far_exact``) at its expected estimate (``(kth - s) / (spread u)``: the mean error cancels),
        taken best chance first until the rest sum to the budget, as the re-rank takes them. Lists
        further out hold rows further below, so this over-counts on clustered data (where ``more``
        is few lists), and a typical estimate under-counts the tails. Data with no structure for the
        codes (isotropic vectors) wants most rows: one exact pass now spares the scan of every other
        list's codes and their chances (100,000 isotropic 256-d vectors: 28 ms of CPU a query, now 10)."""
        index = self.index
        rows = int(index._sizes[more].sum() * self.share)
        if kth == -np.inf or len(far) < MIN_SAMPLE or len(self.ids) + rows < WHOLE_SHARE * index.count():
            return False
        units_of = (lambda ids: None) if row_units is None else row_units[0]
        own, theirs = units_of(self.ids), units_of(far)
        own = np.ones(len(self.ids), np.float32) if own is None else own
        theirs = np.ones(len(far), np.float32) if theirs is None else theirs
        chances = np.concatenate([normal_tail((kth - self.estimates - shift * own) / (spread * own)),
                                  normal_tail((kth - far_exact) / (spread * theirs))])
        weights = np.concatenate([np.ones(len(own)), np.full(len(far), rows / len(far))])
        # Rows whose chance is under an equal share of the budget over every row's weight are among the
        # lowest and together within it: left out before the sort, their sum taken off the budget (at
        # 1M ``mix`` the sort of every candidate, 200,000, was 14% of an image query's CPU).
        low = chances <= index.misses / 2 / float(weights.sum())
        budget = index.misses / 2 - float((chances[low] * weights[low]).sum(dtype=np.float64))
        chances, weights = chances[~low], weights[~low]
        order = best_first(chances, len(chances))  # a stable argsort of 300,000 chances took 39 ms, this 6
        rest = np.cumsum((chances * weights)[order][::-1])[::-1]  # the chances from each row on
        return float(weights[order][rest > budget].sum()) >= WHOLE_SHARE * index.count()

    def reranked(self, k: int, cap: int, allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """The exact top ``k``: the best ``FIRST`` x k estimates and the sampled rows scored
        first; then every further list whose centroid score, plus the measured spread of rows
        around their centroid, could reach the k-th exact score (where that is as many lists as were
        scanned first, up to ``widest``, those are scanned as first lists and the plan starts again, the
        rows read so far kept); then every candidate whose
        estimate, plus the measured estimate error in its unit, could, best chance first in doubling steps, each
        step's k-th exact score raising the bar (at most ``cap`` rows, past it only as many as fill a top k
        the rows read do not; a step takes the rest where it is at most ``WHOLE`` steps)."""
        index, misses = self.index, self.index.misses
        rest = self.rest
        far, far_lists = self._sample(rest[: len(self.first)])  # the lists next in line
        first = largest(self.estimates, FIRST * k)
        if index._twin_table().shape[1]:  # a burst of identical rows fills the best estimates: one read each
            first = first[np.unique(index._twin_keys(self.ids[first]), return_index=True)[1]]
        growing = len(self.first) < self.widest and len(rest) > 0
        # A plan that may grow its first lists reads their sample only once it does not (a grown plan samples its
        # grown lists): at 1M ``mix`` the first round's work was 2 ms of a 16 ms image query.
        sample = np.zeros(0, np.int64) if growing else self._sample(self.first)[0]
        self._read(np.concatenate([self.ids[first], sample, far]))
        top_scores, top_ids, kth = self._kth(k, allowed)

        def more_lists() -> np.ndarray:
            exact = self._exact(far)
            whole = ~np.isnan(exact)
            held = ~among(top_ids, np.concatenate([far, self.beyond]))  # the exact top k so far the first lists hold
            return (self._more_lists(rest, kth, exact[whole], far_lists[whole], top_ids[held], top_scores[held])
                    if len(rest) else rest)

        more = more_lists()
        if growing:
            if len(more) >= len(self.first):
                # Wanting as many lists again as were scanned first: those are scanned as first lists too, and the
                # plan starts again past them, where its lists' spread is measured on lists further out (narrower);
                # with the next lists probed as more, 128 first lists at 1M `mix` took 15.45 ms, 13.99 grown so.
                grown = rest[: self.widest - len(self.first)][: len(self.first)]
                self.beyond = np.concatenate([self.beyond, far[~np.isin(far_lists, grown)]])
                self._probe(grown)
                self.first, self.rest = np.concatenate([self.first, grown]), rest[len(grown) :]
                return self.reranked(k, cap, allowed)
            sample, _ = self._sample(self.first)
            self._read(sample)
            before = kth
            top_scores, top_ids, kth = self._kth(k, allowed)
            if kth != before:
                more = more_lists()
        scored, scored_ids = self.read
        # The errors of the sampled rows (of the first lists: measured before more are probed), in
        # each row's own unit (see IVFCodesIndex._row_units); a bitmap finds them (a binary search
        # of every candidate took 0.5 ms for 15,000).
        row_units = index._row_units(self.query, self.projected)
        in_sample = np.flatnonzero(_marked(self.ids, sample, index._id_top))
        measured = self._exact(self.ids[in_sample]) - self.estimates[in_sample]
        in_sample, measured = in_sample[~np.isnan(measured)], measured[~np.isnan(measured)]  # damaged rows measure nothing
        sample_units = None if row_units is None else row_units[0](self.ids[in_sample])
        if sample_units is not None and not units_explain(measured, sample_units):
            sample_units = None
        errors = upper_bounds(measured if sample_units is None else measured / sample_units)
        if errors is None or sample_units is None:
            row_units = None
            errors = upper_bounds(measured)
        if errors is None:  # a filter passed too few sampled rows: the fit's model of the error
            errors = tuple(float(v[0]) for v in index.binarizer.error_model(self.query[None]))
        shift, spread = errors
        reach = shift + FAR * spread  # in units: no candidate further under the k-th score is needed
        low, high = (1.0, 1.0) if row_units is None else row_units[1:]
        bound = high if reach > 0 else low  # the unit that reaches furthest
        far_exact = self._exact(far)
        whole = ~np.isnan(far_exact)
        if allowed is None and self._wants_most(kth, more, far[whole], far_exact[whole], shift, spread, row_units):
            return self.whole(self.query, k)
        # the lists probed next keep only rows that can pass the test below (the margin: rounding)
        self._probe(more, kth - reach * bound - 1e-4 if kth > -np.inf else FLOOR)
        # Candidates (positions in self.estimates) not scored yet whose estimate, plus the measured
        # error, could reach the k-th score: the test over every estimate is one pass, the rest
        # works on those that pass it.
        pre = np.flatnonzero(self.estimates + reach * bound >= kth)
        pre = pre[~_marked(self.ids[pre], self.tried, index._id_top)]
        # Rows identical to one read, or to another candidate, are one row to the plan: their exact
        # scores are its (one chance in the budget, where each copy of a burst took its own).
        pre, twins = _Twins.split(index, self.ids, pre, scored_ids)
        if twins is not None:
            read_keys, at = np.unique(index._twin_keys(scored_ids), return_index=True)
            top_scores, top_ids = twins.merge(top_scores, top_ids, read_keys, scored[at], k)
            kth = float(top_scores[k - 1]) if len(top_scores) >= k else -np.inf
        units = (None if row_units is None else row_units[0](self.ids[pre])) if len(pre) else None
        units = np.ones(len(pre), np.float32) if units is None else units
        keep = self.estimates[pre] + reach * units >= kth
        near, units = pre[keep], units[keep]
        # Only candidates whose own chance exceeds an equal share of the budget can be needed: the
        # others together stay within it (their part is taken off the budget), and need no sort
        # (sorting every estimate of 70,000 rows took 7 ms).
        chances = normal_tail((kth - self.estimates[near] - shift * units) / (spread * units))
        needed = chances > misses / 2 / max(1, len(near))
        budget = misses / 2 - float(chances[~needed].sum(dtype=np.float64))  # the k-th score only rises: a bound throughout
        near, units = near[needed], units[needed]
        if allowed is None and len(near) + len(scored_ids) >= WHOLE_SHARE * index.count():
            # Data with no structure for the codes (isotropic vectors, a query from no distribution
            # of the collection's) wants most rows: one exact pass reads them for less and misses none.
            chances = np.sort(chances[needed])[::-1]
            if enough(chances, budget) + len(scored_ids) >= WHOLE_SHARE * index.count():
                return self.whole(self.query, k)
        # Best chance first, at the k-th score so far (with one unit: best estimate first).
        standing = (self.estimates[near] + shift * units - kth) / (spread * units)
        # at most the cap's rows, but as many as fill a top k the rows read so far do not (a filter's rows: their
        # first lists may hold fewer than k of them, and the first reads can use up a small cap)
        order = best_first(standing, max(0, cap - len(scored_ids), k - len(top_ids)))
        near, units, below = near[order], units[order], -standing[order]  # below: ascending
        estimates, ids = self.estimates[near], self.ids[near]
        first_kth, widest = kth, spread * float(units.max()) if len(units) else 1.0

        def wanted(start: int) -> int:  # candidates from start on to re-rank, at the k-th exact score so far
            # Those FAR units under it add under 1e-15 each: left out of the sum (at 300,000 vectors
            # a caption's tails over every candidate were computed at each step). A candidate's
            # standing only falls as the k-th score rises, by at least the rise over the widest unit.
            rise = kth - first_kth if first_kth > -np.inf else 0.0
            end = max(start, int(np.searchsorted(below, FAR - rise / widest, side="right")))
            part = slice(start, end)
            return start + enough(normal_tail((kth - estimates[part] - shift * units[part]) / (spread * units[part])),
                                  budget)

        if allowed is not None and wanted(0) + len(top_ids) >= len(allowed):
            got_scores, got = exact_scan(index.reader, self.query[None], allowed, k, index.check)
            return got_scores[0], got[0]
        lost: list[np.ndarray] = []

        def report(ids_read: np.ndarray, rows: np.ndarray) -> np.ndarray:  # damaged rows: kept to read their twins instead
            whole = index.check(ids_read, rows)
            if not whole.all():
                lost.append(ids_read[~whole])
            return whole

        start, step = 0, STEP
        while start < len(ids):
            stop = wanted(start)
            if stop - start > WHOLE * step:  # else one step takes the rest: fewer, larger steps
                stop = start + step
            if stop <= start:
                break
            more_scores, more_ids = exact_top(index.reader, self.query, ids[start:stop], k, report)
            if twins is not None and lost:  # a damaged row's twins are read in its place (each checked itself)
                stand_ins = twins.take(index._twin_keys(np.unique(np.concatenate(lost))))
                lost.clear()
                if len(stand_ins):
                    got_scores, got = exact_top(index.reader, self.query, stand_ins, k, report)
                    more_scores, more_ids = np.concatenate([more_scores, got_scores]), np.concatenate([more_ids, got])
            top_scores, top_ids = np.concatenate([top_scores, more_scores]), np.concatenate([top_ids, more_ids])
            if twins is not None:  # the twins of the rows just read (each read row is one group at most)
                top_scores, top_ids = twins.merge(top_scores, top_ids, index._twin_keys(more_ids), more_scores, k)
            best = np.argsort(-top_scores, kind="stable")[:k]
            top_scores, top_ids = top_scores[best], top_ids[best]
            kth = float(top_scores[k - 1]) if len(top_scores) >= k else -np.inf
            start, step = stop, 2 * step
        return (top_scores, top_ids) if twins is None else twins.checked(self, top_scores, top_ids, k, report)
