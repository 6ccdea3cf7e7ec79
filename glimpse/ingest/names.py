"""File names as people and JSON can read them.

Paths are kept as Python does (``os.fsdecode``: bytes that are not UTF-8 become lone
surrogates, so nothing is lost); :func:`shown` is for display only.
"""

from __future__ import annotations


def shown(path: str) -> str:
    """Printable, valid-Unicode text of ``path``: undecodable bytes as ``\\xNN`` escapes."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
