"""Exact scoring of stored float vectors: the reference stage of the code backends, and the
re-rank of their shortlists; and the check of stored rows, made where they are scored.

Rows are stored at unit length, so a row whose length is not 1 was damaged on disk (bytes flipped
or zeroed); a collection also checks each row against the checksum stored with it, which a flipped
sign bit fails too (``RowCheck``; ``VectorStore.unchanged``). The rows a scan returns as its top are
checked (the length by FAISS's fp16 scan against a zero query: about 1.7 times the scan's own cost
per row, on a few rows); a damaged row among them is reported, left out, and the top scored again
without it, so no result shows a damaged row's score. A damaged row that scores below the top is
not reported here: ``Collection.repair`` checks every row.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import faiss
import numpy as np

from .base import SearchBackend

#: Reads the float vectors (float16 as stored, or float32) of int64 ids, in the order given. A reader whose
#: ``reads_columns`` attribute is true also takes a column slice, ``reader(ids, columns)``, and reads only those.
VectorReader = Callable[..., np.ndarray]
#: Which stored rows are whole: given item ids and the rows read for them, one bool per row; it
#: reports the damaged ones (they are left out of results either way).
RowCheck = Callable[[np.ndarray, np.ndarray], np.ndarray]

#: How far a stored row's squared length may be from 1 and the row still count as whole. Rows are
#: stored L2-normalised, and float16 rounding (relative error at most u = 2**-11 per component)
#: moves a unit row's squared length by at most 2u + u**2; this is twice that. Damage that matters
#: moves it further: a byte of random bits, a flipped exponent bit, zeros. A flipped sign bit keeps
#: the length: the row's checksum catches that (``RowCheck``).
NORM_TOLERANCE = 4 * 2.0**-11

#: FAISS's view of memory it does not own (``MaybeOwnedVector``, FAISS 1.15 here): the re-rank scores the
#: gathered float16 rows where they lie instead of copying them into the index (``add_sa_codes``): 10,000
#: random rows of 1,664-d read and scored in 29 ms with the copy, 19-21 ms without (the read alone 13 ms).
_VIEWS = getattr(faiss, "MaybeOwnedVectorUInt8", None)
_SET_CODES, _SET_NTOTAL = faiss.IndexFlatCodes.codes.__set__, faiss.Index.ntotal.__set__
#: Rows a length check hands FAISS per call (its heap holds every row of the call).
CHECK_ROWS = 2048
#: Bytes of float16 rows one scattered read copies: a larger copy lies past glibc's mmap threshold (32 MB
#: at most), fresh pages faulted in one by one (20,000 scattered 1664-d rows of 1,000,000: 34.6 ms of CPU as
#: one copy, 22.2 ms in copies of 1,024 rows; of 200,000: 29.4 and 18.6 ms).
GATHER_BYTES = 4 << 20
#: Rows of consecutive ids one read takes: the reader lends them in place, no copy.
RUN_ROWS = 65536
#: A query whose non-zero coordinates span at most this share of the dimensions is scored on that span alone,
#: where the reader can read columns: the default encoder's text vectors are zero on the 1,280 visual
#: dimensions, and 15,000 rows of 1M x 1,664 took 15.0 ms read and scored whole, 2.2 ms on their 384.
SPAN_SHARE = 0.5


def held_ids(backend: SearchBackend, allowed: np.ndarray | None) -> np.ndarray:
    """The ids ``backend`` holds (only those in ``allowed``, when given), ascending."""
    held = np.sort(backend.ids())
    return held if allowed is None else np.intersect1d(held, allowed)


def lengths_only(ids: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The ``RowCheck`` of rows without checksums (a backend outside a collection): their lengths."""
    return whole_rows(rows)


