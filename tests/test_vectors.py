"""Collections of precomputed embeddings: encoder "precomputed", add_vectors, import-vectors."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

import glimpse
from glimpse.cli import app
from glimpse.storage import Metadata
from glimpse.query.filters import Filter
from glimpse.server import ServerConfig, create_app
from glimpse.vectorfiles import PARQUET_MISSING, NpyRows, read_vectors

DIM = 16
TOKEN = "s3cret-token"


def unit_rows(n: int, seed: int = 0, dim: int = DIM) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture
def col(collection_uri):
    collection = glimpse.open(collection_uri, encoder="precomputed", dim=DIM)
    yield collection
    collection.close()


def keys_for(n: int, prefix: str = "doc") -> list[str]:
    return [f"{prefix}/{i}" for i in range(n)]


def test_added_vectors_are_found_by_vector_under_their_keys(col):
    vectors = unit_rows(20)
    ids = col.add_vectors(vectors, keys_for(20))
    assert col.item_ids() == sorted(ids.tolist()) and len(col) == 20
    for i in (0, 7, 19):
        top = col.search(vector=vectors[i], k=2)
        assert (top[0].id, top[0].path) == (ids[i], f"doc/{i}")
        assert top[0].score == pytest.approx(1.0, abs=2e-3)
    info = col.item(int(ids[3]))
    assert info.paths == ["doc/3"]


def test_rows_and_queries_are_normalised_so_scores_are_cosines(col):
    vectors = unit_rows(5)
    col.add_vectors(vectors * np.array([[3.0], [0.5], [1e30], [7.0], [1.0]], np.float32), keys_for(5))
    top = col.search(vector=vectors[2] * 40, k=5)
    assert top[0].path == "doc/2"
    assert top[0].score == pytest.approx(1.0, abs=2e-3)
    assert [r.score for r in top] == pytest.approx(sorted((vectors @ vectors[2]).tolist(), reverse=True), abs=2e-3)


def test_reopening_needs_no_dim_and_another_dim_is_refused(col):
    col.add_vectors(unit_rows(3), keys_for(3))
    col.close()
    again = glimpse.open(col.location)
    assert (again.encoder.name, again.encoder.dim, len(again)) == ("precomputed", DIM, 3)
    again.close()
    with pytest.raises(glimpse.EncoderMismatchError, match="16-d"):
        glimpse.open(col.location, encoder="precomputed", dim=8)


@pytest.mark.parametrize("dim, message", [(None, "needs dim=D"), (0, "between 1 and 65536"), ("16", "whole number")])
def test_a_new_collection_needs_a_usable_dim(tmp_path, dim, message):
    options = {} if dim is None else {"dim": dim}
    with pytest.raises(ValueError, match=message):
        glimpse.open(tmp_path / "col", encoder="precomputed", **options)


def test_queries_that_need_a_model_say_there_is_none(col, image_dir):
    ids = col.add_vectors(unit_rows(3), keys_for(3))
    for query in ({"text": "a cat"}, {"image": next(image_dir.glob("*.png"))}, {"terms": "cat + #1"}):
        with pytest.raises(ValueError, match="no model .* vector="):
            col.search(**query)
    assert col.search(like=int(ids[1]), k=1)[0].id != ids[1]  # more-like-this needs no model


def test_image_files_and_vectors_do_not_mix(tmp_path, col, image_dir):
    for index in (lambda: col.add([image_dir]), lambda: col.index([image_dir]), col.index):
        with pytest.raises(ValueError, match="no model to embed images: add vectors with add_vectors"):
            index()
    images = glimpse.open(tmp_path / "images", encoder="hash")
    with pytest.raises(ValueError, match="precomputed"):
        images.add_vectors(unit_rows(1, dim=images.encoder.dim), ["a"])
    images.close()


def test_re_adding_a_key_replaces_its_vector(col):
    vectors = unit_rows(4)
    old = col.add_vectors(vectors, keys_for(4))
    new = col.add_vectors(-vectors[1:2], ["doc/1"])
    assert len(col) == 4 and new[0] not in old
    with pytest.raises(KeyError):
        col.item(int(old[1]))
    assert col.search(vector=-vectors[1], k=1)[0].path == "doc/1"
    assert "doc/1" not in [r.path for r in col.search(vector=vectors[1], k=4) if r.score > 0.99]


@pytest.mark.parametrize("keys, vectors, message", [
    (["a", "b", "a"], unit_rows(3), "'a' is given twice"),
    (["a", ""], unit_rows(2), "key 1 must be a string with more than spaces"),
    (["a", " \u3000"], unit_rows(2), "key 1 must be a string with more than spaces"),
    (["a", 5], unit_rows(2), "key 1 must be a string with more than spaces"),
    (["a", "b\nc"], unit_rows(2), "control characters"),
    (["a", "\ud800"], unit_rows(2), "invalid Unicode"),
    ("ab", unit_rows(2), "not one string"),
    (["a", "b"], unit_rows(3), r"shape \(2, 16\)"),
    (["a", "b"], unit_rows(2, dim=8), r"shape \(2, 16\)"),
    (["a", "b"], np.vstack([unit_rows(1), np.full((1, DIM), np.nan, np.float32)]), "vector 1 holds NaN"),
    (["a", "b"], np.vstack([unit_rows(1), np.full((1, DIM), np.inf)]), "vector 1 holds NaN or infinite"),
    (["a", "b"], np.array([[1] * DIM, [10**50] * DIM], dtype=object), "too large for float32"),
    (["a", "b"], np.vstack([unit_rows(1), np.zeros((1, DIM))]), "vector 1 is all zeros"),
])
@pytest.mark.local_only("checks the input before any backend is touched")
def test_bad_input_is_refused_before_anything_is_written(col, keys, vectors, message):
    col.add_vectors(unit_rows(2, seed=5), ["x", "y"])
    generation = col._meta.generation()
    with pytest.raises(ValueError, match=message):
        col.add_vectors(vectors, keys, batch_size=1)
    assert col._meta.generation() == generation and len(col) == 2
    assert col.stats().vector_bytes == 2 * DIM * 2


def test_each_batch_is_one_transaction_with_its_progress(col):
    generation = col._meta.generation()
    seen = []
    col.add_vectors(unit_rows(10), keys_for(10), batch_size=4, progress=lambda done, total: seen.append((done, total)))
    assert seen == [(4, 10), (8, 10), (10, 10)]
    assert col._meta.generation() == generation + 3


@pytest.mark.parametrize("scale", [1e-50, 1e-40, 1e40, 1e300])
def test_float64_rows_far_outside_float32s_range_keep_their_direction(col, scale):
    vectors = unit_rows(4, seed=3).astype(np.float64)
    col.add_vectors(vectors * scale, keys_for(4))
    top = col.search(vector=vectors[1] * scale, k=4)  # a query as far out, too
    assert top[0].path == "doc/1"
    assert [r.score for r in top] == pytest.approx(sorted((vectors @ vectors[1]).tolist(), reverse=True), abs=2e-3)


def test_a_crash_between_batches_keeps_the_committed_ones(col, monkeypatch):
    real = Metadata.commit_batch
    calls = []

    def crash_on_second(self, *args):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt("killed")  # after the batch's vectors were written
        return real(self, *args)

    monkeypatch.setattr(Metadata, "commit_batch", crash_on_second)
    vectors = unit_rows(8)
    with pytest.raises(KeyboardInterrupt):
        col.add_vectors(vectors, keys_for(8), batch_size=4)
    monkeypatch.undo()
    col.close()
    again = glimpse.open(col.location)
    assert len(again) == 4 and again._meta.get_meta()["rows"] == 4
    again.add_vectors(vectors[4:], keys_for(8)[4:])  # the torn rows past the end are overwritten
    assert [again.search(vector=v, k=1)[0].path for v in vectors] == keys_for(8)
    again.close()


def test_filters_match_keys_as_given_and_refuse_what_items_lack(col):
    vectors = unit_rows(12)
    col.add_vectors(vectors, [f"shop/{i}" if i % 2 else f"misc/{i}" for i in range(12)])
    by_prefix = col.search(vector=vectors[1], k=12, filters=Filter(path_prefix="misc"))
    assert sorted(r.path for r in by_prefix) == sorted(f"misc/{i}" for i in range(0, 12, 2))
    by_glob = col.search(vector=vectors[0], k=12, filters=Filter(path_glob="shop/1*"))
    assert sorted(r.path for r in by_glob) == ["shop/1", "shop/11"]
    for unknown in (Filter(after="2020"), Filter(min_bytes=1), Filter(orientation="square"), Filter(max_width=10)):
        with pytest.raises(ValueError, match="no dates, sizes or pixel dimensions"):
            col.search(vector=vectors[0], filters=unknown)


def test_removal_takes_keys_as_given(col):
    col.add_vectors(unit_rows(6), ["a", "shop/1", "shop/2", "shop2", "b", "c"])
    assert col.remove(["shop"]) == 2
    assert col.remove(["a"]) == 1
    assert sorted(col._meta.file_records()) == ["b", "c", "shop2"]
    assert len(col) == 3


def test_vectors_added_after_a_compaction_get_new_ids_and_their_own_rows(col):
    """A compaction moves rows down; later adds take rows after them but ids never used before."""
    vectors = unit_rows(40, seed=3)
    first = col.add_vectors(vectors[:20], keys_for(20))
    col.remove(keys_for(12))
    if hasattr(col, "compact"):
        assert col.compact() == 12
    later = col.add_vectors(vectors[20:], keys_for(40)[20:])
    assert not set(later.tolist()) & set(first.tolist()) and len(set(later.tolist())) == 20
    assert sorted(col.item_ids()) == sorted(first[12:].tolist() + later.tolist())
    for i in (12, 19, 20, 39):
        top = col.search(vector=vectors[i], k=1)[0]
        assert top.path == f"doc/{i}" and top.score == pytest.approx(1.0, abs=2e-3)
    col.remove(keys_for(40)[20:25])
    assert len(col) == 23 and col.search(vector=vectors[22], k=1)[0].path != "doc/22"


def test_codes_fit_on_imported_vectors_and_search_through_them(col):
    col.use_codes("itq", bits=16, oversample=4)
    vectors = unit_rows(300, seed=2)
    col.add_vectors(vectors, keys_for(300), batch_size=100)
    assert col.stats().codes["fitted_on"] == 300
    hits = [col.search(vector=vectors[i], k=1)[0].path for i in range(0, 300, 30)]
    assert hits == [f"doc/{i}" for i in range(0, 300, 30)]


# -- the command line ----------------------------------------------------------------------

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def said(result) -> str:
    """The output with rich's line wrapping undone."""
    return " ".join(result.output.split())


