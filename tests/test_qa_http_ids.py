"""Ids and numbers in URLs are plain decimal digits: one id, one spelling."""

from __future__ import annotations

import pytest

from qa_http_fixtures import AUTH, client  # noqa: F401  (a fixture)


# pydantic's lax parsing took each of these for item 1 (or 10, or 0)
LOOSE = ["%201", "1%20", "+1", "1_0", "01", "1.0", "-0", "%091", "1%0A"]


@pytest.mark.parametrize("spelling", LOOSE)
@pytest.mark.parametrize("route", ["/api/items/{}", "/api/items/{}/thumbnail", "/api/items/{}/image", "/api/jobs/{}"])
def test_ids_in_paths_are_plain_digits(client, route, spelling):
    answer = client.get(route.format(spelling))
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"].endswith("must be plain digits (0-9), like 12")


def test_delete_takes_plain_digits_too(client):
    answer = client.delete("/api/items/%201", headers=AUTH)
    assert answer.status_code == 422 and "plain digits" in answer.json()["error"]


@pytest.mark.parametrize("query", ["size=%20256", "size=+256", "size=256.0", "size=0256"])
def test_numbers_in_query_strings_are_plain_digits(client, query):
    answer = client.get(f"/api/items/1/thumbnail?{query}")
    assert answer.status_code == 422 and "plain digits" in answer.json()["error"], answer.text
    assert client.get("/api/errors?limit=%201").status_code == 422


@pytest.mark.parametrize("like", ["01", " 1", "1_0", "+1"])
def test_ids_sent_as_text_in_a_body_are_plain_digits(client, like):
    answer = client.post("/api/search", json={"like": like})
    assert answer.status_code == 422 and answer.json()["error"] == "like: must be plain digits (0-9), like 12", answer.text


def test_plain_digits_still_work(client):
    assert client.get("/api/items/1").json()["id"] == 1
    assert client.get("/api/items/0/thumbnail?size=128").status_code == 200
    assert client.post("/api/search", json={"like": "1", "k": 2}).status_code == 200
    assert client.get("/api/errors?limit=5").status_code == 200


@pytest.mark.parametrize("digits", ["9223372036854775808", "9" * 5000])
def test_ids_past_64_bits_are_refused_by_their_size(client, digits):
    answer = client.get(f"/api/items/{digits}")
    assert answer.status_code == 422 and "less than or equal to 9223372036854775807" in answer.json()["error"]
