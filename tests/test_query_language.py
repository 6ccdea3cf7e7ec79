import re
from pathlib import Path

import pytest
from PIL import Image

from glimpse.query.language import QuerySyntaxError, Term, parse_query, terms_from_python


def test_issue_example_parses_into_weighted_signed_terms():
    assert parse_query('"2:golden retriever" + ./pool.jpg - "night" + #123') == [
        Term("text", "golden retriever", 2.0),
        Term("image", Path("pool.jpg"), 1.0),
        Term("text", "night", -1.0),
        Term("item", 123, 1.0),
    ]


@pytest.mark.parametrize("query, expected", [
    ("a cat asleep on a sofa", [Term("text", "a cat asleep on a sofa", 1.0)]),
    ("dog's t-shirt", [Term("text", "dog's t-shirt", 1.0)]),  # apostrophe and hyphen stay in the words
    ("golden retriever + pool", [Term("text", "golden retriever", 1.0), Term("text", "pool", 1.0)]),
    ("- night + 0.5:#7", [Term("text", "night", -1.0), Term("item", 7, 0.5)]),
    ("'a + b' - 3:/x/y.png", [Term("text", "a + b", 1.0), Term("image", Path("/x/y.png"), -3.0)]),
    ("photo.JPG", [Term("image", Path("photo.JPG"), 1.0)]),
])
def test_valid_queries(query, expected):
    assert parse_query(query) == expected


@pytest.mark.parametrize("query, message, position", [
    ("", "empty", 0),
    ("cat +", "expected a term after '+'", 4),
    ("cat + + dog", "expected a term, found '+'", 6),
    ('"cat" "dog"', "expected '+' or '-'", 6),
    ('"cat + dog', "unterminated", 0),
    ("#12x", "item id", 0),
    ("0:cat", "above 0", 0),
    ('2:"3:cat"', "two weights", 0),
    ('""', "empty quoted", 0),
    ('text:"exit only', "the quote after text: is never closed", 0),
])
def test_malformed_queries_say_what_and_where(query, message, position):
    with pytest.raises(QuerySyntaxError, match=re.escape(message)) as info:
        parse_query(query)
    assert info.value.position == position
    assert f"(at position {position + 1})" in str(info.value) and "^" in str(info.value)


def test_python_form_maps_types_to_kinds():
    picture = Image.new("RGB", (4, 4))
    terms = terms_from_python([("a dog", 2), (Path("x.jpg"), 1.0), (b"bytes", -1), (picture, 0.5), (12, 1)])
    assert [t.kind for t in terms] == ["text", "image", "image", "image", "item"]
    assert [t.weight for t in terms] == [2.0, 1.0, -1.0, 0.5, 1.0]


@pytest.mark.parametrize("terms, message", [
    ([], "empty"),
    ([("dog", 0)], "non-zero"),
    ([("dog",)], "pair"),
    ([(3.5, 1)], "unsupported"),
    ([("  ", 1)], "empty"),
])
def test_python_form_rejects_bad_terms(terms, message):
    with pytest.raises(ValueError, match=message):
        terms_from_python(terms)
