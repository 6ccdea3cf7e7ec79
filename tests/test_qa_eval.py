"""glimpse eval options given wrongly: one sentence and exit 2, checked before any embedding."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from glimpse.cli import app

runner = CliRunner()


def said(result) -> str:
    return " ".join(result.output.split())


@pytest.fixture
def captioned(image_dir):
    rows = "".join(f"img{i:02d}.png\ta photo number {i}\n" for i in (1, 2, 4, 5, 7, 8))
    (image_dir / "captions.tsv").write_text("image\tcaption\n" + rows)
    return image_dir


@pytest.mark.parametrize("shortlist", ["0", "-5"])
def test_a_shortlist_below_one_is_refused(tmp_path, captioned, shortlist):
    result = runner.invoke(app, ["eval", "captioned", str(captioned), "--encoder", "hash", "--codes", "sign:8",
                                 "--shortlist", shortlist, "--cache", str(tmp_path / "cache"), "-o", str(tmp_path / "out")])
    assert result.exit_code == 2 and "shortlist must be at least 1" in said(result)


@pytest.mark.parametrize("option", ["-o", "--cache"])
def test_a_report_or_cache_folder_that_is_a_file_is_refused_before_embedding(tmp_path, captioned, option):
    (tmp_path / "taken").write_text("a file")
    folders = {"-o": str(tmp_path / "out"), "--cache": str(tmp_path / "cache"), option: str(tmp_path / "taken")}
    result = runner.invoke(app, ["eval", "captioned", str(captioned), "--encoder", "hash", "--codes", "",
                                 *[x for pair in folders.items() for x in pair]])
    assert result.exit_code == 2 and "is a file, not a folder" in said(result) and "Traceback" not in result.output
    assert not (tmp_path / "out").exists() and not (tmp_path / "cache").exists()  # refused before any work


@pytest.mark.parametrize("encoders, message", [(",", "names no encoder"), ("hash, hash", "names hash twice")])
def test_an_encoder_list_naming_none_or_one_twice_is_refused(tmp_path, captioned, encoders, message):
    result = runner.invoke(app, ["eval", "captioned", str(captioned), "--encoder", encoders, "--codes", "",
                                 "--cache", str(tmp_path / "cache"), "-o", str(tmp_path / "out")])
    assert result.exit_code == 2 and message in said(result), result.output
    assert not (tmp_path / "out").exists()


def test_fusion_without_ocr_is_refused(tmp_path, captioned):
    result = runner.invoke(app, ["eval", "captioned", str(captioned), "--encoder", "hash", "--codes", "",
                                 "--fusion", "rrf", "--cache", str(tmp_path / "cache"), "-o", str(tmp_path / "out")])
    assert result.exit_code == 2 and "add --ocr" in said(result), result.output
    assert not (tmp_path / "out").exists()


def test_a_split_for_a_captions_tsv_is_refused(tmp_path, captioned):
    result = runner.invoke(app, ["eval", "captioned", str(captioned), "--encoder", "hash", "--codes", "",
                                 "--split", "val", "--cache", str(tmp_path / "cache"), "-o", str(tmp_path / "out")])
    assert result.exit_code == 2 and "leave --split out" in said(result), result.output
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("content, message", [
    (b"{not json", "is not a readable Karpathy JSON"),
    (b"[1, 2]", "is not a readable Karpathy JSON"),
    (b'{"images": [{"split": "test", "sentences": [{"raw": "x"}]}]}', "no 'filename' field"),
    (b'{"images": [{"split": "test", "filename": "a.png", "sentences": "abc"}]}', "is not a readable Karpathy JSON"),
    (b"\xff\xfe{}", "is not a readable Karpathy JSON"),
])
def test_a_malformed_karpathy_json_is_one_sentence_naming_the_file(tmp_path, image_dir, content, message):
    (image_dir / "dataset_coco.json").write_bytes(content)  # these were tracebacks, or a bare json/codec error
    result = runner.invoke(app, ["eval", "captioned", str(image_dir), "--encoder", "hash", "--codes", "",
                                 "--cache", str(tmp_path / "cache"), "-o", str(tmp_path / "out")])
    # The path is one long word, wrapped at any point (its temporary folder's length varies).
    assert result.exit_code == 2 and message in said(result), result.output
    assert "dataset_coco.jsonisnot" in "".join(result.output.split()), result.output
    assert "Traceback" not in result.output and not (tmp_path / "out").exists()


@pytest.mark.parametrize("content, message", [
    ("image\tgroup\nimg01.png\t" + "x" * 200_000 + "\n", "not a readable TSV file"),
    (b"image\tgroup\nimg01.png\t\xff\n", "not UTF-8 text"),
])
def test_an_unreadable_groups_tsv_is_one_sentence_naming_the_file(tmp_path, image_dir, content, message):
    target = image_dir / "groups.tsv"
    target.write_bytes(content) if isinstance(content, bytes) else target.write_text(content)
    result = runner.invoke(app, ["eval", "groups", str(image_dir), "--encoder", "hash", "--codes", "",
                                 "--cache", str(tmp_path / "cache"), "-o", str(tmp_path / "out")])
    assert result.exit_code == 2 and message in said(result) and "tsv are" in said(result), result.output
    assert "Traceback" not in result.output and not (tmp_path / "out").exists()


@pytest.mark.parametrize("rows", ["", "img01.png\n", "img01.png\t   \n"])
def test_a_captions_file_without_one_captioned_image_is_refused(tmp_path, image_dir, rows):
    (image_dir / "captions.tsv").write_text("image\tcaption\n" + rows)  # was a report of 0 images, exit 0
    result = runner.invoke(app, ["eval", "captioned", str(image_dir), "--encoder", "hash", "--codes", "",
                                 "--cache", str(tmp_path / "cache"), "-o", str(tmp_path / "out")])
    assert result.exit_code == 2 and "has no image with a caption" in said(result), result.output
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("task", ["captioned", "copydetect"])
def test_a_negative_seed_names_the_option(tmp_path, captioned, task):
    result = runner.invoke(app, ["eval", task, str(captioned), "--encoder", "hash", "--codes", "", "--seed", "-1",
                                 "--cache", str(tmp_path / "cache"), "-o", str(tmp_path / "out")])
    assert result.exit_code == 2 and "--seed" in said(result), result.output  # was numpy's "expected non-negative integer"
    assert not (tmp_path / "out").exists()
