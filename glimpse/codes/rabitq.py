"""``ivf-rabitq``: a coarse quantiser over a learned projection, with RaBitQ codes of the residuals.

The fit of :class:`glimpse.backends.ivfcodes.IVFCodesIndex` (issue 15): codes that keep their
recall on clusters of near-copies, where one global binary code cannot tell the copies apart.

* ``projection`` (dim, bits): the top ``bits`` eigenvectors of the uncentred second moment
  (so ``q . x`` is kept as an inner product, not shifted per row by a centring), turned by a
  Haar-random rotation so that no coordinate carries most of the variance (RaBitQ's 1-bit
  codes assume as much). In the projected space:
* ``centroids`` (lists, bits): k-means centroids, the coarse quantiser (IVF lists). A row is
  stored as the sign bits of its residual to its centroid plus two float factors (FAISS's
  ``IndexIVFRaBitQ``): ``bits / 8 + 8`` bytes, scored against the float query with RaBitQ's
  unbiased inner-product estimator (Gao & Long, SIGMOD 2024).
* ``outside_reference``: the share of a row's squared norm the projection leaves out, on rows
  of the fit's sample it was not fitted on (a projection fitted on the sample's even rows,
  measured on its odd ones): what rows of the fit's own distribution, added later, leave out.
  The collection refits once its rows leave out clearly more (see
  :meth:`glimpse.backends.ivfcodes.IVFCodesIndex.refit_reason`): rows of another
  distribution were added, which the codes can only rank by their exact scores.
* An error model of the estimates, the floor under the error each search measures on its own
  query (see :mod:`glimpse.backends.ivfcodes`). An estimate misses the exact
  ``q . x`` by the part of ``q . x`` outside the projection (``q_out . x_out``: its mean
  ``q . tail_mean`` and, row to row, a Gaussian-like spread from the tail's covariance, whose
  top ``TAIL_DIRECTIONS`` directions are kept and the rest taken as isotropic), plus the
  RaBitQ code error (``rabitq_error * |projected query|``, calibrated at fit time). Text
  queries lie far from every image and mostly outside the image projection: their spread is
  large.

Codes are only meaningful in IVF lists (see the index); ``encode`` is the plain sign of the
projection, which makes this a usable, if plain, binarizer elsewhere.
"""

from __future__ import annotations

import faiss
import numpy as np

from .base import Binarizer, orthogonal

#: Tail directions whose variance is modelled one by one (the rest: one isotropic level).
TAIL_DIRECTIONS = 64
#: Rows used for the second moments and the k-means (enough for 4,096 lists).
FIT_ROWS = 100_000
#: RaBitQ quantises the query to this many bits per coordinate: far faster than a float query
#: (50k: 0.94 ms against 4.5 ms at 8 bits), and 4 bits scan the probed lists in 0.69x the CPU of 8
#: (300,000 ``mix``, 250 queries' first lists) at the same recall (image / text R@10 0.976 / 0.982
#: against 0.978 / 0.980): the per-query error sample sees the coarser query's error.
QUERY_BITS = 4


#: The most coarse lists: finer lists are probed in greater numbers past the first (at 1,000,000 ``mix``
#: rows, 4,096 lists with 128 first: a median 1,244 more, more rows than 1,024 lists scan), and each costs
#: a set-up (one thread: 1.5 us with FAISS's estimate, 11 us where each list is scanned for the query's
#: own residual, as for captions, against 40 ns a row). There 4,096 lists (512 first) took a CPU p50 of
#: 56.7 ms against 26.0-30.0 for 2,048 (256 first) in the same run, and 62-72 ms with 64-256 first
#: (benchmarks/SEARCH_RESULTS.md).
MAX_LISTS = 2048


def default_lists(rows: int, sample: int | None = None) -> int:
    """Coarse lists for a collection of ``rows`` vectors: ~4 sqrt(rows), a power of two in [8,
    ``MAX_LISTS``], and at most the ``sample`` rows the k-means is fitted on (default ``rows``).
    From the collection's size, not the fit's sample (at most 100,000 rows), which held every
    collection past 32,768 rows at 1,024 lists: at 1,000,000 ``mix`` rows 2,048 lists (256 probed
    first) took 0.75-0.91x the CPU p50 of 1,024 (128 first) in the same runs (26.0-30.3 ms against
    33.4-39.8; a query read a median 959 float16 rows instead of 1,785), at image / text recall@10
    0.972 / 0.972 against 0.984 / 0.972; at 300,000 ``mix`` even (0.83-1.04x, recall 0.972 / 0.982
    against 0.980 / 0.994); on isotropic copies (``iso0.79``, 300,000 and 1M) 1.02-1.06x
    for image queries, 0.73-0.86x for captions, at image recall 0.999 against 0.995-0.996
    (benchmarks/SEARCH_RESULTS.md)."""
    lists = int(np.clip(2 ** round(np.log2(4 * np.sqrt(rows))), 8, MAX_LISTS))
    return lists if sample is None else min(lists, 2 ** int(np.log2(max(8, sample))))


