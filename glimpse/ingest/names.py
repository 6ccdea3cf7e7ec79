"""File names as people and JSON can read them.

Paths are kept as Python does (``os.fsdecode``: bytes that are not UTF-8 become lone
surrogates, so nothing is lost); :func:`shown` is for display only.
"""

from __future__ import annotations


#: ASCII control characters (a newline in a name would split a table row) as ``\\xNN``: for
#: them byte and code point agree, so ``glimpse remove`` reads the escape back as the same name.
_CONTROLS = {c: f"\\x{c:02x}" for c in [*range(0x20), 0x7F]}


def shown(path: str) -> str:
    """Printable, valid-Unicode text of ``path``: undecodable bytes and ASCII control
    characters as ``\\xNN`` escapes."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace").translate(_CONTROLS)
