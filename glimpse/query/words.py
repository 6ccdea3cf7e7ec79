"""``text:"..."`` terms: the part of a query that looks at the words read in the pictures only."""

from __future__ import annotations

from .language import Words, parse_query

#: (phrase, sign): +1 keeps the images whose words hold the phrase, -1 drops them.
Phrase = tuple[str, float]


def split_word_terms(terms: str | list | None) -> tuple[str | list | None, list[Phrase]]:
    """Terms (a query-language string or ``[(term, weight)]``) -> (the other terms, or None when
    nothing is left, and the ``text:`` phrases). Queries without phrases come back unchanged."""
    if terms is None:
        return None, []
    pairs = [(t.value, t.weight) for t in parse_query(terms)] if isinstance(terms, str) else terms
    phrases = [(str(v), 1.0 if w > 0 else -1.0) for v, w in _pairs(pairs) if isinstance(v, Words)]
    if not phrases:
        return terms, []
    # terms_from_python reads the rest as parsed: str is text, int an item id, Path an image.
    rest = [pair for pair in pairs if not (isinstance(pair, tuple) and isinstance(pair[0], Words))]
    return rest or None, phrases


def _pairs(pairs: list) -> list[tuple[object, float]]:
    # Malformed pairs are left for terms_from_python to refuse with its message.
    return [p for p in pairs if isinstance(p, tuple) and len(p) == 2 and isinstance(p[1], (int, float))]
