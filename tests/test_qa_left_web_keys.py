"""A collection of precomputed vectors has keys, no image files: its hits and items carry no
thumbnail or image URL (those answered 404, and the page showed broken images); the page
shows each key as text in its tile. An image collection keeps its URLs."""

from __future__ import annotations

import json

import numpy as np
import pytest
from fastapi.testclient import TestClient

import glimpse
from glimpse.server import ServerConfig, create_app

from test_web import serving

KEYS = ["doc/alpha", "doc/beta", "gamma", "delta"]


@pytest.fixture
def keyed(tmp_path):
    with glimpse.open(tmp_path / "vec", encoder="precomputed", dim=4) as col:
        col.add_vectors(np.eye(4, dtype=np.float32) + 0.1, KEYS)
        yield col


def test_keys_have_no_image_urls(keyed):
    with TestClient(create_app(keyed, ServerConfig())) as http:
        hits = http.post("/api/search", json={"like": 0, "k": 3}).json()["results"]
        item = http.get("/api/items/0").json()
    assert len(hits) == 3 and all(h["thumbnail"] is None and h["image"] is None for h in hits)
    assert item["paths"] == ["doc/alpha"] and item["thumbnail"] is None and item["image"] is None


def test_images_keep_their_urls(tmp_path, image_dir):
    with glimpse.open(tmp_path / "col", encoder="hash") as col:
        col.add([image_dir])
        with TestClient(create_app(col, ServerConfig())) as http:
            hit = http.post("/api/search", json={"like": 0, "k": 1}).json()["results"][0]
            assert http.get(hit["thumbnail"]).status_code == 200 and http.get(hit["image"]).status_code == 200


def test_the_page_shows_keys_as_text(keyed, page):
    page.set_default_timeout(10_000)
    # The box sends words as text, which this collection has no model for: the test asks for like=0 instead.
    page.route("**/api/search", lambda route: route.continue_(post_data=json.dumps({"like": 0, "k": 3}),
                                                              headers={**route.request.headers,
                                                                       "content-type": "application/json"}))
    with serving(keyed) as url:
        page.goto(url)
        page.fill("#q", "anything")
        page.press("#q", "Enter")
        page.wait_for_selector("#results .result")
        assert page.locator("#results .result img").count() == 0
        shown = page.locator("#results .result .key").all_text_contents()
        assert len(shown) == 3 and set(shown) <= set(KEYS[1:])
        page.locator("#results .result").first.click()
        assert page.locator("#viewer-path").text_content() in KEYS
        assert page.locator("#viewer-img").is_hidden() and page.locator("#viewer-open").is_hidden()
        assert page.locator("#error").is_hidden()
