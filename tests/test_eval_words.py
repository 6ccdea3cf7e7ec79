"""glimpse eval captioned --ocr: the words in the images, read once (cached, resumable), fused with text queries."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from glimpse import extras
from glimpse.cli import app
from glimpse.eval import words as eval_words
from glimpse.eval.words import SAVE_EVERY, WordChannel, ocr_words
from glimpse.storage.words import Word

SIGNS = {3: "EXIT ONLY", 7: "FRESH BREAD"}  # image number -> the words shown in it


def fake_reader(calls: list):
    """Reads the sign of an image from its size (the test images differ in width)."""
    def read(image):
        calls.append(image.width)
        number = image.width - 40
        return [Word(SIGNS[number], [[0, 0], [9, 0], [9, 4], [0, 4]], 0.9)] if number in SIGNS else []
    return read


@pytest.fixture
def gallery(tmp_path, make_image):
    paths = [make_image(tmp_path / f"{i}.png", seed=i, size=(40 + i, 30)) for i in range(SAVE_EVERY + 5)]
    return tmp_path, paths


def test_words_are_read_once_and_a_killed_pass_resumes(gallery, tmp_path):
    folder, paths = gallery
    calls: list = []
    first = ocr_words(paths, tmp_path / "cache", fake_reader(calls))
    assert [i for i, w in enumerate(first) if w] == sorted(SIGNS) and first[3][0].text == "EXIT ONLY"
    assert len(calls) == len(paths)
    assert ocr_words(paths, tmp_path / "cache", fake_reader(calls)) == first and len(calls) == len(paths)
    # A pass killed after the first save: the next one reads only what was not saved.
    (cache,) = (tmp_path / "cache").glob("ocr-*.json")
    cache.write_text(json.dumps(json.loads(cache.read_text())[:SAVE_EVERY]))
    calls.clear()
    assert ocr_words(paths, tmp_path / "cache", fake_reader(calls)) == first and len(calls) == 5


def test_fusion_lifts_the_image_that_shows_the_quoted_words():
    dim, n = 16, 10
    rng = np.random.default_rng(0)
    database = rng.standard_normal((n, dim)).astype(np.float32)
    database /= np.linalg.norm(database, axis=1, keepdims=True)
    query = database[0]
    base = database @ query  # item 0 first, item 3 somewhere below
    found = [[Word(SIGNS[i], [[0, 0]] * 4, 0.9)] if i in SIGNS else [] for i in range(n)]
    channel = WordChannel(found, dim)
    try:
        text = 'a shop with a sign that says "exit only"'
        assert np.array_equal(channel.fused(text, base, "none", database.__getitem__, query), base)
        calibrated = channel.fused(text, base, "calibrated", database.__getitem__, query)
        assert calibrated[3] == pytest.approx(base[3] + 0.3) and np.delete(calibrated, 3) == pytest.approx(np.delete(base, 3))
        rrf = channel.fused(text, base, "rrf", database.__getitem__, query)
        assert np.argmax(rrf) in (0, 3) and rrf[3] > np.sort(rrf)[-3]  # in both lists: near the top
        assert np.array_equal(channel.fused("no such words", base, "rrf", database.__getitem__, query), base)
    finally:
        channel.close()


def test_eval_ocr_rows_for_text_to_image_only(gallery, monkeypatch):
    folder, paths = gallery
    monkeypatch.setattr(eval_words, "rapidocr_reader", lambda: fake_reader([]))
    real = extras.require
    monkeypatch.setattr(extras, "require", lambda extra, what: None if extra == "ocr" else real(extra, what))
    captions = {3: 'a sign that reads "exit only"', 7: 'a bakery sign: "fresh bread"'}
    (folder / "captions.tsv").write_text("image\tcaption\n" + "".join(
        f'{p.name}\t"{captions.get(i, f"thing {i}").replace(chr(34), chr(34) * 2)}"\n' for i, p in enumerate(paths)))
    out = folder / "o"
    result = CliRunner().invoke(app, ["eval", "captioned", str(folder), "--encoder", "hash", "--codes", "", "--ocr",
                                      "--out", str(out), "--cache", str(folder / "c")])
    assert result.exit_code == 0, result.output
    rows = json.loads((out / "report.json").read_text())["results"]
    assert [(r["task"], r["config"]["name"]) for r in rows] == [
        ("text→image", "float"), ("text→image", "float +words:calibrated"), ("text→image", "float +words:rrf"),
        ("image→text", "float")]
    bad = CliRunner().invoke(app, ["eval", "captioned", str(folder), "--encoder", "hash", "--ocr", "--fusion", "magic"])
    assert bad.exit_code == 2 and "fusion" in bad.output
