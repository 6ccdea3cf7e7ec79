"""Odd inputs a new user gives the CLI and the HTTP API: one sentence, never a traceback or a
misleading line."""

from __future__ import annotations

from typer.testing import CliRunner

from glimpse.cli import app


def test_serve_names_a_missing_collection_before_announcing_an_address(tmp_path):
    out = CliRunner().invoke(app, ["serve", str(tmp_path / "nope"), "--port", "18799"])
    assert out.exit_code == 2 and "no glimpse collection at" in out.output
    assert "http://" not in out.output  # it said "glimpse: http://127.0.0.1:18799/ (read-only)" first


def test_index_of_a_folder_without_images_says_so(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "notes.txt").write_text("no pictures here")
    out = CliRunner().invoke(app, ["index", str(tmp_path / "docs"), "-c", str(tmp_path / "col"), "--encoder", "hash"])
    assert out.exit_code == 0
    assert "0 indexed, 0 unchanged: no image files there (.jpg, .png" in " ".join(out.output.split())
