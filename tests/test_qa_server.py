"""Hostile HTTP requests found by the independent checks: a 4xx JSON error or a clean answer, never a 500."""

from __future__ import annotations

import os

import pytest
from fastapi.testclient import TestClient

import glimpse
from glimpse.server import ServerConfig, create_app

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def client(tmp_path, image_dir):
    col = glimpse.open(tmp_path / "col", encoder="hash")
    col.add([image_dir])
    with TestClient(create_app(col, ServerConfig(write_token=TOKEN))) as http:
        yield http
    col.close()


def test_removing_a_link_loop_is_a_clean_job(client, image_dir):
    os.symlink(image_dir / "loop-b", image_dir / "loop-a")
    os.symlink(image_dir / "loop-a", image_dir / "loop-b")
    answer = client.post("/api/items/remove?wait=true", json={"paths": [str(image_dir / "loop-a")]}, headers=AUTH)
    assert answer.status_code == 200, answer.text
    assert answer.json()["state"] == "done" and answer.json()["result"] == {"removed": 0}
    assert client.get("/api/health").json()["images"] == 12


def test_an_indexed_photo_above_the_upload_pixel_limit_gets_a_thumbnail(tmp_path):
    from PIL import Image

    folder = tmp_path / "big"
    folder.mkdir()
    Image.new("RGB", (8000, 6000), "green").save(folder / "48mp.jpg", quality=30)  # a 48 MP phone photo
    col = glimpse.open(tmp_path / "col", encoder="hash")
    col.add([folder])
    with TestClient(create_app(col, ServerConfig())) as http:
        assert 8000 * 6000 > ServerConfig().max_upload_pixels
        thumb = http.get("/api/items/0/thumbnail", params={"size": 256})
        assert thumb.status_code == 200, thumb.text
        assert thumb.headers["content-type"] == "image/jpeg"
    col.close()


@pytest.mark.parametrize("body", [
    '{"text": "red", "min_score": NaN}',
    '{"text": "red", "min_score": -Infinity}',
    '{"terms": [{"text": "red", "weight": NaN}]}',
])
def test_nan_and_infinity_are_refused_as_not_finite(client, body):
    answer = client.post("/api/search", content=body, headers={"Content-Type": "application/json"})
    assert answer.status_code == 422
    error = answer.json()["error"]  # the engine's check of min_score, or of a term's weight
    assert error.startswith("min_score must be a cosine from -1 to 1") or "must be a finite, non-zero number" in error, error


@pytest.mark.parametrize("fields", [{"k": "2"}, {"filters": '{"has_text": true}'}, {"text": "red", "query": "{}"}])
def test_search_options_sent_as_form_fields_beside_the_query_json_are_refused(client, image_dir, fields):
    picture = (image_dir / "img01.png").read_bytes()
    answer = client.post("/api/search/image", data=fields, files={"image": ("q.png", picture, "image/png")})
    assert answer.status_code == 422, answer.text  # they were ignored: k=10, no filter
    error = answer.json()
    assert error["status"] == 422 and "unknown form field" in error["error"] and "query" in error["error"]
    upload = client.post("/api/items/upload", data={"wait": "true"}, files={"image": ("q.png", picture, "image/png")},
                         headers={"Authorization": f"Bearer {TOKEN}"})
    assert upload.status_code == 422 and "unknown form field" in upload.json()["error"]


@pytest.mark.parametrize("body, field", [
    ({"text": "a cat", "k": "10"}, "k"),
    ({"text": "a cat", "k": True}, "k"),
    ({"text": "a cat", "exact": "yes"}, "exact"),
    ({"text": "a cat", "filters": {"has_text": "yes"}}, "filters.has_text"),
    ({"text": "a cat", "filters": {"min_width": "100"}}, "filters.min_width"),
    ({"text": "a cat", "min_score": "0.2"}, "min_score"),
    ({"like": True}, "like"),
])
def test_a_wrong_json_type_is_refused_naming_the_field(client, body, field):
    answer = client.post("/api/search", json=body)
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"].startswith(f"{field}:") and answer.json()["status"] == 422


def test_an_item_id_still_comes_as_its_digits_and_numbers_as_numbers(client):
    first = client.post("/api/search", json={"text": "a cat", "k": 2}).json()["results"][0]["id"]
    for like in (first, str(first)):  # the web page sends ids past 2**53 as text
        answer = client.post("/api/search", json={"like": like, "k": 3, "min_score": -1, "filters": {"min_width": 1}})
        assert answer.status_code == 200, answer.text


@pytest.mark.parametrize("route, headers", [("/api/items/upload", AUTH), ("/api/search/image", {})])
def test_an_image_part_without_a_filename_is_refused_saying_how_to_send_it(client, route, headers):
    answer = client.post(route, files={"image": ("", b"\x89PNG\r\n\x1a\n", "image/png")}, headers=headers)
    assert answer.status_code == 422 and "filename" in answer.json()["error"], answer.text
    assert "UploadFile" not in answer.json()["error"]


JSON_BODY_CASES = [  # (what is sent, status, the sentence's start)
    ('{"text": "red"', 400, "is not valid JSON"),
    ("[1, 2]", 422, "must be a JSON object, not an array"),
    ("null", 422, "must be a JSON object, not null"),
    ('{"text": "red", "k": "x"}', 422, None),
]


