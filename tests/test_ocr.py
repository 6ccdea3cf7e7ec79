"""Words in images: the OCR pass, its storage, the lexical index, fusion, text: terms, has_text."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from PIL import Image, ImageDraw, ImageFont
from typer.testing import CliRunner

import glimpse
from glimpse.cli import app
from glimpse.enrich import ocr as ocr_pass
from glimpse.extras import MissingExtraError
from glimpse.storage.words import Word
from glimpse.query.filters import Filter
from glimpse.query.language import Term, parse_query

from conftest import make_image

# What the fake reader "sees" in each image, keyed by its width (the test images differ in width).
SIGNS = {
    70: ["GETSCIENTIFIC", "RIGHT"],  # OCR often drops spaces
    72: ["EXIT ONLY"],
    74: ["ONLY EXIT", "RIGHT"],
}


def fake_reader(calls: list[int] | None = None, fail_after: int | None = None):
    def read(image: Image.Image) -> list[Word]:
        if calls is not None:
            if fail_after is not None and len(calls) >= fail_after:
                raise KeyboardInterrupt  # a kill in the middle of the pass
            calls.append(image.width)
        return [Word(t, [[1.0, 2.0], [30.0, 2.0], [30.0, 9.0], [1.0, 9.0]], 0.9) for t in SIGNS.get(image.width, [])]

    return read


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(8):
        make_image(folder / f"p{i}.png", seed=i, size=(66 + 2 * i, 48))  # widths 66..80
    return folder


@pytest.fixture
def col(collection_uri: str, photos: Path, hash_encoder, monkeypatch):
    monkeypatch.setattr(ocr_pass, "rapidocr_reader", fake_reader)
    c = glimpse.open(collection_uri, encoder=hash_encoder)
    c.add([photos], ocr=True)
    yield c
    c.close()


def item_of(c, photos: Path, width: int) -> int:
    return c._meta.item_for_path(str(photos / f"p{(width - 66) // 2}.png"))


def test_enrich_stores_words_boxes_and_confidence_per_item(col, photos):
    sign = item_of(col, photos, 70)
    words = col.item(sign).words
    assert [w.text for w in words] == ["GETSCIENTIFIC", "RIGHT"]
    assert words[0].box == [[1.0, 2.0], [30.0, 2.0], [30.0, 9.0], [1.0, 9.0]] and words[0].confidence == 0.9
    assert col.item(item_of(col, photos, 66)).words == []  # read, no text


def test_item_words_are_none_until_read(tmp_path, photos, hash_encoder):
    with glimpse.open(tmp_path / "col", encoder=hash_encoder) as c:
        c.add([photos])
        assert c.item(c.item_ids()[0]).words is None


def test_text_query_finds_the_sign_whose_words_it_names(col, photos):
    sign = item_of(col, photos, 70)
    assert col.search("get scientific right", k=3)[0].id == sign
    # Reciprocal ranks weigh the one-word match like the whole phrase: both come first.
    top = {r.id for r in col.search("get scientific right", k=2, fusion="rrf")}
    assert top == {sign, item_of(col, photos, 74)}
    assert col.search("get scientific right", k=8, fusion="none")[0].id != sign  # the hash encoder knows no words


def test_calibrated_fusion_ranks_the_whole_phrase_above_one_shared_word(col, photos):
    ranked = [r.id for r in col.search("get scientific right", k=8)]
    assert ranked.index(item_of(col, photos, 70)) < ranked.index(item_of(col, photos, 74))


def test_quoted_words_of_a_longer_query_weigh_as_a_whole_match(col, photos):
    query = 'a street scene on a sunny morning with people walking past a sign that says "exit only"'
    assert col.search(query, k=1)[0].id == item_of(col, photos, 72)


def test_text_term_matches_the_phrase_in_order(col, photos):
    assert [r.id for r in col.search(terms='text:"exit only"')] == [item_of(col, photos, 72)]
    assert [r.id for r in col.search(terms="text:'only exit'")] == [item_of(col, photos, 74)]
    assert col.search(terms='text:"nowhere"') == []


def test_text_terms_filter_a_vector_query(col, photos):
    first = col.item_ids()[0]
    kept = {r.id for r in col.search(terms=f'#{first} + text:"right"', k=8)}
    assert kept == {item_of(col, photos, 70), item_of(col, photos, 74)} - {first}
    dropped = {r.id for r in col.search(terms='"a photo" - text:"right"', k=8)}
    assert dropped == set(col.item_ids()) - {item_of(col, photos, 70), item_of(col, photos, 74)}


def test_has_text_filter(col, photos):
    signs = {item_of(col, photos, w) for w in SIGNS}
    assert {r.id for r in col.search("anything", k=8, filters=Filter(has_text=True))} == signs
    assert {r.id for r in col.search("anything", k=8, filters=Filter(has_text=False))} == set(col.item_ids()) - signs
    with pytest.raises(ValueError, match="has_text"):
        Filter(has_text="yes")


def test_killed_pass_resumes_with_the_items_not_read(tmp_path, photos, hash_encoder, monkeypatch):
    calls: list[int] = []
    monkeypatch.setattr(ocr_pass, "rapidocr_reader", lambda: fake_reader(calls, fail_after=3))
    with glimpse.open(tmp_path / "col", encoder=hash_encoder) as c:
        c.add([photos])
        with pytest.raises(KeyboardInterrupt):
            c.enrich(ocr=True)
        assert len(c.search("x", k=8)) == 8  # searchable all along
        first = list(calls)
        monkeypatch.setattr(ocr_pass, "rapidocr_reader", lambda: fake_reader(calls))
        report = c.enrich(ocr=True)
        assert (report.already, report.read) == (3, 5)
        assert sorted(calls) == list(range(66, 82, 2)) and len(set(calls)) == len(calls) == len(first) + 5
        assert c.enrich(ocr=True).read == 0


def test_changed_file_is_not_read_as_the_indexed_item(collection_at, photos, hash_encoder, monkeypatch):
    monkeypatch.setattr(ocr_pass, "rapidocr_reader", fake_reader)
    with glimpse.open(collection_at("unread"), encoder=hash_encoder) as c:
        c.add([photos])  # no OCR pass yet
        sign = item_of(c, photos, 70)
        make_image(photos / "p2.png", seed=99, size=(70, 48))  # replaced after indexing
        report = c.enrich(ocr=True)
        assert report.read == 7 and [path for path, _ in report.failed] == [str(photos / "p2.png")]
        assert "changed since it was indexed" in report.failed[0][1]
        assert c.item(sign).words is None  # not marked read: tried again after the next index


def test_removed_items_leave_no_words(col, photos):
    sign = item_of(col, photos, 72)
    col.remove([photos / "p3.png"])
    assert col.search(terms='text:"exit only"') == []
    col.enrich(ocr=True)
    assert sign not in col._words.read_items()


def test_enrich_without_rapidocr_names_the_extra(tmp_path, photos, hash_encoder, monkeypatch):
    monkeypatch.setitem(sys.modules, "rapidocr_onnxruntime", None)  # None: ModuleNotFoundError on import
    with glimpse.open(tmp_path / "col", encoder=hash_encoder) as c:
        c.add([photos])
        with pytest.raises(MissingExtraError, match=r"glimpse-retrieval\[ocr\]"):
            c.enrich(ocr=True)
        with pytest.raises(ValueError, match="ocr=True"):
            c.enrich()


def test_unknown_fusion_is_refused(col):
    with pytest.raises(ValueError, match="calibrated, rrf, none"):
        col.search("x", fusion="max")


def test_query_language_text_terms():
    assert parse_query('text:"exit only"') == [Term("words", "exit only", 1.0)]
    assert parse_query("dog - text:stop")[1] == Term("words", "stop", -1.0)
    with pytest.raises(ValueError, match="text: needs the words"):
        parse_query('text:""')


def test_cli_index_ocr_enrich_and_search(tmp_path, photos, monkeypatch):
    monkeypatch.setattr(ocr_pass, "rapidocr_reader", fake_reader)
    runner = CliRunner()
    where = ["-c", str(tmp_path / "col")]
    result = runner.invoke(app, ["index", str(photos), *where, "--encoder", "hash", "--ocr"])
    assert result.exit_code == 0, result.output
    assert "words read in 8 images (3 with text)" in result.output
    result = runner.invoke(app, ["enrich", "--ocr", *where])
    assert result.exit_code == 0 and "8 read before" in result.output
    result = runner.invoke(app, ["search", 'text:"exit only"', "--json", *where])
    assert result.exit_code == 0 and result.output.count('"id"') == 1 and "p3.png" in result.output
    result = runner.invoke(app, ["search", "a photo", "--has-text", "--json", *where])
    assert result.exit_code == 0 and result.output.count('"id"') == 3
    result = runner.invoke(app, ["enrich", *where])
    assert result.exit_code == 2 and "--ocr" in result.output


def test_rapidocr_reads_a_rendered_sign_and_search_finds_it(tmp_path, hash_encoder):
    pytest.importorskip("rapidocr_onnxruntime", reason="needs the ocr extra")
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(3):
        make_image(folder / f"plain{i}.png", seed=i, size=(320, 240))
    sign = Image.new("RGB", (320, 240), (200, 180, 150))
    draw = ImageDraw.Draw(sign)
    draw.rectangle((10, 70, 310, 170), fill="white")
    font = ImageFont.load_default(size=30)
    draw.text((20, 80), "GET SCIENTIFIC", font=font, fill="black")
    draw.text((20, 125), "RIGHT", font=font, fill="black")
    sign.save(folder / "protest.png")
    with glimpse.open(tmp_path / "col", encoder=hash_encoder) as c:
        c.add([folder], ocr=True)
        found = c.search("get scientific right", k=1)
        assert found and Path(found[0].path).name == "protest.png"
        words = c.item(found[0].id).words
        assert "RIGHT" in " ".join(w.text for w in words).upper()
        x0, y0 = words[0].box[0]
        assert 10 <= x0 <= 60 and 70 <= y0 <= 120  # in the picture's own pixels


def test_api_item_shows_words_with_boxes_and_search_takes_text_terms(col, photos):
    from fastapi.testclient import TestClient

    from glimpse.server import create_app

    client = TestClient(create_app(col))
    sign = item_of(col, photos, 72)
    body = client.get(f"/api/items/{sign}").json()
    assert body["words"] == [{"text": "EXIT ONLY", "box": [[1.0, 2.0], [30.0, 2.0], [30.0, 9.0], [1.0, 9.0]], "confidence": 0.9}]
    found = client.post("/api/search", json={"terms": 'text:"exit only"'}).json()["results"]
    assert [r["id"] for r in found] == [sign]
    found = client.post("/api/search", json={"text": "x", "k": 8, "filters": {"has_text": True}}).json()["results"]
    assert len(found) == 3
