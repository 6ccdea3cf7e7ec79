"""``glimpse import-vectors FILE.parquet``: the vector column (list or fixed-size list) and a key column
import, and every malformed file is one sentence naming what is wrong (exit code 2, no collection made)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

import glimpse
from glimpse.cli import app

runner = CliRunner()
DIM = 8


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def said(result) -> str:
    """The output with rich's line wrapping undone."""
    return " ".join(result.output.split())


def unit_rows(n: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def fixed_size(vectors: np.ndarray, value_type=pa.float32()) -> pa.FixedSizeListArray:
    return pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel(), value_type), vectors.shape[1])


@pytest.mark.parametrize("kind", ["list", "fixed-size list", "large list of float64"])
def test_a_vector_column_and_a_key_column_import(tmp_path, kind):
    vectors = unit_rows(7)
    column = {"list": lambda: pa.array(vectors.tolist(), pa.list_(pa.float32())),
              "fixed-size list": lambda: fixed_size(vectors),
              "large list of float64": lambda: pa.array(vectors.tolist(), pa.large_list(pa.float64()))}[kind]()
    table = pa.table({"sku": [f"sku/{i}" for i in range(7)], "embedding": column, "price": list(range(7))})
    pq.write_table(table, tmp_path / "v.parquet", row_group_size=3)  # three row groups: read batch by batch
    result = invoke("import-vectors", tmp_path / "v.parquet", "--key-column", "sku", "-c", tmp_path / "col")
    assert result.exit_code == 0, result.output
    assert "7 vectors imported (8 dims)" in said(result)
    with glimpse.open(tmp_path / "col") as col:
        found = [col.search(vector=v, k=1)[0] for v in vectors]
        assert [r.path for r in found] == [f"sku/{i}" for i in range(7)]
        assert min(r.score for r in found) > 0.999


def test_without_a_key_column_rows_are_keyed_by_the_file_and_row(tmp_path):
    pq.write_table(pa.table({"embedding": fixed_size(unit_rows(3))}), tmp_path / "v.parquet")
    assert invoke("import-vectors", tmp_path / "v.parquet", "-c", tmp_path / "col").exit_code == 0
    with glimpse.open(tmp_path / "col") as col:
        assert sorted(p for i in col.item_ids() for p in col.item(i).paths) == ["v.parquet/0", "v.parquet/1", "v.parquet/2"]


def table_of(**columns) -> pa.Table:
    return pa.table(columns)


#: (the file's columns, extra arguments, what the one sentence says)
MALFORMED = {
    "no list column": (lambda: table_of(x=[1.0, 2.0]), [], "has 0 list columns (none): name the vectors' column with --column"),
    "two list columns": (lambda: table_of(a=fixed_size(unit_rows(2)), b=fixed_size(unit_rows(2))), [],
                         "has 2 list columns (a, b): name the vectors' column with --column"),
    "missing --column": (lambda: table_of(a=fixed_size(unit_rows(2))), ["--column", "emb"],
                         "has no list column 'emb'; its list columns: a"),
    "missing --key-column": (lambda: table_of(a=fixed_size(unit_rows(2))), ["--key-column", "sku"],
                             "has no column 'sku'; it has a"),
    "integers": (lambda: table_of(a=pa.array([[1, 0], [0, 1]], pa.list_(pa.int64()))), [], "holds int64, not floats"),
    "ragged rows": (lambda: table_of(a=pa.array([[1.0, 0.0], [1.0, 0.0, 0.0]])), [],
                    "differ in length (row 1 has 3, not 2)"),
    "a null row": (lambda: table_of(a=pa.array([[1.0, 0.0], None])), [], "has empty (null) rows"),
    "empty vectors": (lambda: table_of(a=pa.array([[], []], pa.list_(pa.float32()))), [],
                      "holds an array of shape (2, 0), not (vectors, dims) with at least one of each"),
    "no rows": (lambda: table_of(a=pa.array([], pa.list_(pa.float32()))), [], "holds an array of shape (0, 0)"),
    "a NaN": (lambda: table_of(a=pa.array([[1.0, 0.0], [float("nan"), 1.0]])), [], "vector 1 holds NaN or infinite values"),
    "a null inside a vector": (lambda: table_of(a=pa.array([[1.0, 0.0], [None, 1.0]], pa.list_(pa.float32()))), [],
                               "has empty (null) values in row 1"),
    "a zero vector": (lambda: table_of(a=pa.array([[1.0, 0.0], [0.0, 0.0]])), [], "vector 1 is all zeros"),
    "a null key": (lambda: table_of(a=fixed_size(unit_rows(2)), sku=["x", None]), ["--key-column", "sku"],
                   "key 1 must be a string"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_a_malformed_file_is_one_sentence_and_makes_no_collection(tmp_path, case):
    make, extra, sentence = MALFORMED[case]
    pq.write_table(make(), tmp_path / "v.parquet")
    result = invoke("import-vectors", tmp_path / "v.parquet", *extra, "-c", tmp_path / "col")
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and sentence in said(result), result.output
    assert not (tmp_path / "col").exists()


def test_vectors_of_another_dimension_than_the_collections_are_refused(tmp_path):
    pq.write_table(table_of(a=fixed_size(unit_rows(2))), tmp_path / "v.parquet")
    assert invoke("import-vectors", tmp_path / "v.parquet", "-c", tmp_path / "col").exit_code == 0
    pq.write_table(table_of(a=pa.array([[1.0, 0.0, 0.0]])), tmp_path / "w.parquet")
    result = invoke("import-vectors", tmp_path / "w.parquet", "-c", tmp_path / "col")
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert "(8-d, dim 8), not precomputed v1 (3-d, dim 3)" in said(result), result.output
    with glimpse.open(tmp_path / "col") as col:
        assert len(col) == 2