def test_import_npy_with_default_keys_then_search_info_remove(tmp_path):
    file = tmp_path / "emb.npy"
    np.save(file, unit_rows(30).astype(np.float16))
    col = tmp_path / "col"
    result = invoke("import-vectors", file, "-c", col)
    assert result.exit_code == 0, result.output
    assert "30 vectors imported (16 dims)" in result.output
    info = invoke("info", "-c", col, "--json")
    assert json.loads(info.output)["stats"]["encoder"] == "precomputed"
    assert "no model" in invoke("info", "-c", col).output
    found = invoke("search", "--like", "3", "-c", col, "--json")
    assert found.exit_code == 0 and json.loads(found.output)[0]["path"].startswith("emb.npy/")
    words = invoke("search", "a cat", "-c", col)
    assert words.exit_code == 2 and "no model" in said(words)
    assert "--vector FILE.npy" in said(words) and "--like ID" in said(words)  # what the command line takes
    assert "1 file removed" in invoke("remove", "emb.npy/3", "-c", col).output
    again = invoke("import-vectors", file, "-c", col)  # the same keys: replaced, not doubled
    assert again.exit_code == 0 and "the collection holds 30" in again.output


def test_import_with_a_keys_file(tmp_path):
    file, keys = tmp_path / "emb.npy", tmp_path / "keys.txt"
    vectors = unit_rows(3)
    np.save(file, vectors)
    keys.write_bytes("alpha\r\nbéta\ngamma\n".encode())
    assert invoke("import-vectors", file, "--keys", keys, "-c", tmp_path / "col").exit_code == 0
    with glimpse.open(tmp_path / "col") as col:
        assert [col.search(vector=v, k=1)[0].path for v in vectors] == ["alpha", "béta", "gamma"]