def read_parts(ids: np.ndarray, dim: int, copied: bool = False) -> list[np.ndarray]:
    """Sorted ``ids`` in the parts one read takes: ``RUN_ROWS`` of a run of consecutive ids (read in
    place), else, or where every read is ``copied`` (a span of columns), ``GATHER_BYTES`` of ``dim``-d
    float16 rows (a copy)."""
    run = not copied and len(ids) > 0 and int(ids[-1]) - int(ids[0]) == len(ids) - 1
    step = RUN_ROWS if run else max(1, GATHER_BYTES // (2 * max(1, dim)))
    return [ids[start : start + step] for start in range(0, len(ids), step)]


def exact_scan(reader: VectorReader, queries: np.ndarray, ids: np.ndarray, k: int,
               check: RowCheck = lengths_only) -> tuple[np.ndarray, np.ndarray]:
    """The rows of sorted ``ids`` scored exactly for all queries (the reference a code stage is
    measured against), a read at a time (:func:`read_parts`) so the float copies stay small. Damaged
    rows found among a scan's top (by ``check``) are left out. Where the reader reads columns and every
    query is zero outside a span of them (see :func:`nonzero_span`), only that span is read and scored."""
    k = min(k, len(ids))
    scores = np.full((len(queries), k), -np.inf, np.float32)
    found = np.full((len(queries), k), -1, np.int64)
    span = nonzero_span(np.abs(queries).max(axis=0)) if getattr(reader, "reads_columns", False) and k else None
    scored = queries if span is None else np.ascontiguousarray(queries[:, span])
    for chunk in read_parts(ids, scored.shape[1], span is not None) if k else []:  # FAISS takes no k = 0
        rows = reader(chunk) if span is None else reader(chunk, span)
        got_scores, positions = _scan_rows(rows, scored, k)
        top = np.unique(positions[positions >= 0])
        if check(chunk[top], rows[top] if span is None else reader(chunk[top])).all():  # whole rows checked
            got = np.where(positions >= 0, chunk[np.maximum(positions, 0)], -1)
        else:  # rare: every row of the chunk checked, the damaged left out, the rest scanned again
            rows = rows if span is None else reader(chunk)
            whole = check(chunk, rows)
            chunk, rows = chunk[whole], rows[whole]
            got_scores, positions = _scan_rows(rows, queries, k) if len(chunk) else (scores[:, :0], found[:, :0])
            got = np.where(positions >= 0, chunk[np.maximum(positions, 0)], -1)
        merged_scores = np.concatenate([scores, got_scores], axis=1)
        merged = np.concatenate([found, got], axis=1)
        best = np.argsort(-merged_scores, axis=1, kind="stable")[:, :k]
        scores, found = np.take_along_axis(merged_scores, best, 1), np.take_along_axis(merged, best, 1)
    return scores, found


def _scan_rows(rows: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """FAISS's top ``k`` of ``rows`` for each query (scores, row positions; -1 past the rows)."""
    if rows.dtype == np.float16:
        scorer = fp16_scorer(rows)
    else:
        scorer = faiss.IndexFlatIP(rows.shape[1])
        scorer.add(np.ascontiguousarray(rows, dtype=np.float32))
    return scorer.search(queries, min(k, len(rows)))


def exact_top(reader: VectorReader, query: np.ndarray, ids: np.ndarray, k: int,
              check: RowCheck = lengths_only) -> tuple[np.ndarray, np.ndarray]:
    """The top ``k`` of ``ids`` (none -1) by the inner product of their stored vectors with
    ``query``: (scores, ids), best first, a read at a time (:func:`read_parts`). Damaged rows among
    a read's top (by ``check``) are left out: the top then holds fewer than ``k`` only where fewer
    whole rows were read."""
    if not len(ids):  # nothing to read (a reader and a check need not take none)
        return np.zeros(0, np.float32), np.zeros(0, np.int64)
    span = nonzero_span(query) if getattr(reader, "reads_columns", False) else None
    width = len(query) if span is None else span.stop - span.start
    parts = read_parts(np.sort(ids), width, span is not None)  # sorted: kinder to the map
    if len(parts) <= 1:
        return _read_top(reader, query, parts[0], k, check, span)
    tops = [_read_top(reader, query, part, k, check, span) for part in parts]
    scores, found = np.concatenate([top[0] for top in tops]), np.concatenate([top[1] for top in tops])
    best = np.argsort(-scores, kind="stable")[:k]
    return scores[best], found[best]


def _read_top(reader: VectorReader, query: np.ndarray, ids: np.ndarray, k: int,
              check: RowCheck, span: slice | None = None) -> tuple[np.ndarray, np.ndarray]:
    """:func:`exact_top` of sorted ``ids`` in one read; with ``span``, the columns where ``query`` is not
    zero are read and scored (the same scores), and the top's rows are read whole to be checked."""
    if span is None:
        rows = reader(ids)
        scores, best = _top_inner_products(rows, query, k)
        # A top of every row read (a plan's first rows) is checked where the rows lie, not gathered in its order
        top = (ids, rows) if len(best) == len(ids) else (ids[best], rows[best])
    else:
        scores, best = _top_inner_products(reader(ids, span), np.ascontiguousarray(query[span]), k)
        top = (ids[best], reader(ids[best]))
    if not check(*top).all():  # rare: every row read and checked, the top scored again without the damaged
        rows = reader(ids) if span is not None else rows
        whole = check(ids, rows)
        ids, rows = ids[whole], rows[whole]
        scores, best = _top_inner_products(rows, query, k)
    return scores, ids[best]


def nonzero_span(query: np.ndarray) -> slice | None:
    """The columns from ``query``'s first non-zero coordinate to its last, where they are at most
    ``SPAN_SHARE`` of them (else None: the whole row is read)."""
    where = np.flatnonzero(query)
    if not len(where) or where[-1] + 1 - where[0] > SPAN_SHARE * len(query):
        return None
    return slice(int(where[0]), int(where[-1]) + 1)


def whole_rows(rows: np.ndarray) -> np.ndarray:
    """One bool per row of ``rows`` (float16 or float32): whether its squared length is 1 (within
    ``NORM_TOLERANCE``); NaN and infinite values make a row damaged."""
    if rows.dtype != np.float16:
        rows = np.asarray(rows, dtype=np.float32)
        with np.errstate(over="ignore", invalid="ignore"):
            lengths = np.einsum("ij,ij->i", rows, rows)
    else:  # FAISS's fp16 distances to zero: numpy's float16 cast alone took 3-4x as long
        lengths = np.full(len(rows), np.nan, np.float32)  # a NaN or infinite row never enters FAISS's heap
        zero = np.zeros((1, rows.shape[1]), np.float32)
        with one_thread():  # a few rows: an OpenMP team would cost more than the call
            for start in range(0, len(rows), CHECK_ROWS):
                chunk = rows[start : start + CHECK_ROWS]
                got, at = fp16_scorer(chunk, faiss.METRIC_L2).search(zero, len(chunk))
                lengths[start + at[0][at[0] >= 0]] = got[0][at[0] >= 0]
    return np.abs(lengths - 1.0) <= NORM_TOLERANCE


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """FAISS's OpenMP threads set to one in this thread while a query's plan (or a check of a few
    rows) runs, then as they were: its FAISS calls are small (a few lists, a few hundred rows),
    and an OpenMP team per call cost more than the call (130 fp16 rows scored with 2 threads on a
    loaded machine: 11.5 ms of CPU, with one 0.08 ms). A batch's parallelism is its threads."""
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(threads)


def fp16_scorer(rows: np.ndarray, metric: int = faiss.METRIC_INNER_PRODUCT) -> faiss.IndexScalarQuantizer:
    """An index (inner product unless ``metric`` says) over float16 ``rows``, scoring their bytes in place (it keeps them
    alive), or a copy of them in older FAISS: FAISS's SIMD fp16 conversion measured 7x faster than
    numpy's float16 -> float32 cast for 500 rows."""
    scorer = faiss.IndexScalarQuantizer(rows.shape[1], faiss.ScalarQuantizer.QT_fp16, metric)
    data = np.ascontiguousarray(rows).view(np.uint8)
    if _VIEWS is None:
        scorer.add_sa_codes(data)
    else:  # with the index's own (null) owner: the view frees nothing; the index keeps the array alive
        # SWIG's setters themselves: FAISS's checking __setattr__ reads each attribute first (8 us a scorer)
        _SET_CODES(scorer, _VIEWS.create_view(faiss.swig_ptr(data), data.size, scorer.codes.owner))
        _SET_NTOTAL(scorer, len(rows))
        scorer.referenced_objects = [data]
    return scorer


def _top_inner_products(rows: np.ndarray, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top ``k`` of ``rows @ query`` (scores, row positions), best first; float16 rows are
    scored by FAISS's fp16 scan."""
    k = min(k, len(rows))
    if rows.dtype != np.float16:
        exact = rows.astype(np.float32, copy=False) @ query
        best = np.argsort(-exact, kind="stable")[:k]
        return exact[best], best
    if not k:  # FAISS takes no k = 0
        return np.zeros(0, np.float32), np.zeros(0, np.int64)
    scores, best = fp16_scorer(rows).search(query[None].astype(np.float32), k)
    return scores[0], best[0]
