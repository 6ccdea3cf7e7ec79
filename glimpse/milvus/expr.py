"""Search filters as Milvus boolean expressions over a row's scalar fields (applied before ranking).

A row holds its item's first file (in path order): ``path``, ``bytes``, ``date_ns`` (capture time,
else modification time, as nanoseconds) and the item's ``width`` and ``height``; a file row
(:mod:`.files`) holds the first three of one file. An item matches when one of its files does, as
in the local store: its row's expression, or one of its other files' (``files=True``) with the
item's own conditions (:func:`pixels_expression`).
"""

from __future__ import annotations

import json
import re
import sqlite3
from contextlib import closing

import numpy as np

from ..collection.ingest import _is_under
from ..query.filters import Filter
from ..storage.records import ItemConditions

#: Characters a ``like`` pattern cannot take as themselves: ``like``'s own wildcards (Milvus has
#: no escape for them in every version), a backslash (an escape in Milvus 2.4+ ``like``, but not in
#: Milvus Lite 2.5's prefix match) and line breaks (no Milvus string literal holds one).
_BREAKS = "\\\r\n"
_LOOSE = set("%_" + _BREAKS)
#: Of those, what Milvus 2.3's prefix-only ``like`` cannot take as itself (its ``_`` is a literal).
_LOOSE_PREFIX = _LOOSE - {"_"}
#: Glob characters that Milvus ``like`` has no equivalent for, and the characters above.
_NO_LIKE = set("[]") | _LOOSE
#: A glob's character class (``[a-c]``, ``[!x]``, ``[]x]``): one character.
_CLASS = re.compile(r"\[[!^]?\]?[^]]*\]")
#: The bounds of ``ItemConditions`` on a file (an image row holds those of one of its files; the
#: row fields share the names); the others are on the image (``width``, ``height``).
FILE_FIELDS = ("date_ns", "bytes")


def expressible(filters: Filter | None, keys_only: bool = False, infix: bool = True) -> bool:
    """Whether ``filters`` translate to an expression exactly (else the expression lets a superset
    through, whose paths :func:`passing` checks); ``has_text`` aside: the words read in the images
    come as allowed ids. ``infix``: Milvus takes ``like`` wildcards anywhere (2.4 and later); Milvus
    2.3 takes a literal prefix only (``abc%``, its ``_`` a literal, a ``%`` elsewhere refused)."""
    if filters is None or filters.is_empty():
        return True
    where = filters.key_conditions() if keys_only else filters.conditions()
    glob, prefix = where.path_glob, where.path_prefix
    if not infix:
        return not (glob and (_prefix_glob(glob) is None or _LOOSE_PREFIX & set(glob))) and not (prefix and _LOOSE_PREFIX & set(prefix))
    if glob and _glob_like(glob) is None and set(glob) != {"*"}:  # no condition sent: a superset
        return False
    return not (glob and _NO_LIKE & set(glob)) and not (prefix and _NO_LIKE & set(prefix))


def to_expression(filters: Filter | None, keys_only: bool = False, infix: bool = True, files: bool = False) -> str:
    """The Milvus expression for ``filters`` (``""``: everything passes): exact where
    ``expressible``, else a superset (a glob's ``[...]`` becomes any one character, and a literal
    ``%`` or ``_`` stays a wildcard; without ``infix``, a glob is matched on its literal head).
    ``files``: over file rows, so only the conditions on a file (path, size, date)."""
    if filters is None or filters.is_empty():
        return ""
    where = filters.key_conditions() if keys_only else filters.conditions()
    parts = []
    if where.path_glob is not None and infix:
        if (pattern := _glob_like(where.path_glob)) is not None:
            parts.append(f"path like {_quote(pattern)}")
    elif where.path_glob is not None:
        head = _head(_prefix_glob(where.path_glob) or _head(where.path_glob, "*?[%"), _BREAKS)
        if head:
            parts.append(f"path like {_quote(head + '%')}")
    if where.path_prefix is not None:
        parts.append(f"({under([where.path_prefix])})")
    parts += [f"{field} {op} {value}" for field, op, value in where.bounds() if field in FILE_FIELDS]
    pixels = "" if files else pixels_expression(filters, keys_only)
    return " and ".join([*parts, pixels] if pixels else parts)


