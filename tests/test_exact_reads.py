"""exact_top and exact_scan read scattered rows a bounded copy at a time, with the same top and checks."""

from __future__ import annotations

import numpy as np
import pytest

from glimpse.backends import exact
from glimpse.backends.exact import exact_scan, exact_top, lengths_only, read_parts

DIM = 16


@pytest.fixture
def stored():
    rng = np.random.default_rng(3)
    rows = rng.standard_normal((400, DIM)).astype(np.float32)
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float16)


def reporting(reported: list):
    """A ``RowCheck`` by length that adds the damaged rows' ids to ``reported``."""

    def check(ids, rows):
        whole = lengths_only(ids, rows)
        reported.extend(ids[~whole].tolist())
        return whole

    return check


def test_scattered_ids_are_read_in_copies_of_bounded_size_and_runs_whole(monkeypatch):
    monkeypatch.setattr(exact, "GATHER_BYTES", 2 * DIM * 32)  # 32 rows a copy
    scattered = np.arange(0, 400, 3)
    parts = read_parts(scattered, DIM)
    assert [len(p) for p in parts] == [32, 32, 32, 32, 6] and np.array_equal(np.concatenate(parts), scattered)
    assert [len(p) for p in read_parts(np.arange(100, 300), DIM)] == [200]  # consecutive: one read, in place
    # a span of columns is a copy even of a run: bounded copies as well
    assert [len(p) for p in read_parts(np.arange(100, 300), DIM, copied=True)] == [32] * 6 + [8]


@pytest.mark.parametrize("k", [10, 133])
def test_a_top_read_in_parts_is_the_top_of_every_row(stored, monkeypatch, k):
    monkeypatch.setattr(exact, "GATHER_BYTES", 2 * DIM * 32)
    ids = np.random.default_rng(1).permutation(np.arange(0, 400, 3))  # any order: read sorted
    query = stored[7].astype(np.float32)
    scores, found = exact_top(lambda i: stored[i], query, ids, k)
    truth = stored[np.sort(ids)].astype(np.float32) @ query
    order = np.argsort(-truth, kind="stable")[:k]
    assert np.array_equal(found, np.sort(ids)[order])
    np.testing.assert_allclose(scores, truth[order], rtol=1e-3, atol=1e-3)
    whole_scores, whole_found = exact_scan(lambda i: stored[i], query[None], np.sort(ids), k)
    assert np.array_equal(whole_found[0], found)


def test_a_damaged_row_in_one_part_is_left_out_and_reported(stored, monkeypatch):
    monkeypatch.setattr(exact, "GATHER_BYTES", 2 * DIM * 32)
    damaged = stored.copy()
    query = stored[9].astype(np.float32)
    damaged[9] *= 2  # the query's own row, the best score: its length gives it away
    reported = []
    check = reporting(reported)
    ids = np.arange(0, 400, 3)
    scores, found = exact_top(lambda i: damaged[i], query, ids, 5, check)
    assert 9 not in found and 9 in reported and len(found) == 5
    truth = stored[ids].astype(np.float32) @ query
    truth[ids == 9] = -np.inf
    assert np.array_equal(found, ids[np.argsort(-truth, kind="stable")[:5]])


def column_reader(rows: np.ndarray, calls: list):
    """A reader that also reads a column slice (``reads_columns``), recording the columns it read."""

    def read(ids, columns=slice(None)):
        calls.append(columns)
        return rows[ids][:, columns]

    read.reads_columns = True
    return read


def test_a_query_zero_outside_a_span_reads_and_scores_that_span_with_the_same_top(stored, monkeypatch):
    """A query that is zero outside some columns (the default encoder's text, zero on the visual half) is
    scored on those columns alone, in parts as before: the same top as reading whole rows."""
    monkeypatch.setattr(exact, "GATHER_BYTES", 2 * DIM * 32)
    query = np.zeros(DIM, np.float32)
    query[4:10] = np.random.default_rng(2).standard_normal(6)
    ids = np.arange(0, 400, 3)
    calls = []
    scores, found = exact_top(column_reader(stored, calls), query, ids, 10)
    whole_scores, whole = exact_top(lambda i: stored[i], query, ids, 10)
    assert np.array_equal(found, whole)
    np.testing.assert_allclose(scores, whole_scores, rtol=1e-6, atol=1e-6)
    assert slice(4, 10) in calls and len(calls) > 1  # the span, then the top's rows whole for their check
    calls.clear()  # the exact scan of several queries: the span of them all
    other = np.zeros(DIM, np.float32)
    other[6:12] = 1.0
    scanned_scores, scanned = exact_scan(column_reader(stored, calls), np.stack([query, other]), ids, 10)
    whole_scores, whole = exact_scan(lambda i: stored[i], np.stack([query, other]), ids, 10)
    assert np.array_equal(scanned, whole)
    np.testing.assert_allclose(scanned_scores, whole_scores, rtol=1e-6, atol=1e-6)
    assert slice(4, 12) in calls
    calls.clear()
    exact_top(column_reader(stored, calls), stored[7].astype(np.float32), ids, 10)  # a dense query: whole rows
    assert calls and all(columns == slice(None) for columns in calls)


def test_a_row_damaged_outside_the_span_is_still_left_out_and_reported(stored):
    """The span's scores cannot see damage in the other columns: the top's rows are read whole and checked."""
    query = np.zeros(DIM, np.float32)
    query[8:] = stored[9, 8:]
    damaged = stored.copy()
    damaged[9, 0] = 3.0  # outside the span: its score there is unchanged, its length is not
    reported = []
    ids = np.arange(0, 400, 3)
    _, found = exact_top(column_reader(damaged, []), query, ids, 5, reporting(reported))
    assert 9 not in found and 9 in reported and len(found) == 5
    reported.clear()
    _, scanned = exact_scan(column_reader(damaged, []), query[None], ids, 5, reporting(reported))
    assert 9 not in scanned[0] and 9 in reported and (scanned[0] >= 0).all()


def test_no_ids_read_nothing_and_score_nothing(tmp_path):
    """A plan may ask for rows it read already (none left to read): a collection's reader and its row check are
    not called on no rows, which they do not take."""
    import glimpse

    rows = np.random.default_rng(1).standard_normal((50, DIM)).astype(np.float32)
    col = glimpse.open(tmp_path / "c", encoder="precomputed", dim=DIM)
    col.add_vectors(rows, [f"v/{i}" for i in range(len(rows))])
    for k in (0, 10):
        scores, found = exact_top(col._read_stored, rows[0], np.zeros(0, np.int64), k, col._check_rows)
        assert scores.shape == found.shape == (0,) and found.dtype == np.int64