def test_import_with_codes_fits_them_once_on_every_vector(tmp_path):
    np.save(tmp_path / "v.npy", unit_rows(400))
    result = invoke("import-vectors", tmp_path / "v.npy", "--codes", "ivf-rabitq", "--bits", "8", "-c", tmp_path / "col")
    assert result.exit_code == 0, result.output
    assert "search: ivf-rabitq codes, 8 bits, fitted on 400 vectors" in said(result)
    codes = json.loads(invoke("info", "-c", tmp_path / "col", "--json").output)["stats"]["codes"]
    assert (codes["binarizer"], codes["bits"], codes["fitted_on"]) == ("ivf-rabitq", 8, 400)
    with glimpse.open(tmp_path / "col") as col:
        assert col.search(vector=unit_rows(400)[3], k=1)[0].path == "v.npy/3"


def test_a_large_collection_searched_exactly_gets_a_hint_to_choose_codes(tmp_path, monkeypatch):
    from glimpse.cli import common

    monkeypatch.setattr(common, "CODES_HINT", 300)
    np.save(tmp_path / "v.npy", unit_rows(300))
    exact = invoke("import-vectors", tmp_path / "v.npy", "-c", tmp_path / "exact")
    assert exact.exit_code == 0 and "hint: 300 vectors are searched exactly" in said(exact)
    assert "glimpse index --codes ivf-rabitq -c" in said(exact)
    coded = invoke("import-vectors", tmp_path / "v.npy", "--codes", "ivf-rabitq", "--bits", "8", "-c", tmp_path / "coded")
    assert coded.exit_code == 0 and "hint" not in said(coded)
    monkeypatch.setattr(common, "CODES_HINT", 301)
    assert "hint" not in said(invoke("import-vectors", tmp_path / "v.npy", "-c", tmp_path / "small"))


