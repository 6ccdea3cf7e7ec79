"""Search filters as Milvus boolean expressions over a row's scalar fields (applied before ranking).

A row holds its item's first file (in path order): ``path``, ``bytes``, ``date_ns`` (capture time,
else modification time, as nanoseconds) and the item's ``width`` and ``height``. An item with
several identical files is therefore matched on its first one; the local store matches any of them.
"""

from __future__ import annotations

import json

import numpy as np

from ..query.filters import Filter

#: Glob characters that Milvus ``like`` has no equivalent for, and ``like``'s own wildcards,
#: which a literal path must not contain (Milvus has no escape for them in every version).
_NO_LIKE = set("[]%_")


def expressible(filters: Filter | None) -> bool:
    """Whether ``filters`` translate to an expression exactly (else the ids are looked up locally);
    ``has_text`` aside: the words read in the images come as allowed ids."""
    if filters is None or filters.is_empty():
        return True
    glob, prefix = filters.glob_pattern(), filters.prefix_path()
    return not (glob and _NO_LIKE & set(glob)) and not (prefix and _NO_LIKE & set(prefix))


def to_expression(filters: Filter | None, keys_only: bool = False) -> str:
    """The Milvus expression for ``filters`` (``""``: everything passes). Requires ``expressible``."""
    if filters is None or filters.is_empty():
        return ""
    where = filters.key_conditions() if keys_only else filters.conditions()
    parts = []
    if where.path_glob is not None:
        parts.append(f"path like {_quote(where.path_glob.replace('*', '%').replace('?', '_'))}")
    if where.path_prefix is not None:
        parts.append(f"({under([where.path_prefix])})")
    parts += [f"{field} {op} {value}" for field, op, value in where.bounds()]  # the row's fields share the names
    if where.shape() is not None:
        parts.append(f"width {where.shape()} height")
    return " and ".join(parts)


def under(paths: list[str]) -> str:
    """Rows whose path is at or under one of ``paths``; where a path holds ``%`` or ``_`` (``like``'s
    wildcards, which also match themselves), a superset: check the paths found exactly."""
    return " or ".join(f"path == {_quote(p.rstrip('/'))} or path like {_quote(p.rstrip('/') + '/%')}" for p in paths)


def ids_expression(ids: np.ndarray) -> str:
    return f"id in [{','.join(str(int(i)) for i in ids)}]"


def both(*expressions: str) -> str:
    return " and ".join(f"({e})" for e in expressions if e)


def _quote(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)  # a double-quoted string with \ and " escaped
