"""The query language shared by the CLI, Python and HTTP: weighted, signed terms.

    "2:golden retriever" + ./pool.jpg - "night" + #123

* A **term** is a text, an image path or an item id (``#123``: a result of an earlier search).
* Terms are joined by ``+`` or ``-`` (an operator stands alone: ``t-shirt`` is one word). A
  leading ``-`` makes the first term negative.
* ``N:`` in front of a term (inside or outside quotes) weighs it: ``2:dog``, ``"0.5:a red car"``.
* Quotes (``"..."`` or ``'...'``) keep operators and spaces inside one term. Unquoted words
  run up to the next operator, so ``golden retriever + pool`` is two terms.
* ``text:"exit only"`` matches the words read in the pictures (OCR) only, not the vectors: a
  positive one keeps the images whose words hold the phrase, a negative one drops them.
* A term that looks like a file path (starts with ``/``, ``./``, ``../`` or ``~``, or is one
  word ending in an image extension) is an image; everything else is text.

The Python form is a list of ``(term, weight)`` pairs: ``str`` is text, ``pathlib.Path``,
``bytes`` or a Pillow image is an image, ``int`` is an item id, :class:`Words` is a ``text:`` term. Both forms become a list of
:class:`Term`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image

from .limits import MAX_ID, MAX_QUERY_CHARS, blank, check_item_id, check_terms, check_text, clip

TermKind = Literal["text", "image", "item", "words"]

IMAGE_SUFFIXES = (
    ".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".heic", ".heif", ".avif",
)

_WEIGHT = re.compile(r"(\d+(?:\.\d*)?|\.\d+):")
_ITEM = re.compile(r"#(\d+)")
_WORDS = re.compile(r"text:\s*([\"']?)(.*)\1", re.IGNORECASE | re.DOTALL)
_WORDS_INSIDE = re.compile(r"\stext:\s*[\"']", re.IGNORECASE)


class Words(str):
    """A ``text:`` term's phrase: matched in the words read in the pictures, not by the vectors.

    In the Python form, ``(Words("exit only"), 1.0)`` is ``text:"exit only"``.
    """


@dataclass(frozen=True)
class Term:
    kind: TermKind
    value: object  # text, words: str; image: Path, bytes or a Pillow image; item: int
    weight: float  # negative for "-" terms


class QuerySyntaxError(ValueError):
    """A malformed query string; says where, with a caret under the spot."""

    def __init__(self, message: str, query: str, position: int):
        self.position = position
        # A window of the query around the spot, so a long query is not echoed whole.
        start, end = max(0, position - _CONTEXT), position + _CONTEXT
        before = ("…" if start else "") + _printable(query[start:position])
        window = before + _printable(query[position:end]) + ("…" if end < len(query) else "")
        super().__init__(f"{message} (at position {position + 1})\n  {window}\n  {' ' * len(before)}^")


_CONTEXT = 40


def _printable(text: str) -> str:
    return "".join(c if c.isprintable() else "?" for c in text)


def parse_query(query: str) -> list[Term]:
    """Parse a query string into signed, weighted terms."""
    if len(query) > MAX_QUERY_CHARS:
        raise ValueError(f"the query is {len(query):,} characters long; at most {MAX_QUERY_CHARS:,} are allowed")
    terms: list[Term] = []
    pos, n = 0, len(query)
    sign = 1.0
    expect_term = True  # at the start, and after an operator
    op_at = 0
    sign_given = False
    while True:
        while pos < n and query[pos].isspace():
            pos += 1
        if pos == n:
            break
        if _is_operator(query, pos):
            if expect_term and (terms or sign_given):
                raise QuerySyntaxError(f"expected a term, found '{query[pos]}'", query, pos)
            # Between terms, or one leading sign ("- night": the first term is negative).
            sign, expect_term, op_at, sign_given = (1.0 if query[pos] == "+" else -1.0), True, pos, True
            pos += 1
            continue
        if not expect_term:
            raise QuerySyntaxError("expected '+' or '-' between terms (quote text that has several parts)", query, pos)
        start = pos
        weight, pos = _weight(query, pos)
        if pos < n and query[pos] in "\"'":
            quote = query[pos]
            end = query.find(quote, pos + 1)
            if end < 0:
                raise QuerySyntaxError(f"unterminated {quote} quote", query, pos)
            body, pos = query[pos + 1 : end], end + 1
            inner_weight, body = _inner_weight(body)
            if inner_weight is not None:
                if weight is not None:
                    raise QuerySyntaxError("two weights on one term", query, start)
                weight = inner_weight
            if blank(body):
                raise QuerySyntaxError("empty quoted term", query, start)
            if pos < n and not query[pos].isspace() and not _is_operator(query, pos):
                raise QuerySyntaxError("expected a space or an operator after the closing quote", query, pos)
        else:
            end = pos
            while end < n and not _is_operator(query, end):
                end += 1
            body, pos = query[pos:end].strip(), end
            if not body:
                raise QuerySyntaxError("expected a term after the weight", query, start)
        if weight is not None and not 0 < weight < math.inf:
            raise QuerySyntaxError("a weight must be a number above 0 (use '-' for a negative term)", query, start)
        terms.append(_classify(body, sign * (1.0 if weight is None else weight), query, start))
        check_terms(len(terms))
        expect_term, sign, sign_given = False, 1.0, False
    if not terms:
        raise QuerySyntaxError("the query is empty", query, 0)
    if expect_term:
        raise QuerySyntaxError(f"expected a term after '{query[op_at]}'", query, op_at)
    return terms


def terms_from_python(terms: list[tuple[object, float]]) -> list[Term]:
    """The Python form: ``[(term, weight)]`` with str = text, Path/bytes/PIL = image, int = item."""
    if not terms:
        raise ValueError("terms is empty: give at least one (term, weight) pair")
    check_terms(len(terms))
    out = []
    for pair in terms:
        if not isinstance(pair, tuple) or len(pair) != 2:
            raise ValueError(f"each term must be a (term, weight) pair, got {clip(repr(pair))}")
        value, weight = pair
        if isinstance(weight, (bool, np.bool_)) or not isinstance(weight, (int, float, np.integer, np.floating)) \
                or weight == 0 or not math.isfinite(weight):
            raise ValueError(f"the weight of {clip(repr(value))} must be a finite, non-zero number, got {weight!r}")
        if isinstance(value, (bool, np.bool_)):
            raise ValueError(f"unsupported term {value!r}")
        if isinstance(value, (int, np.integer)):  # an id from add_vectors or item_ids() alike
            out.append(Term("item", check_item_id(value), float(weight)))
        elif isinstance(value, str):
            if blank(value):
                raise ValueError("a text term is empty")
            out.append(Term("text", check_text(value, "a text term"), float(weight)))
        elif isinstance(value, (Path, bytes, Image.Image)):
            out.append(Term("image", value, float(weight)))
        else:
            raise ValueError(
                f"unsupported term {clip(repr(value))}: use str for text, pathlib.Path/bytes/PIL for images, int for ids"
            )
    return out


def _is_operator(query: str, pos: int) -> bool:
    """'+' or '-' standing alone: after a space (or at the start), before a space or the end."""
    if query[pos] not in "+-":
        return False
    before_ok = pos == 0 or query[pos - 1].isspace()
    after_ok = pos + 1 == len(query) or query[pos + 1].isspace() or query[pos + 1] in "\"'#"
    return before_ok and after_ok


def _weight(query: str, pos: int) -> tuple[float | None, int]:
    m = _WEIGHT.match(query, pos)
    if m is None:
        return None, pos
    return float(m.group(1)), m.end()


def _inner_weight(body: str) -> tuple[float | None, str]:
    m = _WEIGHT.match(body)
    if m is None:
        return None, body
    return float(m.group(1)), body[m.end() :]


def _classify(body: str, weight: float, query: str, at: int) -> Term:
    body = body.strip()
    if body.startswith("#"):
        m = _ITEM.fullmatch(body)
        if m is None:
            raise QuerySyntaxError(f"an item id is '#' and digits, got '{clip(body)}'", query, at)
        digits = m.group(1).lstrip("0") or "0"
        if len(digits) > len(str(MAX_ID)) or int(digits) > MAX_ID:
            raise QuerySyntaxError(f"no item id is that large (at most {MAX_ID})", query, at)
        return Term("item", int(digits), weight)
    if m := _WORDS.fullmatch(body):
        if blank(m.group(2)):
            raise QuerySyntaxError('text: needs the words to look for, e.g. text:"exit only"', query, at)
        if not m.group(1) and m.group(2)[:1] in "\"'":
            quote = m.group(2)[0]
            if quote in m.group(2)[1:]:  # closed, then more words: text:"exit" dog
                raise QuerySyntaxError(f"text:{quote}...{quote} is a term of its own: put + or - between it and the "
                                       "words after it", query, at)
            raise QuerySyntaxError(f"the quote after text: is never closed: add {quote} after the words", query, at)
        return Term("words", Words(check_text(m.group(2).strip(), "a text: term")), weight)
    if _WORDS_INSIDE.search(body):  # dog text:"exit" would search for the quote's letters as meaning
        raise QuerySyntaxError('text:"..." is a term of its own: put + or - between it and the words before it',
                               query, at)
    if looks_like_path(body):
        try:
            return Term("image", Path(body).expanduser(), weight)
        except RuntimeError:  # "~name" of a user this machine does not have
            raise QuerySyntaxError(f"no home folder for '{clip(body.split('/')[0])}'", query, at) from None
    return Term("text", check_text(body, "a text term"), weight)


def looks_like_path(text: str) -> bool:
    if text.startswith(("/", "./", "../", "~")):
        return True
    return " " not in text and text.lower().endswith(IMAGE_SUFFIXES)
