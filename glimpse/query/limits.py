"""How much work one query may ask for, checked once here for Python, the CLI and HTTP alike.

The caps are far above what a person types and keep the worst request small: 64 text terms
encode in well under a second on one core, where 10,000 took 9.7 s and held up every search.

* ``k`` (results): 1 to 1,000; a query's own ``oversample``: 1 to 10,000, and at most
  100,000 code candidates (``k * oversample``) to re-rank.
* Terms in one query: at most 64.
* A query-language string: at most 8,192 characters; one text (a query or a term): 2,000.
* Item ids: whole numbers from 0 to 2**63 - 1 (SQLite's integers); larger ones name no item.
* Text must be valid Unicode: a lone surrogate (from a name or argument that was not UTF-8)
  cannot be encoded for the text model.
* Text with nothing to read (only spaces, control characters or invisible formatting) is empty.
* Error messages quote at most 120 characters of what was sent.
"""

from __future__ import annotations

from .. import settings

MAX_K = 1000
MAX_CANDIDATES = 100_000
MAX_TERMS = 64
MAX_QUERY_CHARS = 8192
MAX_TEXT_CHARS = 2000
MAX_ID = 2**63 - 1
MAX_ECHO = 120


def clip(text: str, limit: int = MAX_ECHO) -> str:
    """``text`` for an error message: printable (``repr`` escapes), and at most ``limit`` characters."""
    shown = repr(text)[1:-1]
    return shown if len(shown) <= limit else shown[: limit - 1] + "…"


def check_k(k: int) -> int:
    number = settings.whole(k)
    if number is None or not 1 <= number <= MAX_K:
        raise ValueError(f"k must be a whole number from 1 to {MAX_K}, got {clip(str(k) if number is not None else repr(k))}")
    return number


def check_oversample(oversample: int, k: int) -> None:
    """One query's ``oversample``: a valid setting (:func:`glimpse.settings.check_oversample`) that
    keeps the shortlist to re-rank within bounds."""
    oversample = settings.check_oversample(oversample)
    if k * oversample > MAX_CANDIDATES:
        raise ValueError(f"k x oversample is {k * oversample:,} candidates; at most {MAX_CANDIDATES:,} are allowed")


def check_terms(count: int) -> None:
    if count > MAX_TERMS:
        raise ValueError(f"the query has {count} terms; at most {MAX_TERMS} are allowed")


def check_item_id(value: int) -> int:
    """``value`` as an int if it can be an item id (numpy's integers too), else ValueError."""
    number = settings.whole(value)
    if number is None or not 0 <= number <= MAX_ID:
        raise ValueError(f"an item id is a whole number from 0 to {MAX_ID}, got "
                         f"{clip(str(value) if number is not None else repr(value))}")
    return number


def blank(text: str) -> bool:
    """Whether ``text`` holds nothing to read: only spaces, control characters or invisible
    formatting (a zero-width space, a NUL byte), which the text model reads as no text at all."""
    return not any(c.isprintable() and not c.isspace() for c in text)


def check_text(text: str, what: str = "the text query", limit: int = MAX_TEXT_CHARS) -> str:
    """``text`` if the text model can take it: not too long, and valid Unicode."""
    if len(text) > limit:
        raise ValueError(f"{what} is {len(text):,} characters long; at most {limit:,} are allowed")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(
            f"{what} holds a character that is not valid Unicode at position {exc.start + 1} "
            f"({clip(text[max(0, exc.start - 20) : exc.start + 20])}): was it typed or saved in another encoding?"
        ) from None
    return text