@pytest.mark.parametrize("options, message", [
    (["--codes", "ivf-rabitq", "--bits", "64"], "at most 16 bits, not 64"),  # known only once the file is read
    (["--codes", "bogus"], "unknown binarizer 'bogus'"),
    (["--codes", "ivf-rabitq", "--oversample", "0"], "oversample"),
])
def test_import_refuses_code_options_before_anything_is_written(tmp_path, options, message):
    np.save(tmp_path / "v.npy", unit_rows(300))
    result = invoke("import-vectors", tmp_path / "v.npy", *options, "-c", tmp_path / "col")
    assert result.exit_code == 2 and message in said(result) and "Traceback" not in result.output
    assert not (tmp_path / "col").exists()


def test_index_sets_the_codes_of_a_precomputed_collection_and_refuses_folders(tmp_path, image_dir):
    np.save(tmp_path / "v.npy", unit_rows(300))
    col = tmp_path / "col"
    assert invoke("import-vectors", tmp_path / "v.npy", "-c", col).exit_code == 0
    refused = invoke("index", image_dir, "--codes", "ivf-rabitq", "-c", col)
    assert refused.exit_code == 2 and "holds precomputed vectors" in said(refused) and "import-vectors" in said(refused)
    assert json.loads(invoke("info", "-c", col, "--json").output)["stats"]["codes"] is None  # nothing changed
    assert invoke("index", "-c", col).exit_code == 2  # nothing to index, no codes asked for
    chosen = invoke("index", "--codes", "ivf-rabitq", "--bits", "8", "-c", col)
    assert chosen.exit_code == 0 and "fitted on 300 vectors" in said(chosen)
    assert json.loads(invoke("info", "-c", col, "--json").output)["stats"]["codes"]["binarizer"] == "ivf-rabitq"
    off = invoke("index", "--codes", "none", "-c", col)
    assert off.exit_code == 0 and "search: exact float" in said(off)


@pytest.mark.parametrize("setup, message", [
    (lambda d: np.save(d / "v.npy", unit_rows(3)) or (d / "k.txt").write_text("a\nb\n"), "2 keys for 3 vectors"),
    (lambda d: np.save(d / "v.npy", np.ones((3, 4), np.int64)), "int64 values, not floating-point"),
    (lambda d: np.save(d / "v.npy", np.ones(5, np.float32)), "shape (5,)"),
    (lambda d: (d / "v.npy").write_bytes(b"garbage"), "not a readable .npy"),
    (lambda d: np.save(d / "v.npy", np.array([{"a": 1}], dtype=object)), "not a readable .npy"),
    (lambda d: np.save(d / "v.npy", np.vstack([unit_rows(1), np.full((1, DIM), np.inf)])), "vector 1 holds NaN"),
])
def test_import_refusals_are_one_line_and_exit_2(tmp_path, setup, message):
    setup(tmp_path)
    keys = ["--keys", tmp_path / "k.txt"] if (tmp_path / "k.txt").exists() else []
    result = invoke("import-vectors", tmp_path / "v.npy", *keys, "-c", tmp_path / "col")
    assert result.exit_code == 2
    assert message in said(result) and "Traceback" not in result.output


