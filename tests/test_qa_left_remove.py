"""Removing what the collection does not hold is an error naming it, in Python, the CLI and
HTTP alike (a mistyped path said "0 files removed" and exit 0), and nothing is removed."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

import glimpse
from glimpse.cli import app
from glimpse.server import ServerConfig, create_app


def test_a_path_that_matches_nothing_is_named_and_nothing_goes(collection_uri, image_dir):
    col = glimpse.open(collection_uri, encoder="hash")
    col.index([image_dir])
    before = col.stats().files
    with pytest.raises(ValueError, match=r"not in this collection: /nonexistent \(nothing indexed"):
        col.remove([image_dir / "img01.png", "/nonexistent"])
    assert col.stats().files == before  # img01.png, which matched, stays too
    assert col.remove([image_dir / "img01.png"]) == 1
    col.close()


def test_a_real_path_under_an_indexed_folder_is_a_removal_even_with_no_files(collection_uri, image_dir):
    """Not a mistyped path: it is left out of later index runs, as before."""
    col = glimpse.open(collection_uri, encoder="hash")
    col.index([image_dir])
    (image_dir / "empty").mkdir()
    assert col.remove([image_dir / "empty"]) == 0 and col.stats().excluded == [str(image_dir / "empty")]
    col.close()


def test_the_cli_names_the_path_and_fails(tmp_path, image_dir):
    runner = CliRunner()
    col = str(tmp_path / "col")
    assert runner.invoke(app, ["index", str(image_dir), "-c", col, "--encoder", "hash"]).exit_code == 0
    out = runner.invoke(app, ["remove", "/nonexistent", "-c", col])
    assert out.exit_code == 2 and "not in this collection: /nonexistent" in out.output
    assert "removed" not in out.output.replace("nothing was removed", "")


def test_http_remove_of_an_unknown_path_fails_naming_it(tmp_path, image_dir):
    col = glimpse.open(tmp_path / "col", encoder="hash")
    col.add([image_dir])
    auth = {"Authorization": "Bearer t"}
    with TestClient(create_app(col, ServerConfig(write_token="t"))) as http:
        answer = http.post("/api/items/remove?wait=true", json={"paths": ["img01.png", "nope.png"]}, headers=auth)
        assert answer.status_code == 422
        assert answer.json()["error"].startswith(f"not in this collection: {image_dir / 'nope.png'}")
        assert http.get("/api/health").json()["images"] == len(col) == 12
    col.close()