@pytest.mark.parametrize("body, status, words", JSON_BODY_CASES)
def test_a_bad_json_body_gets_one_status_and_wording_as_body_or_form_field(client, image_dir, body, status, words):
    plain = client.post("/api/search", content=body, headers={"Content-Type": "application/json"})
    picture = (image_dir / "img01.png").read_bytes()
    field = client.post("/api/search/image", data={"query": body}, files={"image": ("q.png", picture, "image/png")})
    assert (plain.status_code, field.status_code) == (status, status), (plain.text, field.text)
    assert plain.json()["error"].startswith("the request body") or plain.json()["error"].startswith("k:"), plain.text
    assert field.json()["error"].startswith("the query field") or field.json()["error"].startswith("query.k:"), field.text
    if words:
        assert words in plain.json()["error"] and words in field.json()["error"]
    assert "Input should be a valid dictionary" not in plain.text + field.text


def test_an_empty_body_says_what_to_send(client):
    answer = client.post("/api/search", content="", headers={"Content-Type": "application/json"})
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"] == "the request body is empty: send a JSON object with Content-Type: application/json"


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_a_json_body_sent_as_another_type_is_415_saying_which_to_send(client, content_type):
    headers = {"Content-Type": content_type} if content_type else {}
    answer = client.post("/api/search", content='{"text": "red"}', headers=headers)
    assert answer.status_code == 415, answer.text
    assert answer.json()["error"] == "the request body must be JSON sent with Content-Type: application/json"


@pytest.mark.parametrize("raw", ["", "   ", "a\0b", "~no-such-user-here"])
@pytest.mark.parametrize("url", ["/api/items/add", "/api/items/remove"])
def test_a_path_that_names_nothing_is_422_not_forbidden(client, url, raw):
    answer = client.post(f"{url}?wait=true", json={"paths": [raw]}, headers=AUTH)
    assert answer.status_code == 422 and "not a usable path" in answer.json()["error"], answer.text
    assert client.get("/api/health").json()["images"] == 12


@pytest.mark.parametrize("body", [
    {"text": "red", "filters": {"path_glob": "[invalid"}},
    {"text": "red", "filters": {"path_glob": "img[]"}},
])
def test_a_path_glob_with_an_unclosed_class_is_422_not_an_empty_answer(client, body):
    answer = client.post("/api/search", json=body)
    assert answer.status_code == 422 and "no ']' closes" in answer.json()["error"], answer.text


def test_an_add_glob_with_an_unclosed_class_is_422_and_adds_nothing(client, image_dir):
    answer = client.post("/api/items/add?wait=true", json={"paths": [str(image_dir)], "include": ["[invalid"]}, headers=AUTH)
    assert answer.status_code == 422 and "no ']' closes" in answer.json()["error"], answer.text
    literal = client.post("/api/search", json={"text": "red", "filters": {"path_glob": "img[[]*"}})
    assert literal.status_code == 200, literal.text


def test_a_path_prefix_under_an_unknown_users_home_is_an_answer_not_a_500(client):
    answer = client.post("/api/search", json={"text": "red", "filters": {"path_prefix": "~no-such-user-here/x"}})
    assert answer.status_code == 200 and answer.json()["results"] == [], answer.text


@pytest.mark.parametrize("field", ["path_prefix", "path_glob"])
def test_a_path_filter_with_a_nul_byte_is_refused(client, field):
    answer = client.post("/api/search", json={"text": "red", "filters": {field: "img\u0000"}})
    assert answer.status_code == 422 and "without NUL bytes" in answer.json()["error"], answer.text


def test_a_collection_database_damaged_under_a_running_server_is_503_not_500(tmp_path, image_dir):
    with glimpse.open(tmp_path / "col", encoder="hash") as col:
        col.add([image_dir])
    with TestClient(create_app(tmp_path / "col", ServerConfig()), raise_server_exceptions=False) as http:
        assert http.post("/api/search", json={"text": "red"}).status_code == 200
        for name in ("metadata.sqlite-wal", "metadata.sqlite-shm"):
            (tmp_path / "col" / name).unlink(missing_ok=True)
        (tmp_path / "col" / "metadata.sqlite").write_bytes(b"garbage" * 100)
        for answer in (http.post("/api/search", json={"text": "red"}), http.get("/api/items/1"), http.get("/api/stats"),
                       http.get("/api/health")):  # a monitor sees it too
            assert answer.status_code == 503, answer.text
            assert answer.json()["error"].startswith("the collection cannot be read: ")


def test_an_original_the_server_may_not_read_is_409_for_that_image(client, image_dir, monkeypatch):
    col = client.app.state.service.col
    denied = PermissionError(13, "Permission denied", str(image_dir / "img01.png"))
    monkeypatch.setattr(col, "open_original", lambda *args: (_ for _ in ()).throw(denied))
    for route in ("/api/items/1/image", "/api/items/1/thumbnail"):
        answer = client.get(route)
        assert answer.status_code == 409, answer.text
        assert answer.json()["error"] == f"image 1 is not shown: {image_dir / 'img01.png'} cannot be read (Permission denied)"


def test_a_query_form_field_sent_twice_is_refused_not_half_read(client, image_dir):
    picture = (image_dir / "img01.png").read_bytes()
    query = b'--b\r\nContent-Disposition: form-data; name="query"\r\n\r\n{"k": %d}\r\n'
    body = (query % 1 + query % 2 + b'--b\r\nContent-Disposition: form-data; name="image"; filename="q.png"\r\n'
            b"Content-Type: image/png\r\n\r\n" + picture + b"\r\n--b--\r\n")
    answer = client.post("/api/search/image", content=body, headers={"Content-Type": "multipart/form-data; boundary=b"})
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"] == "the form field query came 2 times: send it once"
