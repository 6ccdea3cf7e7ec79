"""The viewer shows the words read in a picture and marks the ones the query names (real browser)."""

from __future__ import annotations

import glimpse
from glimpse.enrich import ocr as ocr_pass

from test_ocr import fake_reader, item_of, photos  # noqa: F401 - photos is a fixture
from test_web import serving


def test_viewer_lists_the_words_and_marks_the_matching_boxes(tmp_path, photos, page, monkeypatch):
    monkeypatch.setattr(ocr_pass, "rapidocr_reader", fake_reader)
    with glimpse.open(tmp_path / "col", encoder="hash") as col:
        col.add([photos], ocr=True)
        sign = item_of(col, photos, 74)  # ONLY EXIT / RIGHT
        with serving(col) as url:
            page.set_default_timeout(10_000)
            page.goto(url)
            page.fill("#q", "right")
            page.press("#q", "Enter")
            page.locator(f'#results .result[data-id="{sign}"]').click()
            page.wait_for_selector("#viewer-words:not([hidden])")
            assert page.locator("#viewer-words").text_content() == "words: ONLY EXIT · RIGHT"
            assert page.locator("#viewer-words mark").all_text_contents() == ["RIGHT"]
            assert page.locator("#viewer-boxes polygon").count() == 2
            assert page.locator("#viewer-boxes polygon.match").get_attribute("points") == "1,2 30,2 30,9 1,9"
