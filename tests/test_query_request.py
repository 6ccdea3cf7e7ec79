"""One search request for Python, the CLI and HTTP: its checks, its defaults, every option reachable."""

from __future__ import annotations

import dataclasses
import inspect
import json

import numpy as np
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

import glimpse
from glimpse.cli.search import search as cli_search
from glimpse.cli import app
from glimpse.query.filters import FIELDS as FILTER_FIELDS
from glimpse.query.filters import Filter
from glimpse.query.request import DEFAULT_K, SearchRequest
from glimpse.server import create_app
from glimpse.server.models import Filters, SearchBody

FIELDS = {f.name for f in dataclasses.fields(SearchRequest)}


@pytest.mark.parametrize("options, message", [
    ({"k": 0}, "k must be"),
    ({"k": 20, "oversample": 10_001}, "oversample must be"),
    ({"k": 1000, "oversample": 101}, "candidates"),
    ({"scoring": "cosine"}, "scoring must be one of auto"),
    ({"refine": "magic"}, "unknown refine"),
    ({"fusion": "sum"}, "fusion"),
    ({"filters": {"colour": "red"}}, "unknown filter field"),
    ({"filters": "red"}, "filters must be a Filter"),
])
def test_bad_options_are_refused_when_the_request_is_made(options, message):
    with pytest.raises(ValueError, match=message):
        SearchRequest(text="a cat", **options)


def test_every_scoring_mode_is_a_valid_per_query_choice():
    for mode in ("auto", "hamming", "cascade", "asymmetric"):
        assert SearchRequest(text="a cat", scoring=mode).scoring == mode
    assert SearchRequest(text="a cat", filters={"min_width": 10}).filters == Filter(min_width=10)


def test_one_default_for_k_in_python_the_cli_and_http():
    assert DEFAULT_K == 10
    assert inspect.signature(glimpse.Collection.search).parameters["k"].default == DEFAULT_K
    assert inspect.signature(cli_search).parameters["k"].default == DEFAULT_K
    assert SearchBody().k == DEFAULT_K


def test_http_takes_every_option_of_the_request():
    # An image comes as an upload (POST /api/search/image), not as a field.
    assert set(SearchBody.model_fields) == FIELDS - {"image"}
    defaults = SearchRequest()
    for name in FIELDS - {"image", "filters"}:
        assert SearchBody.model_fields[name].default == getattr(defaults, name), name


def test_the_cli_takes_every_option_of_the_request():
    cli = set(inspect.signature(cli_search).parameters)
    # Words are text or terms, as the query language reads them; filters are one option each.
    assert FIELDS - {"text", "terms", "filters"} <= cli
    assert {f.name for f in dataclasses.fields(Filter)} - {"min_bytes", "max_bytes"} <= cli
    assert {"min_size", "max_size"} <= cli  # min_bytes/max_bytes, written as sizes (500k, 2MB)


def test_filter_fields_are_declared_once_and_every_entry_point_has_them():
    assert list(FILTER_FIELDS) == [f.name for f in dataclasses.fields(Filter)]
    assert list(Filters.model_fields) == list(FILTER_FIELDS)
    assert all(Filters.model_fields[name].description == text for name, text in FILTER_FIELDS.items())


@pytest.fixture
def coded(tmp_path, make_image):
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(60):
        make_image(folder / f"p{i:02d}.png", seed=300 + i)
    col = glimpse.open(tmp_path / "col", encoder="hash")
    col.use_codes("itq", bits=32, oversample=1000, rerank=False)
    col.add([folder])
    return col, folder


def test_collection_search_takes_a_request_alone(coded):
    col, folder = coded
    request = SearchRequest(image=folder / "p03.png", k=3)
    assert col.search(request) == col.search(image=folder / "p03.png", k=3)
    with pytest.raises(ValueError, match="alone"):
        col.search(request, k=5)


def test_http_accepts_cascade_auto_fusion_and_adapted(coded):
    col, _ = coded
    client = TestClient(create_app(col))
    for body in ({"scoring": "cascade"}, {"scoring": "auto"}, {"fusion": "rrf"}, {"adapted": False}):
        answer = client.post("/api/search", json={"text": "red", **body})
        assert answer.status_code == 200, answer.text
        assert len(answer.json()["results"]) == DEFAULT_K
    assert client.post("/api/search", json={"text": "red", "scoring": "cosine"}).status_code == 422


def test_the_cli_keeps_the_collections_rerank_setting(coded, tmp_path):
    col, folder = coded
    want = [(r.id, round(r.score, 6)) for r in col.search(image=folder / "p05.png", k=5)]  # code scores
    reranked = [(r.id, round(r.score, 6)) for r in col.search(image=folder / "p05.png", k=5, rerank=True)]
    assert want != reranked
    out = CliRunner().invoke(app, ["search", "--image", str(folder / "p05.png"), "-k", "5", "--json", "-c", str(col.path)])
    assert out.exit_code == 0, out.output
    assert [(r["id"], round(r["score"], 6)) for r in json.loads(out.stdout)] == want


def test_the_cli_searches_by_a_vector_file(coded, tmp_path):
    col, _ = coded
    query = col.encoder.encode_texts(["blue"])[0]
    np.save(tmp_path / "q.npy", query)
    out = CliRunner().invoke(app, ["search", "--vector", str(tmp_path / "q.npy"), "-k", "3", "--json", "-c", str(col.path)])
    assert out.exit_code == 0, out.output
    assert [r["id"] for r in json.loads(out.stdout)] == [r.id for r in col.search(vector=query, k=3)]
    np.save(tmp_path / "two.npy", np.stack([query, query]))
    bad = CliRunner().invoke(app, ["search", "--vector", str(tmp_path / "two.npy"), "-c", str(col.path)])
    assert bad.exit_code == 2 and "give one vector" in bad.output
