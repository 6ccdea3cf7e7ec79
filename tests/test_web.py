"""The web page in a real browser (Debian Chromium via Playwright) against a live uvicorn server.

The collection is scikit-image's sample photos under the deterministic ``hash`` encoder: an
image query for an indexed photo finds that photo first. Where the expected order depends
on the encoder (text, composed, more-like-this), the page must show what the Python API
answers for the same query.
"""

from __future__ import annotations

import base64
import re
import socket
import threading
import time
from contextlib import contextmanager

import pytest
import uvicorn
from PIL import Image

import glimpse
from glimpse.demo import write_samples
from glimpse.server import ServerConfig, create_app

RESULTS = "#results .result"


@contextmanager
def serving(col):
    """A uvicorn server for ``col`` in a thread, on a free loopback port; yields its URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(create_app(col, ServerConfig()), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """(base URL, collection, sample photo paths by name) for a server running in a thread."""
    root = tmp_path_factory.mktemp("web")
    photos = {p.stem: p for p in write_samples(root / "photos")}
    col = glimpse.open(root / "col", encoder="hash")
    col.add([root / "photos"])
    with serving(col) as url:
        yield url, col, photos
    col.close()


@pytest.fixture(autouse=True)
def quick_timeouts(page):
    page.set_default_timeout(10_000)  # a missing element fails in seconds, not half a minute


def first_ids(page, n: int = 3) -> list[int]:
    return [int(x) for x in page.locator(RESULTS).evaluate_all("els => els.map(e => e.dataset.id)")[:n]]


def wait_for_results(page) -> None:
    page.wait_for_selector(RESULTS)
    page.wait_for_function("document.querySelector('#status').textContent.includes('result')")


def drop_file(page, data: bytes, name: str, mime: str) -> None:
    """Drop a file on the page the way a desktop drag does (a DataTransfer holding a File)."""
    page.evaluate(
        """([b64, name, mime]) => {
            const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
            const transfer = new DataTransfer();
            transfer.items.add(new File([bytes], name, { type: mime }));
            document.body.dispatchEvent(new DragEvent("dragenter", { dataTransfer: transfer, bubbles: true }));
            document.querySelector("#results").dispatchEvent(
                new DragEvent("drop", { dataTransfer: transfer, bubbles: true, cancelable: true }));
        }""",
        [base64.b64encode(data).decode(), name, mime],
    )


def test_search_by_text_shows_the_api_order(site, page, tmp_path):
    url, col, _ = site
    page.goto(url)
    page.wait_for_function("document.querySelector('#stats').textContent.includes('16 images')")
    page.fill("#q", "a cat on a sofa")
    page.press("#q", "Enter")
    wait_for_results(page)
    expected = [r.id for r in col.search(text="a cat on a sofa", k=3)]
    assert first_ids(page) == expected
    scores = page.locator(f"{RESULTS} .score").all_text_contents()
    assert len(scores) == 16 and all(re.fullmatch(r"-?\d\.\d{3}", s) for s in scores)
    assert page.locator("#image-chip").is_hidden() and page.locator("#like-chip").is_hidden()
    assert page.locator("#empty").is_hidden() and page.locator("#error").is_hidden()
    page.screenshot(path=tmp_path / "text-search.png", full_page=True)
    assert (tmp_path / "text-search.png").stat().st_size > 10_000


def test_search_by_dropped_image_puts_it_first(site, page, tmp_path):
    url, _, photos = site
    page.goto(url)
    drop_file(page, photos["chelsea"].read_bytes(), "chelsea.jpg", "image/jpeg")
    wait_for_results(page)
    first = page.locator(RESULTS).first
    assert first.get_attribute("title") == str(photos["chelsea"])
    assert float(first.locator(".score").text_content()) > 0.99
    assert page.locator("#image-chip").is_visible()
    page.screenshot(path=tmp_path / "dropped-image.png")


def test_search_by_pasted_image(site, page):
    url, _, photos = site
    page.goto(url)
    page.evaluate(
        """([b64]) => {
            const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
            const transfer = new DataTransfer();
            transfer.items.add(new File([bytes], "clipboard.png", { type: "image/png" }));
            document.dispatchEvent(new ClipboardEvent("paste", { clipboardData: transfer, bubbles: true }));
        }""",
        [base64.b64encode(photos["logo"].read_bytes()).decode()],
    )
    wait_for_results(page)
    assert page.locator(RESULTS).first.get_attribute("title") == str(photos["logo"])


def test_search_by_picked_image_and_text(site, page, tmp_path):
    url, col, photos = site
    page.goto(url)
    page.fill("#q", "a dog")
    page.set_input_files("#file", photos["chelsea"])
    wait_for_results(page)
    expected = [r.id for r in col.search(image=photos["chelsea"], text="a dog", k=3)]
    assert first_ids(page) == expected
    page.screenshot(path=tmp_path / "composed.png")


def test_more_like_this_from_the_larger_view(site, page, tmp_path):
    url, col, photos = site
    page.goto(url)
    drop_file(page, photos["coffee"].read_bytes(), "coffee.jpg", "image/jpeg")
    wait_for_results(page)
    page.locator(RESULTS).nth(1).click()
    viewer = page.locator("#viewer")
    assert viewer.is_visible()
    shown = page.locator("#viewer-path").text_content()
    assert shown in {str(p) for p in photos.values()}
    page.wait_for_function("document.querySelector('#viewer-meta').textContent.includes('×')")  # item info came
    page.screenshot(path=tmp_path / "viewer.png")
    item_id = col.search(image=shown, k=1)[0].id
    with page.expect_response("**/api/search") as answer:
        page.click("#more-like")
    assert answer.value.ok, answer.value.text()
    expected = [r.id for r in col.search(like=item_id, k=3)]
    page.wait_for_function(f"document.querySelector('{RESULTS}').dataset.id === '{expected[0]}'")
    assert first_ids(page) == expected
    assert viewer.is_hidden() and page.locator("#like-chip").is_visible()
    assert page.locator("#error").is_hidden()


def test_keyboard_only(site, page):
    url, _, photos = site
    page.goto(url)
    page.locator("body").click()
    page.keyboard.press("/")
    assert page.evaluate("document.activeElement.id") == "q"
    page.keyboard.type("coffee")
    page.keyboard.press("Enter")
    wait_for_results(page)
    page.keyboard.press("ArrowDown")
    assert page.evaluate("document.activeElement.classList.contains('result')")
    page.keyboard.press("ArrowRight")
    assert page.evaluate("document.activeElement.dataset.index") == "1"
    page.keyboard.press("Enter")
    assert page.locator("#viewer").is_visible()
    page.keyboard.press("Escape")
    assert page.locator("#viewer").is_hidden()
    assert page.evaluate("document.activeElement.dataset.index") == "1"  # focus goes back to the result


def test_errors_show_in_the_page(site, page):
    url, _, _ = site
    page.goto(url)
    drop_file(page, b"%PDF-1.4 not a picture", "notes.pdf", "application/pdf")
    error = page.locator("#error")
    error.wait_for(state="visible")
    assert "not an image" in error.text_content()
    page.route("**/api/search**", lambda route: route.abort())  # the server goes away
    page.fill("#q", "anything")
    page.press("#q", "Enter")
    page.wait_for_function("document.querySelector('#error').textContent.includes('cannot reach')")


def test_no_good_matches_is_visible(site, page):
    url, _, _ = site
    page.goto(url)
    page.click("#filters summary")
    page.fill("#min-score", "0.99")
    page.fill("#q", "a cat")
    page.press("#q", "Enter")
    page.locator("#empty").wait_for(state="visible")
    assert page.locator(RESULTS).count() == 0
    assert page.locator("#error").is_hidden()


def test_filters_reach_the_api(site, page):
    url, _, photos = site
    page.goto(url)
    page.click("#filters summary")
    page.select_option("select[name=orientation]", "square")
    page.fill("#q", "a photo")
    page.press("#q", "Enter")
    wait_for_results(page)
    titles = page.locator(RESULTS).evaluate_all("els => els.map(e => e.title)")
    square = {str(p) for p in photos.values() if Image.open(p).height == Image.open(p).width}
    assert 0 < len(titles) < len(photos) and set(titles) == square


def test_api_reference_renders_offline(site, page):
    url, _, _ = site
    page.goto(url)
    page.click("header .docs")
    page.wait_for_selector(".operation")
    text = page.locator("#operations").text_content()
    assert "POST /api/search/image" in text and "Needs the write token" in text
    assert page.locator("#error").is_hidden()


@pytest.mark.slow
def test_words_find_the_cat_with_the_real_encoder(tmp_path, page):
    """The one test that needs text semantics: the default encoder, scikit-image's photos."""
    write_samples(tmp_path / "photos")
    with glimpse.open(tmp_path / "col") as col:
        col.add([tmp_path / "photos"])
        col.search(text="load the text model", k=1)  # seconds, before the page's clock runs
        with serving(col) as url:
            page.goto(url)
            for words, expected in (("a cat", "chelsea.jpg"), ("a cup of coffee", "coffee.jpg")):
                page.fill("#q", words)
                with page.expect_response("**/api/search"):
                    page.press("#q", "Enter")
                page.wait_for_function(f"document.querySelector('{RESULTS}')?.title.endsWith('/{expected}')")
            page.screenshot(path=tmp_path / "real-encoder.png")
