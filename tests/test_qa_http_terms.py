"""A bad ``terms`` field is one sentence about the form sent (text or a list), without pydantic's inner names."""

from __future__ import annotations

import pytest

from qa_http_fixtures import client  # noqa: F401  (a fixture)


@pytest.mark.parametrize(("terms", "error"), [
    ([{"text": "a", "id": 1}], "terms.0: a term is exactly one of text, id or upload"),
    ([{"text": "a", "weight": "2"}], "terms.0.weight: Input should be a valid number"),
    ([{"txt": "a"}], "terms.0.txt: Extra inputs are not permitted"),
    ([{"id": "x"}], "terms.0.id: must be plain digits (0-9), like 12"),
    (5, "terms: must be the query language as a string, or a list of terms"),
    ({"text": "a"}, "terms: must be the query language as a string, or a list of terms"),
])
def test_a_bad_terms_field_is_one_plain_sentence(client, terms, error):
    answer = client.post("/api/search", json={"terms": terms})
    assert answer.status_code == 422
    assert answer.json()["error"] == error


def test_both_forms_still_search(client):
    assert client.post("/api/search", json={"terms": "red + 2:blue"}).status_code == 200
    assert client.post("/api/search", json={"terms": [{"text": "red"}, {"id": 1, "weight": -0.5}]}).status_code == 200


def test_a_field_named_like_a_form_is_still_named(client):
    answer = client.post("/api/search", json={"query": "cat"})
    assert answer.json()["error"] == "query: Extra inputs are not permitted"
