"""Malformed inputs found by the independent checks: each is one sentence and exit 2 (CLI),
a ValueError (Python) or a 4xx JSON error (HTTP), and loses nothing."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from glimpse.cli import app

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def said(result) -> str:
    return " ".join(result.output.split())


@pytest.mark.parametrize("content", [b"", b"\x93NUMPY\x01\x00"])
def test_an_empty_or_cut_short_npy_file_is_refused_in_one_sentence(tmp_path, image_dir, content):
    (tmp_path / "v.npy").write_bytes(content)
    imported = invoke("import-vectors", tmp_path / "v.npy", "-c", tmp_path / "vectors")
    assert imported.exit_code == 2 and "is not a readable .npy array" in said(imported)
    assert not (tmp_path / "vectors").exists()
    assert invoke("index", image_dir, "-c", tmp_path / "col", "--encoder", "hash").exit_code == 0
    searched = invoke("search", "--vector", tmp_path / "v.npy", "-c", tmp_path / "col")
    assert searched.exit_code == 2 and "cannot read a vector from" in said(searched)
