from __future__ import annotations

import json
import os
import re

import pytest

from typer.testing import CliRunner

from glimpse.cli import app

runner = CliRunner()


def invoke(*args: str):
    result = runner.invoke(app, [str(a) for a in args])
    return result


def test_index_search_info_remove_round_trip(collection_uri, image_dir):
    col = collection_uri
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
    assert "1 file removed" in removed.output
    found = json.loads(invoke("search", "--image", query, "-k", "20", "--json", "-c", col).stdout)
    assert str(query) not in [r["path"] for r in found] and len(found) == 11


def test_text_search_prints_a_table(collection_uri, image_dir):
    col = collection_uri
    invoke("index", image_dir, "-c", col, "--encoder", "hash")
    shown = invoke("search", "red", "-k", "2", "-c", col)
    assert shown.exit_code == 0
    # A long path wraps in its cell, at any point of the name (the temporary folder's length varies).
    assert "rank" in shown.output and re.sub(r"[\s│┃]", "", shown.output).count("png") == 2


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


def test_codes_options_reach_the_collection(collection_uri, image_dir, make_image):
    for i in range(40):
        make_image(image_dir / f"extra{i:02d}.png", seed=500 + i)
    col = collection_uri
    done = invoke("index", image_dir, "-c", col, "--encoder", "hash", "--codes", "itq", "--bits", "32")
    assert done.exit_code == 0, done.output
    info = json.loads(invoke("info", "--json", "-c", col).stdout)
    assert info["stats"]["codes"]["binarizer"] == "itq" and info["stats"]["codes"]["fitted_on"] == 52
    assert info["stats"]["codes"]["fit_reason"] == "first fit of these codes"  # why each fit ran
    if "://" not in str(col):  # a folder's info names its codes (Milvus's: what Milvus holds)
        assert "(first fit of these codes)" in " ".join(invoke("info", "-c", col).stdout.split())  # rich wraps the rest
    query = image_dir / "extra07.png"
    for flags in ([], ["--exact"], ["--no-rerank"], ["--oversample", "2"]):
        found = json.loads(invoke("search", "--image", query, "-k", "1", "--json", "-c", col, *flags).stdout)
        assert found[0]["path"] == str(query), flags
    bad = invoke("index", image_dir, "-c", col, "--codes", "nope")
    assert bad.exit_code == 2 and "nope" in bad.output


def no_traceback(result) -> bool:
    return result.exception is None or isinstance(result.exception, SystemExit)


@pytest.mark.parametrize("args, message", [
    (["--codes", "sign", "--bits", "32", "--oversample", "0"], "oversample must be between 1 and 10000"),
    (["--codes", "sign", "--bits", "32", "--oversample", "-5"], "oversample must be between 1 and 10000"),
    (["--codes", "sign", "--bits", "12"], "bits must be a multiple of 8"),
    (["--codes", "nope"], "unknown binarizer 'nope'"),
    (["--codes", "itq", "--bits", "128"], "itq: 128 bits need at least that many input dimensions"),
    (["--codes", "sign", "--scoring", "cosine"], "scoring must be one of auto, hamming"),
    (["--batch-size", "0"], "batch_size must be between 1 and 4096"),
    (["--batch-size", "-3"], "batch_size must be between 1 and 4096"),
    (["--workers", "0"], "workers must be between 1 and 256"),
])
def test_bad_index_options_are_refused_before_anything_is_saved(tmp_path, image_dir, args, message):
    col = tmp_path / "col"
    assert invoke("index", image_dir, "-c", col, "--encoder", "hash").exit_code == 0
    before = json.loads(invoke("info", "--json", "-c", col).stdout)["stats"]
    bad = invoke("index", image_dir, "-c", col, *args)
    assert bad.exit_code == 2 and message in bad.output and no_traceback(bad), bad.output
    after = json.loads(invoke("info", "--json", "-c", col).stdout)["stats"]
    assert after["codes"] == before["codes"] is None
    # A new collection is not even created.
    fresh = invoke("index", image_dir, "-c", tmp_path / "fresh", "--encoder", "hash", *args)
    assert fresh.exit_code == 2 and not (tmp_path / "fresh").exists()


def test_a_failed_first_index_leaves_no_collection_behind(tmp_path, image_dir):
    bad = invoke("index", tmp_path / "no-such-folder", "-c", tmp_path / "col", "--encoder", "hash")
    assert bad.exit_code == 2 and "no such file or folder" in bad.output
    assert not (tmp_path / "col").exists()
    unknown = invoke("index", image_dir, "-c", tmp_path / "col", "--encoder", "nope")
    assert unknown.exit_code == 2 and "nope" in unknown.output and no_traceback(unknown)
    assert not (tmp_path / "col").exists()


def test_index_no_prune_without_folders_reindexes_the_known_ones(collection_uri, image_dir):
    col = collection_uri
    invoke("index", image_dir, "-c", col, "--encoder", "hash")
    (image_dir / "img01.png").unlink()
    kept = invoke("index", "-c", col, "--no-prune")
    assert kept.exit_code == 0 and "0 indexed, 11 unchanged" in kept.output and no_traceback(kept), kept.output
    assert json.loads(invoke("info", "--json", "-c", col).stdout)["stats"]["images"] == 12


