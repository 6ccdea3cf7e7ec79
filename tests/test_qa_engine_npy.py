"""`glimpse import-vectors` reads a .npy file with file reads checked against its header, not a memory map:
a file cut short, before or during the import, is one sentence (exit 2), never a crash (SIGBUS)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
from typer.testing import CliRunner

import glimpse
from glimpse.cli import app
from glimpse.vectorfiles import NpyRows, read_vectors

DIM = 8


def rows(n: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_a_file_cut_short_during_the_import_is_a_value_error_not_a_crash(tmp_path):
    # The memory map killed the process with SIGBUS (exit -7) when the file shrank under it.
    np.save(tmp_path / "v.npy", rows(2048))  # 64 KiB: pages past the cut are unmapped
    script = textwrap.dedent(f"""
        import os, glimpse
        from glimpse.vectorfiles import read_vectors
        path = {str(tmp_path / "v.npy")!r}
        vectors = read_vectors(__import__("pathlib").Path(path))
        col = glimpse.open({str(tmp_path / "col")!r}, encoder="precomputed", dim={DIM})
        def cut(done, total):
            os.truncate(path, 200)
        try:
            col.add_vectors(vectors, [f"k{{i}}" for i in range(2048)], batch_size=512, progress=cut)
        except ValueError as exc:
            print("REFUSED", exc)
        col.close()
    """)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, (run.returncode, run.stderr[-2000:])
    assert "REFUSED" in run.stdout and "was cut short while it was read" in run.stdout
    with glimpse.open(tmp_path / "col") as col:  # the batch committed before the cut stays whole
        assert len(col) == 512
        top = col.search(vector=rows(2048)[3], k=1)[0]
        assert top.path == "k3" and top.score == pytest.approx(1.0, abs=2e-3)


def test_a_header_promising_more_than_the_file_holds_is_refused_before_anything_is_made(tmp_path):
    np.save(tmp_path / "v.npy", rows(10))
    data = (tmp_path / "v.npy").read_bytes()
    (tmp_path / "v.npy").write_bytes(data[:-5])
    result = invoke("import-vectors", tmp_path / "v.npy", "-c", tmp_path / "col")
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "is cut short" in result.output.replace("\n", " ")
    assert not (tmp_path / "col").exists()


@pytest.mark.parametrize("layout", ["fortran", "big-endian", "float16", "float64", "v2-header"])
def test_every_npy_layout_reads_the_same_rows_as_numpy(tmp_path, layout):
    x = rows(37)
    array = {"fortran": np.asfortranarray(x), "big-endian": x.astype(">f4"), "float16": x.astype(np.float16),
             "float64": x.astype(np.float64), "v2-header": x}[layout]
    with open(tmp_path / "v.npy", "wb") as f:
        if layout == "v2-header":
            np.lib.format.write_array(f, array, version=(2, 0))
        else:
            np.save(f, array)
    got = read_vectors(tmp_path / "v.npy")
    assert isinstance(got, NpyRows) and got.shape == (37, DIM)
    want = np.load(tmp_path / "v.npy")
    for a, b in ((0, 37), (5, 19), (30, 100), (36, 37)):
        assert np.array_equal(got[a:b], want[a:b]) and got[a:b].dtype == want.dtype


def test_an_object_array_is_refused_in_one_sentence(tmp_path):
    np.save(tmp_path / "v.npy", np.array([[1.0, 2.0], None], dtype=object), allow_pickle=True)
    result = invoke("import-vectors", tmp_path / "v.npy", "-c", tmp_path / "col")
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "Python objects" in result.output


def test_a_parquet_file_with_damaged_data_pages_names_the_file(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    table = pa.table({"name": [f"k{i}" for i in range(3000)], "v": [[float(i), 1.0, 2.0, 3.0] for i in range(3000)]})
    pq.write_table(table, tmp_path / "v.parquet", row_group_size=1000, compression="none")
    data = (tmp_path / "v.parquet").read_bytes()
    (tmp_path / "cut.parquet").write_bytes(data[: len(data) // 2] + data[-3000:])  # the footer is whole
    for extra in ([], ["--key-column", "name"]):
        result = invoke("import-vectors", tmp_path / "cut.parquet", *extra, "-c", tmp_path / "col")
        assert result.exit_code == 2 and "Traceback" not in result.output  # pyarrow's words alone before
        assert "cut.parquet is not a readable .parquet file" in " ".join(result.output.split()), result.output


@pytest.mark.parametrize("encoding, said", [("utf-16", "is UTF-16 text"), ("utf-32", "is UTF-32 text"),
                                            ("latin-1", "is not UTF-8 text (byte 3)")])
def test_a_keys_file_in_another_encoding_names_it(tmp_path, encoding, said):
    np.save(tmp_path / "v.npy", rows(3))
    (tmp_path / "k.txt").write_text("caf\xe9\nb\nc\n", encoding=encoding)
    result = invoke("import-vectors", tmp_path / "v.npy", "--keys", tmp_path / "k.txt", "-c", tmp_path / "col")
    output = " ".join(result.output.split())
    assert result.exit_code == 2 and said in output and "save the keys as UTF-8" in output  # "byte 0" alone for UTF-16