class RaBitQFit(Binarizer):
    name = "ivf-rabitq"
    version = 1

    def __init__(self, bits: int = 256, seed: int = 0) -> None:
        super().__init__(bits, seed)
        self.projection: np.ndarray | None = None  # (dim, bits)
        self.centroids: np.ndarray | None = None  # (lists, bits)
        self.tail_mean: np.ndarray | None = None  # (dim,)
        self.tail_directions: np.ndarray | None = None  # (dim, TAIL_DIRECTIONS)
        # Deviations, not variances: the file stores float16, too coarse for variances ~1e-5.
        self.tail_spread: np.ndarray | None = None  # (TAIL_DIRECTIONS,)
        self.tail_rest = 0.0  # deviation along each remaining tail direction
        self.rabitq_error = 0.0  # code error's deviation per unit of projected query norm
        self.outside_reference: float | None = None  # None: a fit of an older version, which did not measure it

    def min_fit_vectors(self, dim: int) -> int:
        return max(256, self.bits)

    def check_dim(self, dim: int) -> None:
        if dim < 8:  # bits are a multiple of 8: no projection fits
            raise ValueError(f"ivf-rabitq codes need vectors of at least 8 dimensions, not {dim}: "
                             f"search {dim}-d vectors exactly, without codes (use_codes(None))")
        if self.bits > dim:
            raise ValueError(f"ivf-rabitq codes project {dim}-d vectors to at most {dim} bits, "
                             f"not {self.bits}: use bits <= {dim}")

    @property
    def lists(self) -> int:
        return 0 if self.centroids is None else len(self.centroids)

    def _fit(self, x: np.ndarray) -> None:
        x = x[:: max(1, len(x) // FIT_ROWS)]
        rng = np.random.default_rng([self.seed, 0x4AB1])
        mean = x.mean(axis=0, dtype=np.float64)
        even, odd = x[0::2], x[1::2]
        even_moment, odd_moment = (even.T.astype(np.float64) @ even), (odd.T.astype(np.float64) @ odd)
        moment = (even_moment + odd_moment) / len(x)
        top = self._top(moment)
        self.outside_reference = self._held_out(even_moment, odd_moment)
        self.projection = (top @ orthogonal(rng, self.bits, self.bits)).astype(np.float32)
        self._fit_tail(moment - np.outer(mean, mean), mean, top)
        self._report(1)
        projected = np.ascontiguousarray(x @ self.projection)
        kmeans = faiss.Kmeans(self.bits, default_lists(self._fit_population, len(x)), niter=10, seed=self.seed, min_points_per_centroid=1)
        kmeans.train(projected)
        self.centroids = kmeans.centroids
        self._report(2)
        self.rabitq_error = self._calibrate(projected, rng)
        self._report(3)

    def _top(self, moment: np.ndarray) -> np.ndarray:
        """The top ``bits`` eigenvectors of a second moment, largest first."""
        return np.linalg.eigh(moment)[1][:, ::-1][:, : self.bits]

    def _held_out(self, fitted: np.ndarray, held: np.ndarray) -> float:
        """The share of ``held``'s rows' squared norm (their second moment, summed) that a projection
        fitted on the ``fitted`` moment leaves out. Rows a fit saw lie closer to its projection than
        new rows of the same distribution (200 rows in 1,664-d: almost wholly inside 224 bits), so
        the fit's own rows would set the bar too low; half as many rows fit a little worse, which
        errs towards fewer refits (the doubling refit covers a collection that grows)."""
        top, total = self._top(fitted), float(np.trace(held))
        return float(1 - np.einsum("db,db->", top, held @ top) / total) if total > 0 else 0.0

    def _fit_tail(self, covariance: np.ndarray, mean: np.ndarray, top: np.ndarray) -> None:
        """Mean and covariance of the part of the vectors the projection leaves out."""
        outside = np.eye(len(mean)) - top @ top.T
        self.tail_mean = (outside @ mean).astype(np.float32)
        variances, directions = np.linalg.eigh(outside @ covariance @ outside)
        variances, directions = np.maximum(variances[::-1], 0.0), directions[:, ::-1]
        rest = len(mean) - self.bits - TAIL_DIRECTIONS
        keep = TAIL_DIRECTIONS if rest > 0 else max(0, len(mean) - self.bits)
        self.tail_directions = directions[:, :keep].astype(np.float32)
        self.tail_spread = np.sqrt(variances[:keep]).astype(np.float32)
        self.tail_rest = float(np.sqrt(variances[keep:].sum() / rest)) if rest > 0 else 0.0

    def _calibrate(self, projected: np.ndarray, rng: np.random.Generator) -> float:
        """RaBitQ's error (deviation of exact - estimate, per unit of query norm) on held rows."""
        index = faiss.IndexIVFRaBitQ(self.quantizer(), self.bits, self.lists, faiss.METRIC_INNER_PRODUCT)
        index.is_trained = True  # the quantiser is filled; RaBitQ codes need no training
        index.add(projected)
        queries = projected[rng.choice(len(projected), size=min(64, len(projected)), replace=False)]
        params = faiss.IVFRaBitQSearchParameters(nprobe=min(self.lists, 16), qb=QUERY_BITS)
        estimates, ids = index.search(queries, min(100, len(projected)), params=params)
        found = ids >= 0
        exact = np.einsum("qd,qkd->qk", queries, projected[np.where(found, ids, 0)])
        errors = (exact - estimates)[found] / np.repeat(np.linalg.norm(queries, axis=1), found.sum(axis=1))
        return float(np.sqrt(np.mean(errors**2)))

    def _report(self, step: int) -> None:
        if self._fit_progress is not None:
            self._fit_progress(step, 3)

    def quantizer(self) -> faiss.IndexFlatIP:
        """The coarse quantiser: an inner-product index over the centroids."""
        quantizer = faiss.IndexFlatIP(self.bits)
        quantizer.add(np.ascontiguousarray(self.centroids, dtype=np.float32))
        return quantizer

    def error_model(self, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per query: (shift, deviation) of ``exact - estimate`` over the stored rows."""
        shift, tail, code = self.error_parts(queries)
        return shift, np.sqrt(tail**2 + code**2)

    def error_parts(self, queries: np.ndarray,
                    inside: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per query: the shift of ``exact - estimate`` over the stored rows, and the deviations of
        its two parts: the part of ``q . x`` outside the projection, and the code's error. ``inside``:
        the queries' projection, where the caller has it (a search: one product fewer per query)."""
        return self.error_parts_unchecked(self._checked(queries, "error_model"), inside)

    def error_parts_unchecked(self, queries: np.ndarray,
                              inside: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`error_parts` of float32 ``queries`` already checked (a search's: 10 us a query to check again)."""
        inside = queries @ self.projection if inside is None else inside
        outside = np.maximum(0.0, (queries**2).sum(axis=1) - (inside**2).sum(axis=1))
        along = queries @ self.tail_directions
        tail = (along**2) @ self.tail_spread**2 + self.tail_rest**2 * np.maximum(0.0, outside - (along**2).sum(axis=1))
        return queries @ self.tail_mean, np.sqrt(tail), self.rabitq_error * np.linalg.norm(inside, axis=1)

    def outside_norms(self, x: np.ndarray) -> np.ndarray:
        """Per row: the norm of its part outside the projection (the scale of its ``q_out . x_out``)."""
        inside = x @ self.projection
        return np.sqrt(np.maximum(0.0, np.einsum("nd,nd->n", x, x) - np.einsum("nb,nb->n", inside, inside)))

    def _project(self, x: np.ndarray) -> np.ndarray:
        return x @ self.projection

    def _query_vector(self, x: np.ndarray) -> np.ndarray:
        return x @ self.projection

    def _params(self) -> dict[str, np.ndarray]:
        return {"projection": self.projection, "centroids": self.centroids, "tail_mean": self.tail_mean,
                "tail_directions": self.tail_directions, "tail_spread": self.tail_spread,
                "errors": np.array([self.tail_rest, self.rabitq_error]),
                **({} if self.outside_reference is None else {"outside_reference": np.array(self.outside_reference)})}

    def _set_params(self, params: dict[str, np.ndarray], dim: int) -> None:
        projection, centroids = params["projection"], params["centroids"]
        directions, spread = params["tail_directions"], params["tail_spread"]
        if (projection.shape != (dim, self.bits) or centroids.ndim != 2 or centroids.shape[1] != self.bits
                or params["tail_mean"].shape != (dim,) or directions.shape != (dim, len(spread))):
            raise ValueError(f"{self.name} binarizer file: parameter shapes do not match bits/dim")
        self.projection = projection.astype(np.float32)
        self.centroids = centroids.astype(np.float32)
        self.tail_mean = params["tail_mean"].astype(np.float32)
        self.tail_directions = directions.astype(np.float32)
        self.tail_spread = spread.astype(np.float32)
        self.tail_rest, self.rabitq_error = (float(v) for v in params["errors"])
        reference = params.get("outside_reference")  # files of older fits have none
        self.outside_reference = None if reference is None else float(reference)