def on_a_file(where: ItemConditions) -> bool:
    """Whether ``where`` has conditions on a file (path, size, date), which files of one image
    may pass differently."""
    return (where.path_glob is not None or where.path_prefix is not None
            or any(field in FILE_FIELDS for field, _, _ in where.bounds()))


def pixels_expression(filters: Filter | None, keys_only: bool = False) -> str:
    """The conditions of ``filters`` on an image itself (pixel sizes, orientation), which every
    file of it shares: over image rows."""
    if filters is None or filters.is_empty():
        return ""
    where = filters.key_conditions() if keys_only else filters.conditions()
    parts = [f"{field} {op} {value}" for field, op, value in where.bounds() if field not in FILE_FIELDS]
    if where.shape() is not None:
        parts.append(f"width {where.shape()} height")
    return " and ".join(parts)


def _glob_like(glob: str) -> str | None:
    """The Milvus 2.4+ ``like`` pattern for ``glob``: exact where ``expressible``, else a superset
    (a class, a backslash or a line break is any one character; a literal ``%`` or ``_`` a
    wildcard). None for a pattern of wildcards alone, which Milvus Lite 2.5.1 matches with nothing
    (``"%"``, ``"%_%"``): no condition, a superset."""
    pattern = "".join("_" if c in _BREAKS else c for c in _CLASS.sub("_", glob)).replace("*", "%").replace("?", "_")
    return pattern if pattern.strip("%_") else None


def _prefix_glob(glob: str) -> str | None:
    """The literal head of a glob that is that head and one trailing ``*`` (what Milvus 2.3's
    ``head%`` matches exactly); None for any other glob."""
    head = glob[:-1]
    return head if glob.endswith("*") and head and not set("*?[%") & set(head) else None


def _head(text: str, stops: str) -> str:
    """``text`` up to the first of the characters ``stops``."""
    return text[: min((text.index(c) for c in stops if c in text), default=len(text))]


def stored(path: str) -> str:
    """``path`` as a row holds it: bytes that are not UTF-8 (a file name's) as U+FFFD."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def passing(paths: list[str], where: ItemConditions) -> np.ndarray:
    """Which of ``paths`` (of rows) pass the path conditions of ``where`` exactly, as the local
    store tests them (its SQLite ``GLOB``, in memory here; a prefix as the folder or what lies under it)."""
    keep = np.ones(len(paths), dtype=bool)
    if where.path_prefix is not None:
        keep &= np.array([_is_under(path, [stored(where.path_prefix).rstrip("/")]) for path in paths], dtype=bool)
    if where.path_glob is not None:
        with closing(sqlite3.connect(":memory:")) as db:
            rows = db.execute("SELECT key FROM json_each(?) WHERE value GLOB ?", (json.dumps(paths), stored(where.path_glob)))
            keep &= np.isin(np.arange(len(paths)), [row[0] for row in rows])
    return keep


def under(paths: list[str]) -> str:
    """Rows whose path is at or under one of ``paths``; where a path holds ``%`` or ``_`` (``like``'s
    wildcards, which also match themselves), a superset: check the paths found exactly. A path
    holding ``%``, a backslash or a line break (:data:`_LOOSE`) is matched on what comes before it
    (every Milvus version takes ``head%``)."""
    cut = "%" + _BREAKS
    return " or ".join(f"path like {_quote(_head(p, cut) + '%')}" if set(cut) & set(p) else
                       f"path == {_quote(p.rstrip('/'))} or path like {_quote(p.rstrip('/') + '/%')}" for p in paths)


def paths_expression(paths: list[str]) -> str:
    return f"path in [{','.join(map(_quote, paths))}]"


def ids_expression(ids: np.ndarray, field: str = "id") -> str:
    return f"{field} in [{','.join(str(int(i)) for i in ids)}]"


def both(*expressions: str) -> str:
    return " and ".join(f"({e})" for e in expressions if e)


def _quote(text: str) -> str:
    """A double-quoted string, as a row's path would hold it: \\ and " escaped, every other
    character as itself (Milvus Lite 2.5 decodes no other escape: JSON's ``\\t`` or ``\\u0001``
    matched nothing). A line break, which no Milvus string holds, is written ``\\n`` (``\\r``):
    it matches no row, and :func:`under` and :func:`_glob_like` never send one."""
    quoted = stored(text).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    return f'"{quoted}"'
