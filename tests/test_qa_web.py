"""The web page from a new user's side (real browser): the search box reads the query language as the CLI does."""

from __future__ import annotations

import glimpse
from glimpse.enrich import ocr as ocr_pass

from test_ocr import fake_reader, item_of, photos  # noqa: F401 - photos is a fixture
from test_web import serving


def test_a_text_phrase_typed_in_the_search_box_matches_the_words_in_the_pictures(tmp_path, photos, page, monkeypatch):
    monkeypatch.setattr(ocr_pass, "rapidocr_reader", fake_reader)
    with glimpse.open(tmp_path / "col", encoder="hash") as col:
        col.add([photos], ocr=True)
        sign = item_of(col, photos, 72)  # EXIT ONLY (74 reads ONLY EXIT: not the phrase)
        with serving(col) as url:
            page.set_default_timeout(10_000)
            page.goto(url)
            page.fill("#q", 'text:"exit only"')  # README: matches those words only, as `glimpse search` does
            page.press("#q", "Enter")
            page.wait_for_selector("#results .result")
            assert page.locator("#results .result").evaluate_all("els => els.map(e => e.dataset.id)") == [str(sign)]
