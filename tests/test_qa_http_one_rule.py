"""Search options are checked once, by the engine's SearchRequest: HTTP answers its sentence,
the same one Python and the command line get."""

from __future__ import annotations

import json

import pytest

from glimpse.query.request import SearchRequest
from qa_http_fixtures import client  # noqa: F401  (a fixture)

BAD = [{"k": 0}, {"k": 1001}, {"oversample": 0}, {"k": 1000, "oversample": 1000}, {"min_score": 1.5},
       {"min_score": float("nan")}, {"alpha": 2.0}, {"refine": "best"}, {"scoring": "fast"}, {"fusion": "mix"}]


@pytest.mark.parametrize("options", BAD, ids=lambda o: ",".join(o))
def test_http_answers_the_engines_sentence(client, options):
    with pytest.raises(ValueError) as engine:
        SearchRequest(text="a cat", **options)
    body = json.dumps({"text": "a cat", **options})  # NaN as the JSON extension Python writes
    answer = client.post("/api/search", content=body, headers={"Content-Type": "application/json"})
    assert answer.status_code == 422 and answer.json()["error"] == str(engine.value), answer.text
    field = client.post("/api/search/image", data={"query": body}, files={"image": ("q.png", client.photo, "image/png")})
    assert field.status_code == 422 and field.json()["error"] == str(engine.value), field.text


def test_the_schema_still_documents_the_bounds(client):
    fields = client.get("/openapi.json").json()["components"]["schemas"]["SearchBody"]["properties"]
    assert (fields["k"]["minimum"], fields["k"]["maximum"]) == (1, 1000)
    assert fields["fusion"]["enum"] == ["calibrated", "rrf", "none"]
    assert set(fields["scoring"]["enum"]) >= {"auto", "hamming"} and fields["refine"]["enum"] == ["aqe", "superglobal", "none", None]


@pytest.mark.parametrize("weight", [0.0, float("nan"), 250.0])
def test_a_term_weight_is_judged_as_the_engine_judges_it(client, weight):
    col = client.app.state.service.col
    try:
        col.search(terms=[("red", weight)], k=1)
        expected = (200, None)
    except ValueError as exc:
        expected = (422, str(exc))
    body = json.dumps({"terms": [{"text": "red", "weight": weight}], "k": 1})
    answer = client.post("/api/search", content=body, headers={"Content-Type": "application/json"})
    assert (answer.status_code, answer.json().get("error")) == expected, answer.text
