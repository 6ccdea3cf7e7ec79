"""The bounds on one query, and bad input that used to crash: each is a ValueError with a
sentence (exit 2 in the CLI, 422 over HTTP: see test_server.py), never a traceback."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from typer.testing import CliRunner

import glimpse
from glimpse.cli import app
from glimpse.query.filters import Filter
from glimpse.query.language import parse_query, terms_from_python
from glimpse.query.limits import MAX_ECHO, MAX_K, MAX_QUERY_CHARS, MAX_TERMS

LONE_SURROGATE = "caf\udce9"  # what a Latin-1 byte in a name or an argument becomes in Python


@pytest.fixture(scope="module")
def col(tmp_path_factory, shared_collection_uri):
    folder = tmp_path_factory.mktemp("photos")
    for i, colour in enumerate(("red", "green", "blue", "white", "black")):
        Image.new("RGB", (32, 24), colour).save(folder / f"img{i}.png")
    collection = glimpse.open(shared_collection_uri, encoder="hash")
    collection.add([folder])
    yield collection
    collection.close()


@pytest.mark.parametrize(("query", "words"), [
    (" + ".join(["dog"] * (MAX_TERMS + 1)), f"at most {MAX_TERMS} are allowed"),
    ("x" * (MAX_QUERY_CHARS + 1), f"at most {MAX_QUERY_CHARS:,} are allowed"),
    ("#" + "9" * 40, "no item id is that large"),
    ("#9223372036854775808", "no item id is that large"),
    (f"dog + {LONE_SURROGATE}", "not valid Unicode"),
    ("9" * 400 + ":dog", "a weight must be a number above 0"),
])
def test_query_strings_beyond_the_bounds_are_refused(query, words):
    with pytest.raises(ValueError, match=words):
        parse_query(query)


def test_the_largest_item_id_still_parses():
    assert parse_query("#9223372036854775807")[0].value == 2**63 - 1


def test_errors_quote_only_a_window_of_a_long_query():
    query = "a" * 1000 + ' + "unterminated ' + "b" * 3000
    with pytest.raises(ValueError) as caught:
        parse_query(query)
    assert "unterminated" in str(caught.value) and len(str(caught.value)) < 300
    with pytest.raises(ValueError) as caught:
        Filter(after="x" * 10_000)
    assert len(str(caught.value)) < MAX_ECHO + 100


@pytest.mark.parametrize(("terms", "words"), [
    ([("dog", 1.0)] * (MAX_TERMS + 1), f"at most {MAX_TERMS}"),
    ([(2**63, 1.0)], "item id"),
    ([(-1, 1.0)], "item id"),
    ([(LONE_SURROGATE, 1.0)], "not valid Unicode"),
])
def test_python_terms_beyond_the_bounds_are_refused(terms, words):
    with pytest.raises(ValueError, match=words):
        terms_from_python(terms)


@pytest.mark.parametrize(("options", "words"), [
    ({"text": "dog", "k": MAX_K + 1}, f"from 1 to {MAX_K}"),
    ({"text": "dog", "k": 0}, f"from 1 to {MAX_K}"),
    ({"text": "dog", "oversample": 0}, "oversample"),
    ({"text": "dog", "k": 1000, "oversample": 1000}, "candidates"),
    ({"text": "x" * 5000}, "characters long"),
    ({"text": LONE_SURROGATE}, "not valid Unicode"),
    ({"like": 2**64}, "item id"),
    ({"terms": [("dog", 1.0)] * (MAX_TERMS + 1)}, f"at most {MAX_TERMS}"),
    ({"terms": "#" + "1" * 40}, "no item id is that large"),
    ({"text": "dog", "k": True}, "k must be"),
])
def test_searches_beyond_the_bounds_are_refused(col, options, words):
    with pytest.raises(ValueError, match=words):
        col.search(**options)


@pytest.mark.parametrize(("options", "words"), [
    ({"after": "2300"}, "from 1678 to 2261"),
    ({"before": dt.date(1200, 1, 1)}, "from 1678 to 2261"),
    ({"after": dt.datetime(9999, 12, 31)}, "from 1678 to 2261"),
    ({"min_bytes": 10**30}, "whole number from 0"),
    ({"max_width": 2**63}, "whole number from 0"),
    ({"min_bytes": "99999999999999999999999999TB"}, "whole number from 0"),
])
def test_filters_out_of_range_are_refused(options, words):
    with pytest.raises(ValueError, match=words):
        Filter(**options)


def test_dates_with_and_without_a_time_zone_compare(col):
    where = Filter(after="2020-01-01T00:00+02:00", before="2021")
    assert where.conditions().mtime_from_ns < where.conditions().mtime_to_ns
    with pytest.raises(ValueError, match="must be earlier"):
        Filter(after="2021-01-01T00:00+00:00", before="2020")
    assert col.search(text="dog", filters=Filter(after="2261-12-31", before=None)) == []


@pytest.mark.parametrize("args", [
    ["--after", "2300", "dog"],
    ["#" + "9" * 40],
    [LONE_SURROGATE],
    ["dog", "-k", "100000"],
    ["--like", str(2**64)],
    ["--min-size", "99999999999999999999999999TB", "dog"],
])
def test_the_cli_answers_bad_queries_with_exit_2_and_a_sentence(col, args):
    result = CliRunner().invoke(app, ["search", "-c", col.location, *args])
    assert result.exit_code == 2, result.output
    assert "error:" in result.output and "Traceback" not in result.output


@given(st.text(alphabet=st.sampled_from("#+-:.'\" 09az/~\udce9\ud800é"), max_size=60) | st.text(max_size=60))
@settings(max_examples=200, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_any_terms_string_is_searched_or_refused_with_a_value_error(col, query):
    try:
        terms = parse_query(query)
    except ValueError:
        return
    if any(t.kind == "image" for t in terms):
        return  # a path: read from disk (tested in test_query_search.py)
    try:
        col.search(terms=query, k=3)
    except ValueError as exc:
        assert len(str(exc)) < 400
