"""Malformed inputs found by the independent checks: each is one sentence and exit 2 (CLI),
a ValueError (Python) or a 4xx JSON error (HTTP), and loses nothing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
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


@pytest.mark.parametrize("option, message", [
    (["--port", "99999"], "port must be a whole number from 1 to 65535, got 99999"),
    (["--port", "-1"], "port must be a whole number from 1 to 65535, got -1"),
    (["--max-upload-mb", "0"], "--max-upload-mb: 1 or more"),
    (["--max-upload-mb", "-1"], "--max-upload-mb: 1 or more"),
])
def test_serve_refuses_a_port_or_upload_limit_it_cannot_use(tmp_path, image_dir, monkeypatch, option, message):
    import glimpse.server

    served = []
    monkeypatch.setattr(glimpse.server, "serve", lambda *a, **kw: served.append(a))
    assert invoke("index", image_dir, "-c", tmp_path / "col", "--encoder", "hash").exit_code == 0
    result = invoke("serve", tmp_path / "col", *option)
    assert result.exit_code == 2 and message in said(result) and "Traceback" not in result.output
    assert not served


def test_server_settings_are_checked_in_python():
    from glimpse.server import ServerConfig, serve

    with pytest.raises(ValueError, match="max_upload_bytes must be a whole number of at least 1"):
        ServerConfig(max_upload_bytes=0)
    with pytest.raises(ValueError, match="max_upload_pixels must be"):
        ServerConfig(max_upload_pixels=-5)
    with pytest.raises(ValueError, match="port must be"):
        serve("/nonexistent-collection", port=70000)  # refused before the collection is opened


def test_an_empty_path_is_refused_and_removes_nothing(tmp_path, image_dir, monkeypatch):
    import glimpse

    monkeypatch.chdir(image_dir.parent)  # "" used to mean this folder, which holds the images
    assert invoke("index", image_dir, "-c", tmp_path / "col", "--encoder", "hash").exit_code == 0
    for command in (["remove", ""], ["index", ""]):
        result = invoke(*command, "-c", tmp_path / "col")
        assert result.exit_code == 2 and "an empty path names no file or folder" in said(result)
    with glimpse.open(tmp_path / "col") as col:
        with pytest.raises(ValueError, match="empty path"):
            col.remove([""])
        assert len(col) == 12 and list(col.folders()) == [str(image_dir)]


@pytest.mark.parametrize("options, message", [
    ({"min_score": float("nan")}, "min_score must be a cosine from -1 to 1"),
    ({"min_score": "0.2"}, "min_score must be a cosine from -1 to 1"),
    ({"min_score": 1.5}, "min_score must be a cosine from -1 to 1"),
    ({"min_score": -2}, "min_score must be a cosine from -1 to 1"),
    ({"alpha": float("nan")}, "alpha must be a number from 0"),
    ({"alpha": "0.5"}, "alpha must be a number from 0"),
    ({"alpha": 1.5}, "alpha must be a number from 0"),
    ({"terms": [("cat", float("nan"))]}, "must be a finite, non-zero number"),
    ({"terms": [("cat", float("inf"))]}, "must be a finite, non-zero number"),
])
def test_search_options_that_are_not_finite_numbers_are_refused(tmp_path, image_dir, options, message):
    import glimpse

    with glimpse.open(tmp_path / "col", encoder="hash") as col:
        col.add([image_dir])
        query = {} if "terms" in options else {"text": "red", "image": image_dir / "img01.png"}
        with pytest.raises(ValueError, match=message):
            col.search(**query, **options)


@pytest.mark.parametrize("value", ["nan", "2"])  # 2 said "no good matches", where HTTP refused it
def test_min_score_past_a_cosine_on_the_command_line_is_exit_2(tmp_path, image_dir, value):
    assert invoke("index", image_dir, "-c", tmp_path / "col", "--encoder", "hash").exit_code == 0
    result = invoke("search", "red", "--min-score", value, "-c", tmp_path / "col")
    assert result.exit_code == 2 and "min_score must be a cosine from -1 to 1" in said(result)


@pytest.mark.parametrize("content, message", [
    (b"image\tcaption\nimg01.png\t\xff\xfe a cat\n", "are not UTF-8 text (byte"),
    (b"image\tcaption\nimg01.png\t" + b"a" * 200_000 + b"\n", "are not a readable TSV file: field larger than field limit"),
])
def test_a_captions_file_that_cannot_be_read_is_one_sentence(tmp_path, image_dir, content, message):
    (image_dir / "captions.tsv").write_bytes(content)
    assert invoke("index", image_dir, "-c", tmp_path / "col", "--encoder", "hash").exit_code == 0
    result = invoke("adapt", "--captions", image_dir / "captions.tsv", "-c", tmp_path / "col")
    assert result.exit_code == 2 and message in said(result) and "Traceback" not in result.output


@pytest.mark.parametrize("make", [lambda d: d / "missing", lambda d: (d / "photo.jpg").write_bytes(b"x") or d / "photo.jpg"])
def test_demo_of_something_that_is_no_folder_is_refused_and_creates_nothing(tmp_path, make):
    result = invoke("demo", make(tmp_path), "-c", tmp_path / "demo", "--encoder", "hash")
    assert result.exit_code == 2 and "is not a folder: give a folder of images" in said(result)
    assert "Traceback" not in result.output and not (tmp_path / "demo").exists()


def test_demo_with_an_unknown_encoder_writes_no_sample_photos(tmp_path):
    result = invoke("demo", "-c", tmp_path / "demo", "--encoder", "nope")
    assert result.exit_code == 2 and "unknown encoder 'nope'" in said(result)
    assert not (tmp_path / "demo").exists()


@pytest.mark.parametrize("make, message", [
    (lambda d: d / "missing.txt", "cannot read the token file .*missing.txt: No such file or directory"),
    (lambda d: d, "cannot read the token file .*: Is a directory"),
    (lambda d: (d / "t.bin").write_bytes(b"\xff\xfe") and d / "t.bin", "is not UTF-8 text"),
])
def test_a_token_file_that_cannot_be_read_is_one_sentence(tmp_path, make, message):
    from glimpse.server import read_token

    with pytest.raises(ValueError, match=message):
        read_token(make(tmp_path))


def test_a_removed_name_that_is_not_utf8_comes_back_as_info_shows_it(tmp_path, image_dir):
    import os
    import shutil

    shutil.copy(image_dir / "img01.png", os.fsencode(image_dir) + b"/caf\xe9.png")
    col = tmp_path / "col"
    assert invoke("index", image_dir, "-c", col, "--encoder", "hash").exit_code == 0
    escaped = str(image_dir) + "/caf\\xe9.png"  # as glimpse info lists it
    assert invoke("remove", escaped, "-c", col).exit_code == 0
    assert json.loads(invoke("info", "--json", "-c", col).stdout)["stats"]["excluded"] == [escaped]
    back = invoke("index", escaped, "-c", col)  # "`glimpse index PATH` brings it back"
    assert back.exit_code == 0, back.output
    stats = json.loads(invoke("info", "--json", "-c", col).stdout)["stats"]
    assert stats["excluded"] == [] and stats["files"] == 13


@pytest.mark.parametrize("setup, extra, message", [
    (lambda d: np.save(d / "v.npy", np.full((2, 4), np.nan, np.float32)), [], "vector 0 holds NaN"),
    (lambda d: np.save(d / "v.npy", np.ones((2, 4), np.float32)) or (d / "k.txt").write_text("a\na\n"),
     ["--keys", "k.txt"], "key 'a' is given twice"),
    (lambda d: np.save(d / "v.npy", np.ones((2, 4), np.float32)), ["--batch-size", "0"], "batch_size must be"),
])
def test_a_refused_import_leaves_no_new_collection(tmp_path, setup, extra, message):
    setup(tmp_path)
    extra = [tmp_path / a if a.endswith(".txt") else a for a in extra]
    result = invoke("import-vectors", tmp_path / "v.npy", *extra, "-c", tmp_path / "col")
    assert result.exit_code == 2 and message in said(result)
    assert not (tmp_path / "col").exists()


def test_serve_says_in_one_sentence_when_it_cannot_listen(tmp_path, image_dir):
    import socket

    from glimpse.server import serve

    assert invoke("index", image_dir, "-c", tmp_path / "col", "--encoder", "hash").exit_code == 0
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ValueError, match=f"cannot listen on 127.0.0.1:{port}: .*pick another --port"):
            serve(tmp_path / "col", port=port)
        result = invoke("serve", tmp_path / "col", "--port", port)
        assert result.exit_code == 2 and "another server there?" in said(result)
        assert "http://" not in said(result)  # no address announced that nothing will listen on
    with pytest.raises(ValueError, match="cannot listen on 999.1.1.1: .*give --host an address of this machine"):
        serve(tmp_path / "col", host="999.1.1.1", port=port)


@pytest.mark.parametrize("option", [["--include", ""], ["--exclude", " "]])
def test_an_empty_glob_is_refused_and_drops_nothing(tmp_path, image_dir, option):

    col = tmp_path / "col"
    assert invoke("index", image_dir, "-c", col, "--encoder", "hash").exit_code == 0
    result = invoke("index", image_dir, *option, "-c", col)
    assert result.exit_code == 2 and "must be a list of non-empty globs" in said(result)
    info = json.loads(invoke("info", "--json", "-c", col).stdout)
    assert info["stats"]["files"] == 12 and info["folders"][str(image_dir)]["include"] == []


def test_a_glob_given_as_one_string_is_refused_in_python(tmp_path, image_dir):
    import glimpse

    with glimpse.open(tmp_path / "col", encoder="hash") as col:
        with pytest.raises(ValueError, match="include must be a list of non-empty globs"):
            col.add([image_dir], include="*.png")  # would be the globs '*', '.', 'p', 'n', 'g'
        assert len(col) == 0


@pytest.mark.parametrize("vector, message", [
    (np.zeros(8, np.float32), "the query vector is all zeros"),
    (np.array(["a"] * 8), "the query vector must hold real numbers"),
    (np.array(["1.0"] * 8), "the query vector must hold real numbers"),
    (np.full(8, 1 + 2j), "the query vector must hold real numbers"),  # was searched as its real part
    (np.ones(8, bool), "the query vector must hold real numbers"),
    ([[1.0], [1.0, 2.0]], "the query vector must hold real numbers"),
])
def test_a_query_vector_with_no_direction_or_no_numbers_is_refused(tmp_path, vector, message):
    import glimpse

    with glimpse.open(tmp_path / "col", encoder="precomputed", dim=8) as col:
        col.add_vectors(np.eye(8, dtype=np.float32)[:3], ["a", "b", "c"])
        with pytest.raises(ValueError, match=message):
            col.search(vector=vector)


def test_a_zero_query_vector_is_a_422_over_http(tmp_path):
    import glimpse
    from fastapi.testclient import TestClient
    from glimpse.server import ServerConfig, create_app

    with glimpse.open(tmp_path / "col", encoder="precomputed", dim=8) as col:
        col.add_vectors(np.eye(8, dtype=np.float32)[:3], ["a", "b", "c"])
        with TestClient(create_app(col, ServerConfig())) as http:
            answer = http.post("/api/search", json={"vector": [0.0] * 8})
            assert answer.status_code == 422 and "all zeros" in answer.json()["error"]


def test_a_negative_error_limit_is_refused_not_read_as_no_limit(tmp_path, image_dir):
    assert invoke("index", image_dir, "-c", tmp_path / "col", "--encoder", "hash").exit_code == 0
    result = invoke("info", "--errors", "--limit", "-1", "-c", tmp_path / "col")
    assert result.exit_code == 2 and "limit must be between 0 and 9223372036854775807, got -1" in said(result)
    assert len(json.loads(invoke("info", "--errors", "--limit", "0", "--json", "-c", tmp_path / "col").stdout)["errors"]) == 0


@pytest.mark.parametrize("option", [["--include", "[invalid"], ["--exclude", "img[!]*"], ["--include", "sub[/x]"]])
def test_a_glob_with_an_unclosed_class_is_refused_and_drops_nothing(tmp_path, image_dir, option):
    col = tmp_path / "col"
    assert invoke("index", image_dir, "-c", col, "--encoder", "hash").exit_code == 0
    result = invoke("index", image_dir, *option, "-c", col)
    assert result.exit_code == 2 and "that no ']' closes (write '[[]' for a literal '[')" in said(result), result.output
    searched = invoke("search", "red", "--path-glob", option[1], "-c", col)
    assert searched.exit_code == 2 and "path_glob glob" in said(searched), searched.output
    info = json.loads(invoke("info", "--json", "-c", col).stdout)
    assert info["stats"]["files"] == 12 and info["folders"][str(image_dir)]["include"] == []


@pytest.mark.filterwarnings("error::FutureWarning")  # re's "possible nested set": '[' inside a class
def test_a_literal_bracket_is_written_as_a_class(tmp_path, make_image):
    folder = tmp_path / "photos"
    folder.mkdir()
    make_image(folder / "[draft] one.png", seed=1)
    make_image(folder / "other.png", seed=2)
    col = tmp_path / "col"
    assert invoke("index", folder, "--include", "[[]draft]*", "-c", col, "--encoder", "hash").exit_code == 0
    found = json.loads(invoke("search", "red", "--json", "--path-glob", "[[]draft]*", "-c", col).stdout)
    assert [hit["path"] for hit in found] == [str(folder / "[draft] one.png")]


@pytest.mark.parametrize("command", ["index", "search", "remove"])
def test_the_help_of_a_list_argument_names_one_value_type(command):
    shown = invoke(command, "--help").output
    assert "list[" not in shown and "... <str>" in shown


@pytest.mark.parametrize("write, message", [
    (lambda f: f.write_text("root:x:0:0:root:/root:/bin/bash\n"), "not a .npy array of numbers (numpy.save one vector)"),
    (lambda f: np.save(f, np.array([{"a": 1}], dtype=object)), "not a .npy array of numbers (numpy.save one vector)"),
    (lambda f: None, "cannot read a vector from"),
])
def test_a_query_vector_file_that_is_no_npy_array_is_one_plain_sentence(tmp_path, image_dir, write, message):
    write(tmp_path / "q.npy")
    assert invoke("index", image_dir, "-c", tmp_path / "col", "--encoder", "hash").exit_code == 0
    result = invoke("search", "--vector", tmp_path / "q.npy", "-c", tmp_path / "col")
    assert result.exit_code == 2 and message in said(result), result.output
    assert "allow_pickle" not in said(result) and "Errno" not in said(result)


@pytest.mark.parametrize("option, message", [
    (["-c", ""], "the collection path is empty"),
    (["-c", "  "], "the collection path is empty"),
    (["--encoder", ""], "unknown encoder ''"),
])
def test_an_empty_collection_path_or_encoder_is_refused_and_creates_nothing(tmp_path, image_dir, monkeypatch, option, message):
    monkeypatch.chdir(tmp_path)  # -c "" made a collection in the current folder
    args = ["-c", tmp_path / "col", *option] if option[0] == "--encoder" else [*option, "--encoder", "hash"]
    result = invoke("index", image_dir, *args)
    assert result.exit_code == 2 and message in said(result), result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photos"]


@pytest.mark.parametrize("option, message", [
    (["--root", "missing-folder"], "is not a folder on this machine"),
    (["--cors", " "], "an empty CORS origin allows no page"),
])
def test_serve_refuses_a_root_that_is_no_folder_or_an_empty_origin(tmp_path, image_dir, monkeypatch, option, message):
    from glimpse.server import ServerConfig

    monkeypatch.chdir(tmp_path)
    assert invoke("index", image_dir, "-c", tmp_path / "col", "--encoder", "hash").exit_code == 0
    with pytest.raises(ValueError, match=message):
        ServerConfig(**({"roots": [Path(option[1])]} if option[0] == "--root" else {"cors_origins": [option[1]]}))
    result = invoke("serve", tmp_path / "col", *option, "--port", "70000")  # the settings are checked first
    assert result.exit_code == 2 and message in said(result), result.output
