"""import-vectors inputs found by the independent checks: keys files and parquet files."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

import glimpse
from glimpse.cli import app

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_a_keys_file_saved_with_a_byte_order_mark_keeps_its_first_key(tmp_path):
    np.save(tmp_path / "v.npy", np.eye(3, 8, dtype=np.float32))
    (tmp_path / "keys.txt").write_text("sku/1\r\nsku/2\r\nsku/3\r\n", encoding="utf-8-sig")  # as Windows Notepad saves it
    result = invoke("import-vectors", tmp_path / "v.npy", "--keys", tmp_path / "keys.txt", "-c", tmp_path / "col")
    assert result.exit_code == 0, result.output
    col = glimpse.open(tmp_path / "col")
    assert sorted(p for i in col.item_ids() for p in col.item(i).paths) == ["sku/1", "sku/2", "sku/3"]


def test_enrich_of_a_collection_of_precomputed_vectors_is_refused(tmp_path):
    np.save(tmp_path / "v.npy", np.eye(3, 8, dtype=np.float32))
    assert invoke("import-vectors", tmp_path / "v.npy", "-c", tmp_path / "col").exit_code == 0
    result = invoke("enrich", "--ocr", "-c", tmp_path / "col")  # its keys are no files: each was "not found"
    assert result.exit_code == 2 and "precomputed vectors" in " ".join(result.output.split())


def test_adapt_of_a_collection_of_precomputed_vectors_says_it_has_no_model(tmp_path):
    np.save(tmp_path / "v.npy", np.eye(3, 8, dtype=np.float32))
    assert invoke("import-vectors", tmp_path / "v.npy", "-c", tmp_path / "col").exit_code == 0
    (tmp_path / "captions.tsv").write_text("image\tcaption\nv.npy/0\ta red car\n")
    result = invoke("adapt", "--captions", tmp_path / "captions.tsv", "-c", tmp_path / "col")
    assert result.exit_code == 2 and "precomputed vectors" in " ".join(result.output.split())  # not "index them first"


def test_blank_lines_at_the_end_of_a_keys_file_are_no_keys_but_one_in_the_middle_is_refused(tmp_path):
    np.save(tmp_path / "v.npy", np.eye(3, 8, dtype=np.float32))
    (tmp_path / "keys.txt").write_text("sku/1\nsku/2\nsku/3\n\r\n\n")
    result = invoke("import-vectors", tmp_path / "v.npy", "--keys", tmp_path / "keys.txt", "-c", tmp_path / "col")
    assert result.exit_code == 0, result.output
    col = glimpse.open(tmp_path / "col")
    assert sorted(p for i in col.item_ids() for p in col.item(i).paths) == ["sku/1", "sku/2", "sku/3"]
    (tmp_path / "gap.txt").write_text("sku/1\n\nsku/3\n")
    result = invoke("import-vectors", tmp_path / "v.npy", "--keys", tmp_path / "gap.txt", "-c", tmp_path / "other")
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert not (tmp_path / "other").exists()


def test_a_file_that_is_not_npy_is_named_so_not_taken_for_a_pickle(tmp_path):
    (tmp_path / "v.npy").write_text("hello, these are no vectors\n")
    result = invoke("import-vectors", tmp_path / "v.npy", "-c", tmp_path / "col")
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "numpy's .npy header" in result.output and "allow_pickle" not in result.output  # numpy's advice is no fix
    assert not (tmp_path / "col").exists()


def test_add_vectors_refuses_complex_or_text_vectors_and_keys_that_are_no_list(tmp_path):
    col = glimpse.open(tmp_path / "col", encoder="precomputed", dim=4)
    keys = ["a", "b", "c", "d"]
    for vectors, message in ((np.eye(4, dtype=np.complex64), "real numbers, not complex64"),  # was cast, imaginary lost
                             (np.array([["1", "0", "0", "0"]] * 4), "real numbers, not <U1")):  # was parsed as numbers
        with pytest.raises(ValueError, match=message):
            col.add_vectors(vectors, keys)
    for bad in (None, 5):  # were TypeErrors from list()
        with pytest.raises(ValueError, match="keys must be a list of strings"):
            col.add_vectors(np.eye(4), bad)
    with pytest.raises(ValueError, match="batch_size must be a whole number"):
        col.add_vectors(np.eye(4), keys, batch_size="2")
    assert len(col.item_ids()) == 0


def test_removing_a_key_takes_the_keys_under_it_and_no_key_that_only_starts_like_it(tmp_path):
    keys = ["shop", "shop/1", "shop/2/x", "shop1", "shop0", "shop.", "shop-a", "sho", "a/shop", "shopping/1"]
    col = glimpse.open(tmp_path / "col", encoder="precomputed", dim=16)
    col.add_vectors(np.eye(16, dtype=np.float32)[: len(keys)], keys)
    assert sorted(col._meta.file_records(["shop/", "sho", "shop0"])) == ["sho", "shop/1", "shop/2/x", "shop0"]
    assert col.remove(["shop", "shop"]) == 3
    assert sorted(col._meta.file_records()) == sorted(set(keys) - {"shop", "shop/1", "shop/2/x"})
    assert col.remove(["shop1", "a"]) == 2


def test_the_targets_a_removal_matches_are_those_with_a_path_at_or_under_them():
    from glimpse.collection.ingest import _holding, _is_under

    rng = np.random.default_rng(4)
    words = ["", "a", "b", "/", "//", ".", "-", "0", "a/b", "ab", "a0", "/a"]
    paths = sorted({"".join(rng.choice(words, 3)) for _ in range(300)})
    targets = sorted({"".join(rng.choice(words, 2)) for _ in range(200)})
    expected = {t for t in targets if any(_is_under(p, [t]) for p in paths)}
    assert _holding(targets, paths) == expected and 0 < len(expected) < len(targets)
