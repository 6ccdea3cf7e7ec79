"""Bodies the JSON parser cannot take get our one-sentence errors, as every other bad body does."""

from __future__ import annotations

import gzip

import pytest

from qa_http_fixtures import AUTH, client  # noqa: F401  (a fixture)


JSON = {"Content-Type": "application/json"}


DEEP = [b"[" * 5000 + b"]" * 5000, b'{"a":' * 5000 + b"1" + b"}" * 5000,
        b'{"text": "a", "filters": ' + b"[" * 3000 + b"]" * 3000 + b"}"]


@pytest.mark.parametrize("body", DEEP, ids=["arrays", "objects", "in-a-field"])
@pytest.mark.parametrize("url", ["/api/search", "/api/items/add", "/api/items/remove"])
def test_deeply_nested_json_is_400_in_our_words(client, url, body):
    answer = client.post(url, content=body, headers={**JSON, **AUTH})
    assert answer.status_code == 400, answer.text
    assert answer.json() == {"error": "the request body is not valid JSON (nested too deeply)", "status": 400}


@pytest.mark.parametrize("query", ["[" * 5000, '{"a":' * 5000])
def test_a_deeply_nested_query_field_gets_the_same_words(client, query):
    answer = client.post("/api/search/image", data={"query": query}, files={"image": ("q.png", client.photo, "image/png")})
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"] == "the query field is not valid JSON (nested too deeply)"


def test_a_body_that_is_not_utf8_is_400_in_our_words(client):
    answer = client.post("/api/search", content=b'{"text": "caf\xe9 \xff"}', headers=JSON)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"] == "the request body is not valid JSON (not UTF-8 text)"


@pytest.mark.parametrize("coding", ["gzip", "deflate", "br"])
def test_compressed_bodies_are_refused_unread(client, coding):
    # never inflated: a few KiB of gzip can hold gigabytes
    answer = client.post("/api/search", content=gzip.compress(b'{"text": "a"}'), headers={**JSON, "Content-Encoding": coding})
    assert answer.status_code == 415, answer.text
    assert answer.json()["error"] == f"a body sent with Content-Encoding: {coding} is not accepted: send it uncompressed"


def test_identity_encoding_is_plain(client):
    answer = client.post("/api/search", content=b'{"text": "a"}', headers={**JSON, "Content-Encoding": "identity"})
    assert answer.status_code == 200, answer.text


@pytest.mark.parametrize(("body", "key"), [
    ('{"text": "a", "k": 1, "k": 2}', "k"),
    ('{"text": "a", "filters": {"min_width": 1, "min_width": 900}}', "filters.min_width"),
    ('{"terms": [{"text": "a", "weight": 1, "weight": -1}]}', "terms.0.weight"),
])
def test_a_json_key_given_twice_is_refused_not_half_read(client, body, key):
    # json keeps the last value unseen, as a form field sent twice would be
    plain = client.post("/api/search", content=body, headers=JSON)
    field = client.post("/api/search/image", data={"query": body}, files={"image": ("q.png", client.photo, "image/png")})
    assert (plain.status_code, field.status_code) == (422, 422), (plain.text, field.text)
    assert plain.json()["error"] == f"the request body gives {key} twice: send it once"
    assert field.json()["error"] == f"the query field gives {key} twice: send it once"


def test_a_repeated_key_in_a_write_body_is_refused(client):
    answer = client.post("/api/items/remove", content='{"paths": ["x.png"], "paths": ["y.png"]}', headers={**JSON, **AUTH})
    assert answer.status_code == 422 and answer.json()["error"] == "the request body gives paths twice: send it once"


@pytest.mark.parametrize("body", ["null", "1", '"x"', "[]", "[[1, 2], {}]", "nonsense"])
def test_any_json_value_is_looked_through_for_repeated_keys(body):
    from glimpse.server.errors import repeated_key

    assert repeated_key(body) is None
