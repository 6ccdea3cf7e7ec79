"""CLI inputs and failures met by new users: one actionable sentence, exit 2, no traceback."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

import glimpse
from glimpse.cli import app
from glimpse.storage import Metadata


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def said(result) -> str:
    return " ".join(result.output.split())


@pytest.fixture
def col_dir(tmp_path: Path, make_image) -> Path:
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(3):
        make_image(photos / f"p{i}.png", seed=i)
    (photos / "empty.jpg").write_bytes(b"")
    assert invoke("index", photos, "-c", tmp_path / "col", "--encoder", "hash").exit_code == 0
    return tmp_path / "col"


@pytest.mark.parametrize("limit", ["-1", "99999999999999999999"])
def test_an_info_limit_out_of_range_names_the_option(col_dir, limit):
    # -1 listed every error silently; 2**66 was "a collection database cannot be read (datatype
    # mismatch): restore it from a backup", advice that could cost the user their collection
    for extra in (["--errors"], []):
        result = invoke("info", "-c", col_dir, "--limit", limit, *extra)
        assert result.exit_code == 2 and "limit must be between 0 and" in said(result), result.output
        assert "backup" not in said(result)


def test_a_full_disk_met_by_sqlite_is_not_called_damage(col_dir, tmp_path, make_image, monkeypatch):
    make_image(tmp_path / "photos" / "new.png", seed=9)

    def full(*args, **kwargs):
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(Metadata, "commit_batch", full)
    result = invoke("index", "-c", col_dir)
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "database or disk is full" in said(result) and "free disk space" in said(result)
    assert "restore it from a backup" not in said(result)
    monkeypatch.undo()
    with glimpse.open(col_dir) as col:
        assert len(col) == 3


def test_a_collection_path_that_is_a_file_is_named_as_such(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    for args in (["index", tmp_path], ["info"], ["search", "a cat"]):
        result = invoke(*args, "-c", tmp_path / "notes.txt")
        assert result.exit_code == 2 and "is a file, not a collection folder" in said(result), result.output
    with pytest.raises(ValueError, match="is a file, not a collection folder"):
        glimpse.open(tmp_path / "notes.txt", encoder="hash")
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_eval_copydetect_over_an_undecodable_image_names_it(tmp_path, make_image, big_png):
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(3):
        make_image(folder / f"p{i}.png", seed=i)
    (folder / "huge.png").write_bytes(big_png(30000, 30000))  # a DecodeError traceback before
    result = invoke("eval", "copydetect", folder, "--encoder", "hash", "--codes", "", "--per-image", "1",
                    "-o", tmp_path / "out", "--cache", tmp_path / "cache")
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert "huge.png cannot be decoded (too many pixels" in said(result)


def test_demo_searches_by_images_it_could_index(tmp_path, make_image):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "a notes.txt").write_text("not a photo")  # sorted first: the demo stopped on it, exit 2
    (folder / "b broken.jpg").write_bytes(b"\xff\xd8\xff broken")
    make_image(folder / "c.png", seed=1)
    make_image(folder / "d.png", seed=2)
    result = invoke("demo", folder, "-c", tmp_path / "demo", "--encoder", "hash")
    assert result.exit_code == 0, result.output
    assert "image: like c.png" in result.output and "image: like d.png" in result.output


def test_demo_on_a_folder_without_images_says_so(tmp_path):
    (tmp_path / "empty").mkdir()
    result = invoke("demo", tmp_path / "empty", "-c", tmp_path / "demo", "--encoder", "hash")
    assert result.exit_code == 2 and "could be indexed" in said(result)  # it printed empty tables, exit 0


def test_reading_a_collection_whose_metadata_was_emptied_records_nothing(col_dir):
    (col_dir / "metadata.sqlite").write_bytes(b"")  # a valid, empty SQLite database
    for name in ("metadata.sqlite-wal", "metadata.sqlite-shm"):
        (col_dir / name).unlink(missing_ok=True)
    for args in (["info"], ["search", "a cat"]):
        # it became a fresh, empty lite0-minilm collection (model loaded and recorded) without a word
        result = invoke(*args, "-c", col_dir)
        assert result.exit_code == 2 and "holds none" in said(result), result.output
    meta = Metadata(col_dir / "metadata.sqlite")
    assert "encoder" not in meta.get_meta()  # no encoder recorded by a command that only reads
    meta.close()
