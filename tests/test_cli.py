from __future__ import annotations

import json

from typer.testing import CliRunner

from glimpse.cli import app

runner = CliRunner()


def invoke(*args: str):
    result = runner.invoke(app, [str(a) for a in args])
    return result


def test_index_search_info_remove_round_trip(tmp_path, image_dir):
    col = tmp_path / "col"
    (image_dir / "broken.jpg").write_text("nope")

    first = invoke("index", image_dir, "-c", col, "--encoder", "hash")
    assert first.exit_code == 0, first.output
    assert "12 indexed" in first.output and "1 skipped (see glimpse info --errors)" in first.output

    again = invoke("index", "-c", col)  # the folders indexed before
    assert again.exit_code == 0, again.output
    assert "0 indexed, 12 unchanged" in again.output

    query = image_dir / "img04.png"
    found = invoke("search", "--image", query, "-k", "3", "--json", "-c", col)
    assert found.exit_code == 0, found.output
    results = json.loads(found.stdout)
    assert len(results) == 3 and results[0]["path"] == str(query)
    assert results[0]["score"] >= results[1]["score"] >= results[2]["score"]

    info = invoke("info", "--errors", "--json", "-c", col)
    stats = json.loads(info.stdout)
    assert stats["stats"]["images"] == 12 and stats["stats"]["encoder"] == "hash"
    assert [e["path"] for e in stats["errors"]] == [str(image_dir / "broken.jpg")]

    removed = invoke("remove", query, "-c", col)
    assert "1 files removed" in removed.output
    found = json.loads(invoke("search", "--image", query, "-k", "20", "--json", "-c", col).stdout)
    assert str(query) not in [r["path"] for r in found] and len(found) == 11


def test_text_search_prints_a_table(tmp_path, image_dir):
    col = tmp_path / "col"
    invoke("index", image_dir, "-c", col, "--encoder", "hash")
    shown = invoke("search", "red", "-k", "2", "-c", col)
    assert shown.exit_code == 0
    assert "rank" in shown.output and shown.output.count(".png") == 2


def test_errors_are_messages_not_tracebacks(tmp_path, image_dir):
    missing = invoke("search", "cat", "-c", tmp_path / "nothing-here")
    assert missing.exit_code == 2 and "no glimpse collection" in missing.output
    col = tmp_path / "col"
    invoke("index", image_dir, "-c", col, "--encoder", "hash")
    nothing = invoke("search", "-c", col)
    assert nothing.exit_code == 2 and "give words" in nothing.output
    bad = invoke("index", tmp_path / "no-such-folder", "-c", col)
    assert bad.exit_code == 2 and "no such file or folder" in bad.output
    wrong = invoke("index", image_dir, "-c", col, "--encoder", "lite0-minilm")
    assert wrong.exit_code == 2 and "not comparable" in wrong.output


def test_codes_options_reach_the_collection(tmp_path, image_dir, make_image):
    for i in range(40):
        make_image(image_dir / f"extra{i:02d}.png", seed=500 + i)
    col = tmp_path / "col"
    done = invoke("index", image_dir, "-c", col, "--encoder", "hash", "--codes", "itq", "--bits", "32")
    assert done.exit_code == 0, done.output
    info = json.loads(invoke("info", "--json", "-c", col).stdout)
    assert info["stats"]["codes"]["binarizer"] == "itq" and info["stats"]["codes"]["fitted_on"] == 52
    query = image_dir / "extra07.png"
    for flags in ([], ["--exact"], ["--no-rerank"], ["--oversample", "2"]):
        found = json.loads(invoke("search", "--image", query, "-k", "1", "--json", "-c", col, *flags).stdout)
        assert found[0]["path"] == str(query), flags
    bad = invoke("index", image_dir, "-c", col, "--codes", "nope")
    assert bad.exit_code == 2 and "nope" in bad.output
