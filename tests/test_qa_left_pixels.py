"""One request's images are held to a pixel budget together, from their headers, before any
is decoded: eight images near the per-image limit cost ~13 CPU s in one request before."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

import glimpse
import glimpse.server.service as service_module
from conftest import big_png, make_image
from glimpse.ingest import image_pixels
from glimpse.server import ServerConfig, create_app

AUTH = {"Authorization": "Bearer t"}
QUERY = '{"terms": [{"upload": 0}, {"upload": 1}, {"upload": 2}]}'


@pytest.fixture
def http(tmp_path, image_dir, monkeypatch):
    col = glimpse.open(tmp_path / "col", encoder="hash")
    col.add([image_dir])
    decoded = []
    real = service_module.decode_image
    monkeypatch.setattr(service_module, "decode_image", lambda data, **kw: decoded.append(1) or real(data, **kw))
    with TestClient(create_app(col, ServerConfig(write_token="t", max_request_pixels=2_500_000))) as client:
        client.decoded, client.col = decoded, col
        yield client
    col.close()


@pytest.mark.parametrize("route", ["/api/search/image", "/api/items/upload?wait=true"])
def test_images_over_the_budget_together_are_refused_before_decoding(http, route, tmp_path):
    pictures = [make_image(tmp_path / f"m{i}.png", seed=i, size=(1000, 1000)).read_bytes() for i in range(3)]
    images = [("image", (f"m{i}.png", data, "image/png")) for i, data in enumerate(pictures)]  # 1 MP each
    data = {"query": QUERY} if "search" in route else None
    answer = http.post(route, files=images, data=data, headers=AUTH)
    assert answer.status_code == 413
    assert answer.json()["error"] == ("the 3 images of this request hold 3.0 MP together, over the limit of "
                                      "2.5 MP per request: send fewer or smaller images at a time")
    assert http.decoded == [] and not (http.col.path / "uploads").exists()
    # Two of them fit, and are decoded.
    data = {"query": '{"terms": [{"upload": 0}, {"upload": 1}]}'} if "search" in route else None
    assert http.post(route, files=images[:2], data=data, headers=AUTH).status_code == 200
    assert len(http.decoded) == 2


def test_one_image_over_the_per_image_limit_is_named_by_that_limit(tmp_path, image_dir):
    col = glimpse.open(tmp_path / "col", encoder="hash")
    col.add([image_dir])
    config = ServerConfig(max_upload_pixels=1_000_000, max_request_pixels=1_500_000)
    with TestClient(create_app(col, config)) as client:
        answer = client.post("/api/search/image", files={"image": ("big.png", big_png(2000, 1000), "image/png")})
        assert answer.status_code == 413 and answer.json()["error"].startswith("big.png: too many pixels (2000x1000")
    with TestClient(create_app(col, ServerConfig(max_upload_pixels=1_000_000, max_request_pixels=500_000))) as client:
        answer = client.post("/api/search/image", files={"image": ("big.png", big_png(800, 1000), "image/png")})
        assert answer.status_code == 413 and answer.json()["error"] == (
            "this request's image holds 0.8 MP, over the limit of 0.5 MP per request: send a smaller image")
    col.close()


def test_the_budget_is_stated_and_checked(http):
    schema = http.get("/openapi.json").json()
    for route in ("/api/search/image", "/api/items/upload"):
        body = schema["paths"][route]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]["$ref"]
        field = schema["components"]["schemas"][body.rsplit("/", 1)[1]]["properties"]["image"]
        assert "2.5 MP together (checked from the headers before decoding)" in field["description"]
    assert http.get("/api/stats").json()["max_request_pixels"] == 2_500_000
    with pytest.raises(ValueError, match="max_request_pixels must be a whole number of at least 1"):
        ServerConfig(max_request_pixels=0)


def test_image_pixels_reads_the_header_only():
    assert image_pixels(big_png(30_000, 20_000)) == 600_000_000  # decoding would take 600 MP
    assert image_pixels(b"not an image") == 0