def test_codes_none_switches_codes_off(tmp_path, image_dir, make_image):
    for i in range(40):
        make_image(image_dir / f"extra{i:02d}.png", seed=500 + i)
    col = tmp_path / "col"
    invoke("index", image_dir, "-c", col, "--encoder", "hash", "--codes", "itq", "--bits", "32")
    assert list(col.glob("codes-*"))
    off = invoke("index", "-c", col, "--codes", "none")
    assert off.exit_code == 0, off.output
    assert json.loads(invoke("info", "--json", "-c", col).stdout)["stats"]["codes"] is None
    assert not list(col.glob("codes-*")) and not list(col.glob("binarizer*"))
    assert "exact float" in invoke("info", "-c", col).output


@pytest.mark.parametrize("args", [
    ["index"], ["index", "--codes", "sign", "--bits", "32"], ["remove", "img01.png"], ["adapt", "--remove"],
    ["adapt", "--captions", "captions.tsv"], ["compact"], ["repair"],
])
def test_every_writing_command_says_who_holds_the_lock(tmp_path, image_dir, monkeypatch, args):
    import os

    from glimpse.storage import WriteLock

    col = tmp_path / "col"
    invoke("index", image_dir, "-c", col, "--encoder", "hash")
    (image_dir / "captions.tsv").write_text("image\tcaption\n" + "".join(f"img{i:02d}.png\ta photo\n" for i in range(1, 12)))
    monkeypatch.chdir(image_dir)
    trained = []
    monkeypatch.setattr("glimpse.collection.adapt.fit_adapter", lambda *a, **k: trained.append(1))
    with WriteLock(col / "write.lock"):
        locked = invoke(*args, "-c", col)
    assert locked.exit_code == 2 and no_traceback(locked), locked.output
    assert f"locked by pid {os.getpid()}" in " ".join(locked.output.split())
    assert trained == []  # adapt learns of the lock before it trains


def test_compact_command_reports_what_it_gave_back(tmp_path, image_dir):
    col = tmp_path / "col"
    invoke("index", image_dir, "-c", col, "--encoder", "hash")
    invoke("remove", image_dir / "sub", "-c", col)
    done = invoke("compact", "-c", col)
    assert done.exit_code == 0 and "4 unused vector rows dropped" in done.output, done.output
    assert json.loads(invoke("info", "--json", "-c", col).stdout)["stats"]["vector_bytes"] == 8 * 64 * 2


def test_help_fits_the_terminal_and_flags_read_as_flags():
    shown = runner.invoke(app, ["index", "--help"], terminal_width=80)
    assert "--prune / --no-prune" in shown.output and "<bool>" not in shown.output
    assert "…" not in shown.output and "GLIMPSE_COLLECTION" in shown.output
    search_help = " ".join(runner.invoke(app, ["search", "--help"], terminal_width=80).output.split())
    assert "goes after --" in search_help and "EXIF capture date" in search_help


@pytest.mark.parametrize("command", ["index", "search"])
def test_help_of_the_first_commands_shows_examples(command):
    shown = runner.invoke(app, [command, "--help"], terminal_width=80).output
    examples = shown.split("Examples:\n", 1)[1].splitlines()
    assert len(examples) >= 3 and all(line.startswith(f"    glimpse {command}") for line in examples), shown


@pytest.mark.parametrize("group", [[], ["eval"]])
def test_help_lists_each_command_on_one_whole_line(group):
    shown = runner.invoke(app, [*group, "--help"], terminal_width=80).output
    listed = shown.split("Commands:\n", 1)[1].splitlines()
    assert all(line.startswith("  ") and line.split(maxsplit=1)[1] for line in listed), shown  # no wrapped lines
    assert not any(line.endswith("...") for line in listed), shown


def test_a_query_that_starts_with_a_dash_goes_after_double_dash(tmp_path, image_dir):
    col = tmp_path / "col"
    invoke("index", image_dir, "-c", col, "--encoder", "hash")
    found = invoke("search", "-c", col, "-k", "2", "--json", "--", "-red")
    assert found.exit_code == 0 and len(json.loads(found.stdout)) == 2, found.output


def test_demo_builds_in_the_given_folder(tmp_path, image_dir, monkeypatch):
    monkeypatch.setattr("glimpse.demo.TEXT_QUERIES", ["a cat"])
    done = invoke("demo", image_dir, "-c", tmp_path / "demo", "--encoder", "hash")
    assert done.exit_code == 0, done.output
    assert (tmp_path / "demo" / "metadata.sqlite").exists() and not (tmp_path / "demo" / "index").exists()


def _garbage_metadata(col) -> None:
    for name in ("metadata.sqlite-wal", "metadata.sqlite-shm"):
        (col / name).unlink(missing_ok=True)
    (col / "metadata.sqlite").write_bytes(b"garbage" * 100)


@pytest.mark.parametrize("damage, message", [
    (lambda col: os.truncate(col / "vectors.f16", 100), "the vector file was truncated or replaced"),
    (lambda col: (col / "vectors.f16").unlink(), "vectors.f16 is missing but the metadata references 12 vectors"),
    (lambda col: _garbage_metadata(col), "a collection database cannot be read (file is not a database)"),
])
@pytest.mark.parametrize("command", [["search", "red"], ["info"], ["index"]])
def test_a_damaged_collection_is_one_sentence_not_a_traceback(tmp_path, image_dir, damage, message, command):
    import glimpse

    col = tmp_path / "col"
    with glimpse.open(col, encoder="hash") as made:  # closed here, so nothing writes the damaged files back
        made.add([image_dir])
    damage(col)
    result = runner.invoke(app, [*command, "-c", str(col)])
    assert result.exit_code == 2 and message in " ".join(result.output.split()), result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
