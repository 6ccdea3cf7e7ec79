from __future__ import annotations

import numpy as np
import pytest

from glimpse.codes import create_binarizer, unpack_codes
from glimpse.backends import FlatIndex
from glimpse.backends.binary import BINARIZER_FILE, BinaryIndex
from glimpse.backends.base import CodeStage


def clustered(n: int, dim: int = 32, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((20, dim))
    x = centres[rng.integers(0, 20, n)] + 0.4 * rng.standard_normal((n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture
def data():
    vectors = clustered(600)
    ids = np.arange(1000, 1600, dtype=np.int64)  # ids need not be rows
    by_id = dict(zip(ids.tolist(), vectors))
    reader = lambda wanted: np.stack([by_id[int(i)] for i in wanted])  # noqa: E731
    binarizer = create_binarizer("itq", bits=16, seed=0).fit(vectors)
    return vectors, ids, reader, binarizer


@pytest.mark.parametrize("stored", [np.float32, np.float16])
def test_rerank_equals_exact_search_when_the_shortlist_covers_everything(data, stored):
    """Float16 rows (as a collection stores them) go through FAISS's fp16 scorer; same ranking."""
    vectors, ids, _, binarizer = data
    rows = vectors.astype(stored)
    by_id = dict(zip(ids.tolist(), rows))
    index = BinaryIndex(binarizer, lambda wanted: np.stack([by_id[int(i)] for i in wanted]), oversample=len(ids))
    index.add(ids, vectors)
    exact = FlatIndex(vectors.shape[1])
    exact.add(ids, rows.astype(np.float32))
    queries = clustered(10, seed=1)
    got_scores, got_ids = index.search(queries, 10)
    want_scores, want_ids = exact.search(queries, 10)
    np.testing.assert_array_equal(got_ids, want_ids)
    np.testing.assert_allclose(got_scores, want_scores, rtol=1e-5, atol=1e-5)


def test_rerank_beats_hamming_order_at_small_oversample(data):
    vectors, ids, reader, binarizer = data
    index = BinaryIndex(binarizer, reader, oversample=10)
    index.add(ids, vectors)
    exact = FlatIndex(vectors.shape[1])
    exact.add(ids, vectors)
    queries = clustered(50, seed=2)
    _, truth = exact.search(queries, 10)

    def recall(found):
        return np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth)])

    hamming_scores, hamming = index.search(queries, 10, stage=CodeStage(rerank=False))
    _, reranked = index.search(queries, 10)
    assert recall(reranked) > recall(hamming)
    assert np.all(hamming_scores <= 1) and np.all(hamming_scores >= -1)
    assert np.all(np.diff(hamming_scores, axis=1) <= 0)  # best first


def test_removed_ids_never_come_back_and_counts_agree(data):
    vectors, ids, reader, binarizer = data
    index = BinaryIndex(binarizer, reader, oversample=len(ids))
    index.add(ids, vectors)
    assert index.remove(ids[:100]) == 100
    assert index.count() == 500
    _, found = index.search(vectors[:100], 5)
    assert not set(found.ravel().tolist()) & set(ids[:100].tolist())


def test_persist_and_restore_by_generation_and_fit(tmp_path, data):
    vectors, ids, reader, binarizer = data
    binarizer.save(tmp_path / BINARIZER_FILE.format(fit=binarizer.fit_id))
    index = BinaryIndex(binarizer, reader)
    index.add(ids, vectors)
    index.persist(tmp_path, generation=7)
    assert BinaryIndex.restore(tmp_path, generation=8, dim=vectors.shape[1]) is None  # stale
    restored = BinaryIndex.restore(tmp_path, generation=7, dim=vectors.shape[1])
    restored.reader = reader
    np.testing.assert_array_equal(restored.search(vectors[:5], 5)[1], index.search(vectors[:5], 5)[1])
    np.testing.assert_array_equal(np.sort(restored.ids()), ids)
    index.persist(tmp_path, generation=8)
    assert [p.name for p in tmp_path.glob("codes-*")] == [f"codes-8-{binarizer.fit_id}.faissbin"]
    # Codes are only ever restored for the fit that made them.
    other = create_binarizer("itq", bits=16, seed=1).fit(vectors)
    assert other.fit_id != binarizer.fit_id
    assert BinaryIndex.restore(tmp_path, generation=None, dim=vectors.shape[1], binarizer=other) is None
    assert BinaryIndex.restore(tmp_path, generation=None, dim=vectors.shape[1], binarizer=binarizer) is not None


