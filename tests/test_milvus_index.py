"""The Milvus backend against the local ones: same interface, same answers (Milvus Lite 2.5, server 2.3)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from milvus_fixtures import client, lite_server, milvus23_server, unique_name  # noqa: F401 - fixtures

from glimpse.codes import create_binarizer
from glimpse.backends import FlatIndex
from glimpse.milvus.expr import expressible, to_expression
from glimpse.milvus.index import MilvusIndex
from glimpse.query.filters import Filter

DIM = 32


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    return unit(rng.standard_normal((300, DIM))), np.arange(1000, 1300, dtype=np.int64)


def attributes(ids: np.ndarray) -> dict[str, list]:
    """Item i: path /p/<i % 3>/i.jpg, i bytes, width i % 7, height 3, date i seconds."""
    ids = ids.tolist()
    return {"path": [f"/p/{i % 3}/{i}.jpg" for i in ids], "bytes": ids, "date_ns": [i * 10**9 for i in ids],
            "width": [i % 7 for i in ids], "height": [3] * len(ids)}


def milvus_index(address: str, request, binarizer=None):
    from glimpse.milvus.index import MilvusIndex

    return MilvusIndex(client(address), unique_name(request), DIM, binarizer=binarizer, attributes=attributes)


def lite_index(layout: str, address: str, request, vectors):
    """A Milvus Lite index of one layout: float vectors only, or ITQ codes and float16 for the re-rank."""
    binarizer = create_binarizer("itq", bits=32).fit(vectors) if layout == "lite-codes" else None
    return milvus_index(address, request, binarizer)


@pytest.fixture(params=["local", "lite-float", "lite-codes", "server23"])
def index(request, data):
    vectors, ids = data
    if request.param == "local":
        built = FlatIndex(DIM)
    elif request.param == "server23":
        built = milvus_index(request.getfixturevalue("milvus23_server"), request,
                             create_binarizer("itq", bits=32).fit(vectors))
    else:
        built = lite_index(request.param, request.getfixturevalue("lite_server"), request, vectors)
        built.oversample = 300 // 10  # the whole collection: the re-rank is then exact
    built.add(ids, vectors)
    return built


def test_search_finds_each_vector_first_and_counts(index, data):
    vectors, ids = data
    scores, found = index.search(vectors[:5], 3)
    assert found[:, 0].tolist() == ids[:5].tolist()
    assert np.allclose(scores[:, 0], 1.0, atol=2e-3)
    assert index.count() == 300


def test_results_match_exact_search(index, data):
    vectors, ids = data
    queries = unit(np.random.default_rng(1).standard_normal((4, DIM)))
    exact = ids[np.argsort(-(queries @ vectors.T), axis=1)[:, :10]]
    _, found = index.search(queries, 10)
    if getattr(index, "layout", "float") == "codes":
        assert [set(r) for r in found] == [set(r) for r in exact]  # float16 re-rank: ties may swap
    else:
        assert (found == exact).all()


def test_allowed_ids_apply_before_ranking(index, data):
    vectors, ids = data
    allowed = ids[::7]
    _, found = index.search(vectors[:1], 10, allowed=allowed)
    assert len(found[0]) == 10 and set(found[0]) <= set(allowed.tolist())


def test_removing_counts_what_was_there(index, data):
    vectors, ids = data
    assert index.remove(np.array([ids[0], ids[1], 5], dtype=np.int64)) == 2
    assert index.count() == 298
    _, found = index.search(vectors[:1], 5)
    assert ids[0] not in found[0]


@pytest.mark.parametrize("layout", ["lite-float", "lite-codes"])
def test_filter_expressions_apply_before_ranking(layout, lite_server, request, data):
    vectors, ids = data
    index = lite_index(layout, lite_server, request, vectors)
    index.add(ids, vectors)
    cases = {
        Filter(path_prefix="/p/1"): lambda i: i % 3 == 1,
        Filter(path_glob="/p/*/12*.jpg"): lambda i: str(i).startswith("12"),
        Filter(orientation="landscape", min_bytes=1100): lambda i: i % 7 > 3 and i >= 1100,
        Filter(orientation="square"): lambda i: i % 7 == 3,
        Filter(max_width=1, max_bytes=1200): lambda i: i % 7 <= 1 and i <= 1200,
    }
    for filters, passes in cases.items():
        want = [i for i in ids.tolist() if passes(i)]
        assert expressible(filters)
        _, found = index.search(vectors[:1], 10, where=to_expression(filters))
        got = [i for i in found[0].tolist() if i >= 0]
        assert len(got) == min(10, len(want)) and set(got) <= set(want), filters


@pytest.mark.parametrize("layout", ["lite-float", "lite-codes"])
def test_adding_again_replaces_the_row(layout, lite_server, request, data):
    """Upserts: a worker that re-sends a batch after a crash duplicates nothing."""
    vectors, ids = data
    index = lite_index(layout, lite_server, request, vectors)
    index.add(ids, vectors)
    index.add(ids[:10], vectors[10:20])
    assert index.count() == 300
    _, found = index.search(vectors[10:11], 2)
    assert set(found[0]) == {ids[0], ids[10]}


def test_paths_milvus_like_cannot_express_fall_back_to_ids():
    assert not expressible(Filter(path_glob="/p/[ab]*.jpg"))
    assert not expressible(Filter(path_prefix="/photos/100%"))
    assert expressible(Filter(has_text=True)) and to_expression(Filter(has_text=True)) == ""  # words: allowed ids
    assert expressible(Filter(path_prefix="/photos/x", min_width=3))


def test_quotes_in_paths_are_escaped():
    assert to_expression(Filter(path_prefix='/a"b c')) == r'(path == "/a\"b c" or path like "/a\"b c/%")'
    # a backslash is a like escape in some Milvus versions: matched on what comes before it, then checked by path
    assert to_expression(Filter(path_prefix='/a"b\\c')) == r'(path like "/a\"b%")'


@pytest.mark.parametrize("kind, index_type", [("hnsw", "HNSW"), ("ivf", "IVF_FLAT")])
def test_server_side_indexes_on_the_23_server(kind, index_type, milvus23_server, request, data):
    """HNSW and IVF_FLAT on the float vectors: Milvus's index type, and the near neighbours found
    (benchmarks/milvus.py measures their recall and latency at 100k)."""
    from glimpse.milvus.index import MilvusIndex

    vectors, ids = data
    name = unique_name(request)
    index = MilvusIndex(client(milvus23_server), name, DIM, attributes=attributes, index=kind)
    index.add(ids, vectors)
    index.client.flush(index.name)  # a sealed segment: Milvus builds the index on it
    assert index.describe()["index"] == index_type
    _, found = index.search(vectors[:20], 10)
    assert (found[:, 0] == ids[:20]).mean() >= 0.9
    exact = MilvusIndex(client(milvus23_server), name, DIM, attributes=attributes, index="flat")  # rebuilds as FLAT
    assert exact.describe()["index"] == "FLAT" and exact.count() == 300
    _, found = exact.search(vectors[:5], 1)
    assert found[:, 0].tolist() == ids[:5].tolist()


def test_index_option_of_a_uri():
    from glimpse.milvus.connect import parse_uri

    assert parse_uri("milvus://h:1/photos?index=hnsw").index == "hnsw"
    assert parse_uri("milvus://h/photos").index is None and parse_uri("milvus://h/photos").consistency == "strong"
    assert parse_uri("milvus://h/photos?index=ivf&consistency=bounded").consistency == "bounded"
    with pytest.raises(ValueError, match="one of flat, hnsw, ivf"):
        parse_uri("milvus://h/photos?index=diskann")
    with pytest.raises(ValueError, match="one of strong, bounded"):
        parse_uri("milvus://h/photos?consistency=weak")
    with pytest.raises(ValueError, match="URI options are index="):
        parse_uri("milvus://h/photos?nprobe=3")
    with pytest.raises(ValueError, match="exact indexes only"):
        parse_uri("milvus-lite:///tmp/photos.db?index=ivf")


def test_an_index_another_worker_is_still_creating_is_waited_for():
    """Milvus makes a new collection's indexes one by one: a second worker may load it before
    the codes index exists (describe_index answers nothing for that moment)."""
    answers = iter([{}, {}, {"index_type": "BIN_FLAT"}])
    client = SimpleNamespace(describe_index=lambda name, field: next(answers))
    assert MilvusIndex.index_type(SimpleNamespace(client=client, name="c", field="codes")) == "BIN_FLAT"
    never = SimpleNamespace(client=SimpleNamespace(describe_index=lambda name, field: {}), name="c", field="codes")
    with pytest.raises(TimeoutError, match="no index on codes"):
        MilvusIndex.index_type(never, wait_s=0.3)


def test_a_row_some_file_still_shows_stays_and_names_that_file(lite_server, request, data):
    """``holders`` decides: a row a file still shows is kept, naming that file; a file written
    while the delete runs (seen only by the check after it) puts its row back."""
    from glimpse.milvus.files import FileRow

    vectors, ids = data
    calls = []

    def holders(asked: np.ndarray) -> dict:
        calls.append(asked.tolist())
        held = {int(ids[0]): FileRow("/elsewhere/a.jpg", int(ids[0]), 7, 8)}
        if len(calls) == 2:  # after the delete: another worker has just written a file of ids[1]
            held[int(ids[1])] = FileRow("/late/b.jpg", int(ids[1]), 9, 10)
        return {i: row for i, row in held.items() if i in asked}

    index = MilvusIndex(client(lite_server), unique_name(request), DIM, attributes=attributes, holders=holders)
    index.add(ids[:3], vectors[:3])
    assert index.remove(ids[:3]) == 1 and index.count() == 2
    rows = {row["id"]: row for row in index.rows(ids[:3])}
    assert sorted(rows) == ids[:2].tolist()
    assert (rows[ids[0]]["path"], rows[ids[0]]["bytes"], rows[ids[0]]["date_ns"]) == ("/elsewhere/a.jpg", 7, 8)
    assert rows[ids[1]]["path"] == "/late/b.jpg" and rows[ids[1]]["width"] == ids[1] % 7
    found, stored = index.vectors(ids[:2])
    assert np.allclose(stored.astype(np.float32), vectors[:2], atol=2e-3)


def test_two_23_servers_run_on_one_machine(milvus23_server, tmp_path):
    """Test runs and benchmarks of several people share a machine: a second 2.3 server comes up
    beside the first (its embedded etcd on ports of its own) and both answer."""
    from glimpse.milvus.local import milvus_server, stop

    process, address = milvus_server(tmp_path / "second")
    try:
        for each in (milvus23_server, address):
            assert isinstance(client(each).list_collections(), list)
    finally:
        stop(process)


def test_path_patterns_for_a_milvus_that_matches_prefixes_only():
    """Milvus 2.3 takes ``like`` as a literal prefix only (``head%``): a glob that is one is exact,
    any other is matched on its literal head (a superset, checked by path); a ``%`` is never sent
    elsewhere than last."""
    prefix_only = {"infix": False}
    assert expressible(Filter(path_glob="/p/1*"), **prefix_only)
    assert to_expression(Filter(path_glob="/p/1*"), **prefix_only) == 'path like "/p/1%"'
    for glob, head in (("/p/*/12*.jpg", "/p/"), ("/p/1?.jpg", "/p/1"), ("/p/[ab]*", "/p/"), ("/p/100%/*", "/p/100")):
        assert not expressible(Filter(path_glob=glob), **prefix_only)
        assert to_expression(Filter(path_glob=glob), **prefix_only) == f'path like "{head}%"'
    assert to_expression(Filter(path_glob="2023/*.jpg", min_width=3), **prefix_only) == "width >= 3"
    assert expressible(Filter(path_prefix="/p/a_b"), **prefix_only)  # its _ is a literal there
    assert not expressible(Filter(path_prefix="/p/100%"), **prefix_only)
    assert to_expression(Filter(path_prefix="/p/100%/x"), **prefix_only) == '(path like "/p/100%")'