def test_import_into_an_image_collection_or_another_dim_is_refused(tmp_path, image_dir):
    np.save(tmp_path / "v.npy", unit_rows(2))
    assert invoke("index", image_dir, "-c", tmp_path / "images", "--encoder", "hash").exit_code == 0
    result = invoke("import-vectors", tmp_path / "v.npy", "-c", tmp_path / "images")
    assert result.exit_code == 2 and "not comparable" in said(result)
    np.save(tmp_path / "w.npy", unit_rows(2, dim=8))
    assert invoke("import-vectors", tmp_path / "v.npy", "-c", tmp_path / "col").exit_code == 0
    other = invoke("import-vectors", tmp_path / "w.npy", "-c", tmp_path / "col")
    assert other.exit_code == 2 and "16-d" in said(other)


def test_npy_files_are_read_a_batch_at_a_time(tmp_path):
    np.save(tmp_path / "v.npy", unit_rows(4))
    assert isinstance(read_vectors(tmp_path / "v.npy"), NpyRows)


def test_parquet_without_pyarrow_names_what_to_install(tmp_path, monkeypatch):
    (tmp_path / "v.parquet").write_bytes(b"PAR1")
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)  # import fails as if not installed
    result = invoke("import-vectors", tmp_path / "v.parquet", "-c", tmp_path / "col")
    assert result.exit_code == 2 and PARQUET_MISSING in said(result)


def test_import_parquet_with_a_key_column(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    vectors = unit_rows(5)
    table = pa.table({"name": [f"p{i}" for i in range(5)], "embedding": [list(map(float, v)) for v in vectors]})
    pq.write_table(table, tmp_path / "v.parquet", row_group_size=2)
    result = invoke("import-vectors", tmp_path / "v.parquet", "--key-column", "name", "-c", tmp_path / "col")
    assert result.exit_code == 0, result.output
    with glimpse.open(tmp_path / "col") as col:
        assert [col.search(vector=v, k=1)[0].path for v in vectors] == [f"p{i}" for i in range(5)]
    ragged = pa.table({"embedding": [[1.0, 2.0], [1.0]]})
    pq.write_table(ragged, tmp_path / "r.parquet")
    bad = invoke("import-vectors", tmp_path / "r.parquet", "-c", tmp_path / "col2")
    assert bad.exit_code == 2 and "differ in length (row 1 has 1, not 2)" in said(bad)


# -- the server ----------------------------------------------------------------------------


def test_server_searches_by_vector_and_has_no_files_to_show(col):
    vectors = unit_rows(6)
    ids = col.add_vectors(vectors, keys_for(6))
    with TestClient(create_app(col, ServerConfig(write_token=TOKEN))) as client:
        found = client.post("/api/search", json={"vector": vectors[2].tolist(), "k": 1}).json()
        assert found["results"][0]["path"] == "doc/2"
        assert client.get(f"/api/items/{ids[2]}").json()["paths"] == ["doc/2"]
        for endpoint in ("thumbnail", "image"):
            answer = client.get(f"/api/items/{ids[2]}/{endpoint}")
            assert answer.status_code == 404
            assert answer.json()["error"] == f"item {ids[2]} has no image file: this collection holds precomputed vectors"
        words = client.post("/api/search", json={"text": "a cat"})
        assert words.status_code == 422 and "no model" in words.json()["error"]
        gone = client.post("/api/items/remove?wait=true", json={"paths": ["doc/1"]},
                           headers={"Authorization": f"Bearer {TOKEN}"})
        assert gone.status_code == 200 and gone.json()["result"] == {"removed": 1}
        deleted = client.delete(f"/api/items/{ids[3]}?wait=true", headers={"Authorization": f"Bearer {TOKEN}"})
        assert deleted.status_code == 200
        assert client.get("/api/health").json()["images"] == 4