def test_backends_describe_themselves_and_exact_scans_every_float_vector(data):
    vectors, ids, reader, binarizer = data
    index = BinaryIndex(binarizer, reader, oversample=1)
    index.add(ids, vectors)
    flat = FlatIndex(vectors.shape[1])
    flat.add(ids, vectors)
    assert flat.describe() == {"kind": "flat", "vectors": len(ids)}
    described = index.describe()
    assert (described["kind"], described["bits"], described["codes"], described["lists"]) == ("binary", binarizer.bits, len(ids), 0)
    queries = vectors[:5] + 0.1
    exact = index.search(queries, 10, stage=CodeStage(exact=True))
    np.testing.assert_array_equal(exact[1], flat.search(queries, 10)[1])
    np.testing.assert_allclose(exact[0], flat.search(queries, 10)[0], atol=1e-5)
    allowed = ids[::3]
    np.testing.assert_array_equal(index.search(queries, 4, allowed=allowed, stage=CodeStage(exact=True))[1],
                                  flat.search(queries, 4, allowed=allowed)[1])
    assert flat.search(queries, 10, stage=CodeStage(scoring="hamming", rerank=False))[1].tolist() == flat.search(queries, 10)[1].tolist()


def test_an_unfitted_binarizer_is_refused():
    with pytest.raises(ValueError, match="fitted"):
        BinaryIndex(create_binarizer("sign", bits=16))


@pytest.mark.parametrize("kind", ["flat", "binary"])
def test_allowed_ids_filter_before_ranking(data, kind):
    vectors, ids, reader, binarizer = data
    index = FlatIndex(vectors.shape[1]) if kind == "flat" else BinaryIndex(binarizer, reader)
    index.add(ids, vectors)
    allowed = ids[1::37]  # 17 ids, none of them the queries themselves
    scores, found = index.search(vectors[:3], 5, allowed=allowed)
    assert found.shape == (3, 5)
    assert set(found.ravel().tolist()) <= set(allowed.tolist())
    # Exactly the best 5 of the allowed ids, in order: filtering happens before ranking.
    for q in range(3):
        exact = vectors[np.searchsorted(ids, allowed)] @ vectors[q]
        assert found[q].tolist() == allowed[np.argsort(-exact, kind="stable")[:5]].tolist()
    few = index.search(vectors[:1], 5, allowed=allowed[:2])[1]
    assert sorted(few[0].tolist()) == sorted(allowed[:2].tolist())


def test_asymmetric_scan_scores_the_float_query_against_every_code(data):
    vectors, ids, reader, binarizer = data
    index = BinaryIndex(binarizer, reader, rerank=False, scoring="asymmetric")
    index.add(ids, vectors)
    queries = clustered(4, seed=3)
    want = binarizer.query_vector(queries) @ unpack_codes(binarizer.encode(vectors), binarizer.bits).T
    scores, found = index.search(queries, 7)
    for q in range(len(queries)):
        np.testing.assert_allclose(scores[q], np.sort(want[q])[::-1][:7], rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(want[q][np.searchsorted(ids, found[q])], scores[q], rtol=1e-4, atol=1e-4)
    allowed = ids[5::50]
    _, subset = index.search(queries, 3, allowed=allowed)
    for q in range(len(queries)):
        best = allowed[np.argsort(-want[q][np.searchsorted(ids, allowed)], kind="stable")[:3]]
        assert set(subset[q].tolist()) == set(best.tolist())


def test_asymmetric_then_rerank_matches_exact_when_the_shortlist_covers_everything(data):
    vectors, ids, reader, binarizer = data
    index = BinaryIndex(binarizer, reader, oversample=len(ids))
    index.add(ids, vectors)
    index.remove(ids[:100])
    exact = FlatIndex(vectors.shape[1])
    exact.add(ids[100:], vectors[100:])
    queries = clustered(5, seed=4)
    _, got = index.search(queries, 10, stage=CodeStage(scoring="asymmetric"))
    np.testing.assert_array_equal(got, exact.search(queries, 10)[1])
    with pytest.raises(ValueError, match="scoring"):
        index.search(queries, 10, stage=CodeStage(scoring="cosine"))


@pytest.mark.parametrize("scoring", ["hamming", "asymmetric"])
def test_ivf_layout_probing_every_list_matches_the_flat_scan(tmp_path, data, scoring):
    vectors, ids, reader, binarizer = data
    flat = BinaryIndex(binarizer, reader, rerank=False, scoring=scoring)
    ivf = BinaryIndex(binarizer, reader, rerank=False, scoring=scoring, lists=8, probes=8)
    with pytest.raises(ValueError, match="at least 8 codes"):
        BinaryIndex(binarizer, lists=8).add(ids[:3], vectors[:3])
    for index in (flat, ivf):
        index.add(ids, vectors)
        assert index.remove(ids[:50]) == 50
    assert ivf.lists == 8 and flat.lists == 0 and ivf.count() == flat.count() == len(ids) - 50
    queries = clustered(6, seed=5)
    want_scores, want_ids = flat.search(queries, 10)
    got_scores, got_ids = ivf.search(queries, 10)
    np.testing.assert_allclose(got_scores, want_scores, rtol=1e-5, atol=1e-5)  # ties may reorder ids
    assert not set(got_ids.ravel().tolist()) & set(ids[:50].tolist())
    allowed = ids[40::25]  # includes removed ids: they must not come back
    _, filtered = ivf.search(queries, 5, allowed=allowed)
    assert set(filtered.ravel().tolist()) - {-1} <= set(allowed.tolist()) - set(ids[:50].tolist())
    ivf.persist(tmp_path, 3)
    again = BinaryIndex.restore(tmp_path, 3, vectors.shape[1], binarizer=binarizer)
    again.scoring = scoring
    assert again.lists == 8 and again.count() == ivf.count()
    np.testing.assert_array_equal(np.sort(again.ids()), ids[50:])
    again.probes = 8
    np.testing.assert_allclose(again.search(queries, 10, stage=CodeStage(rerank=False))[0], want_scores, rtol=1e-5, atol=1e-5)
    assert again.remove(ids[50:60]) == 10


def test_cascade_is_the_asymmetric_scan_when_its_hamming_stage_covers_everything(data):
    vectors, ids, reader, binarizer = data
    index = BinaryIndex(binarizer, reader, rerank=False)
    index.add(ids, vectors)
    queries = clustered(5, seed=6)
    full = index.search(queries, 150, stage=CodeStage(scoring="asymmetric"))  # 150 * CASCADE_WIDEN >= 600 codes
    cascade = index.search(queries, 150, stage=CodeStage(scoring="cascade"))
    np.testing.assert_allclose(cascade[0], full[0], rtol=1e-5, atol=1e-5)
    narrow = index.search(queries, 5, stage=CodeStage(scoring="cascade"))  # 20 Hamming candidates, re-scored
    hamming20 = index.search(queries, 20, stage=CodeStage(scoring="hamming"))[1]
    for q in range(len(queries)):
        assert set(narrow[1][q].tolist()) <= set(hamming20[q].tolist())


def test_ram_per_image_is_the_code_and_its_id(data):
    vectors, ids, reader, binarizer = data  # 16-bit codes: 2 bytes + an 8-byte id
    for lists in (0, 8):
        index = BinaryIndex(binarizer, reader, lists=lists)
        index.add(ids, vectors)
        assert index.nbytes() == len(ids) * (2 + 8)


def test_the_rerank_scores_float16_rows_in_place_as_a_copy_would(monkeypatch):
    """The fp16 scan reads the gathered rows where they lie (no copy into the index): the same top k
    as a float32 scan, and as the copying path of older FAISS."""
    from glimpse.backends import exact

    rng = np.random.default_rng(3)
    rows = rng.standard_normal((4173, 48)).astype(np.float16)
    query = rng.standard_normal(48).astype(np.float32)
    truth = rows.astype(np.float32) @ query
    found = {}
    for views in (exact._VIEWS, None):
        monkeypatch.setattr(exact, "_VIEWS", views)
        for k in (10, 2053):
            scores, best = exact._top_inner_products(rows, query, k)
            np.testing.assert_array_equal(np.sort(best), np.sort(np.argsort(-truth, kind="stable")[:k]))
            np.testing.assert_allclose(scores, truth[best], rtol=1e-4, atol=1e-4)
            assert np.all(np.diff(scores) <= 0)
            found[views is None, k] = best
        assert exact._top_inner_products(rows, query, 0)[1].shape == (0,)
        scorer = exact.fp16_scorer(rows)
        assert scorer.codes.is_owned == (views is None)
    assert all(np.array_equal(found[False, k], found[True, k]) for k in (10, 2053))


@pytest.mark.parametrize("k", [5, 30, 40])
def test_exact_top_leaves_out_and_reports_a_damaged_row_whether_or_not_every_row_read_is_its_top(k):
    """k under the rows read checks the top gathered; k at or past them checks the rows where they lie."""
    from glimpse.backends.exact import exact_top, lengths_only

    rng = np.random.default_rng(4)
    rows = rng.standard_normal((30, 48)).astype(np.float32)
    rows = (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float16)
    query = rows[7].astype(np.float32)
    rows[7] *= 2  # a damaged row (length 2), the best score
    reported: list[int] = []

    def check(ids: np.ndarray, read: np.ndarray) -> np.ndarray:
        whole = lengths_only(ids, read)
        reported.extend(ids[~whole].tolist())
        return whole

    ids = np.arange(100, 130)
    scores, top = exact_top(lambda wanted: rows[wanted - 100], query, ids[::-1], k, check)
    truth = np.delete(rows.astype(np.float32) @ query, 7)
    want = np.delete(ids, 7)[np.argsort(-truth, kind="stable")[:k]]
    assert set(reported) == {107}
    np.testing.assert_array_equal(top, want)
    np.testing.assert_allclose(scores, np.sort(truth)[::-1][:k], rtol=1e-4, atol=1e-4)


def test_a_codes_file_is_checked_whole_whatever_its_parser_reads(tmp_path):
    """read_codes sums each byte once as the parser reads, seeks back (np.load peeks) or skips, and the
    unread rest: a flipped byte anywhere fails the seal; the parser never sees the seal."""
    from glimpse.backends.binary import read_codes, write_codes

    payload = np.arange(4000, dtype=np.uint8).tobytes()
    write_codes(tmp_path, 3, "fit", lambda f: f.write(payload))
    path = next(tmp_path.glob("codes-3-fit.faissbin"))

    def parse(f):
        head = f.read(100)
        f.seek(-40, 1)  # back, as np.load does after its magic
        again = f.read(40)
        f.seek(3000)  # forward past bytes not read
        return head, again, f.read(), f.tell()

    head, again, tail, end = read_codes(path, parse)
    assert head == payload[:100] and again == payload[60:100] and tail == payload[3000:] and end == 4000
    assert read_codes(path, lambda f: f.read(10)) == payload[:10]  # the rest is summed all the same
    whole = path.read_bytes()
    for at in (5, 2000, 3999, len(whole) - 1):  # read, skipped, the last payload byte, the seal's CRC
        damaged = bytearray(whole)
        damaged[at] ^= 0x10
        path.write_bytes(bytes(damaged))
        assert read_codes(path, parse) is None and read_codes(path, lambda f: f.read(10)) is None
    path.write_bytes(payload)  # a file of an earlier version: no seal, read as it is
    assert read_codes(path, lambda f: f.read()) == payload
    assert read_codes(tmp_path / "gone.faissbin", lambda f: f.read()) is None
