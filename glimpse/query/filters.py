"""Metadata filters: which items a search may return, decided before ranking.

A :class:`Filter` is checked against every file of an item: an item passes when one of its
files passes (identical files share one item). Dates are EXIF capture times where the image
has one, else file modification times, in local time; ``after`` is inclusive and ``before`` exclusive, and both take ``YYYY``, ``YYYY-MM``,
``YYYY-MM-DD`` or a full ISO date-time.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Literal

from ..settings import check_glob, whole
from ..storage.metadata import ItemConditions
from .limits import MAX_ID, clip

Orientation = Literal["landscape", "portrait", "square"]
ORIENTATIONS = ("landscape", "portrait", "square")

#: Every filter field with what it does, declared once: the CLI's options and the HTTP API's
#: filter fields take their names and help from here (tests check that each entry point has all).
FIELDS: dict[str, str] = {
    "path_glob": "Only paths matching this glob ('2023/*.jpg' matches at any depth).",
    "path_prefix": "Only files under this folder.",
    "after": "Only images taken on or after this date (YYYY, YYYY-MM, YYYY-MM-DD or ISO date-time): "
             "the EXIF capture date, else the file's modification date.",
    "before": "Only images taken before this date (as after).",
    "min_width": "Minimum width in pixels.",
    "max_width": "Maximum width in pixels.",
    "min_height": "Minimum height in pixels.",
    "max_height": "Maximum height in pixels.",
    "min_bytes": "Minimum file size in bytes (500k, 2MB on the command line).",
    "max_bytes": "Maximum file size in bytes (as min_bytes).",
    "orientation": "landscape, portrait or square.",
    "has_text": "Only images with (true) or without (false) words read in them (glimpse enrich --ocr).",
}

_SIZE = re.compile(r"\s*(\d+(?:\.\d*)?)\s*((?:[kmgt]i?)?b?)\s*", re.IGNORECASE)


@dataclass(frozen=True)
class Filter:
    path_glob: str | None = None  # matched against the absolute path; see glob_pattern()
    path_prefix: str | None = None  # a folder (or file); ~ and relative paths are resolved
    after: dt.datetime | dt.date | str | None = None
    before: dt.datetime | dt.date | str | None = None
    min_width: int | None = None
    max_width: int | None = None
    min_height: int | None = None
    max_height: int | None = None
    min_bytes: int | None = None
    max_bytes: int | None = None
    orientation: Orientation | None = None
    has_text: bool | None = None  # True: only images where OCR read words (glimpse enrich --ocr); False: none

    def __post_init__(self) -> None:
        for name in ("after", "before"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, parse_date(value, name))
        for name in ("min_width", "max_width", "min_height", "max_height", "min_bytes", "max_bytes"):
            value = getattr(self, name)
            if value is not None:
                if isinstance(value, str):
                    value = parse_bytes(value) if name.endswith("bytes") else _int(value, name)
                number = whole(value)
                if number is None or not 0 <= number <= MAX_ID:
                    raise ValueError(f"{name} must be a whole number from 0 to {MAX_ID}, got {clip(repr(value))}")
                object.__setattr__(self, name, number)
        if self.has_text is not None and not isinstance(self.has_text, bool):
            raise ValueError(f"has_text must be true or false, got {self.has_text!r}")
        if self.orientation is not None and self.orientation not in ORIENTATIONS:
            raise ValueError(f"orientation must be one of {', '.join(ORIENTATIONS)}, got {self.orientation!r}")
        if self.after is not None and self.before is not None and _ns(self.after) >= _ns(self.before):
            raise ValueError(f"'after' ({self.after:%Y-%m-%d %H:%M}) must be earlier than 'before' ({self.before:%Y-%m-%d %H:%M})")
        for what in ("width", "height", "bytes"):
            low, high = getattr(self, f"min_{what}"), getattr(self, f"max_{what}")
            if low is not None and high is not None and low > high:
                raise ValueError(f"min_{what} ({low}) is above max_{what} ({high})")
        for name in ("path_glob", "path_prefix"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value.strip() or "\0" in value):
                raise ValueError(f"{name} must be a non-empty string without NUL bytes")
            if value is not None and not _storable(value):  # a name's undecodable byte (\udc80-\udcff) is fine
                raise ValueError(f"{name} holds a lone surrogate, which names no file: '{clip(value)}' (give the path "
                                 "as text, or as os.fsdecode gives a name that is not UTF-8)")
        if self.path_glob is not None:
            check_glob("path_glob", self.path_glob)

    @classmethod
    def from_dict(cls, data: dict) -> Filter:
        """From JSON-like data (the HTTP API); unknown keys are an error, not silently ignored."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown filter field(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return cls(**data)

    def to_dict(self) -> dict:
        out = {k: v for k, v in asdict(self).items() if v is not None}
        for name in ("after", "before"):
            if name in out:
                out[name] = out[name].isoformat()
        return out

    def is_empty(self) -> bool:
        return all(getattr(self, f.name) is None for f in fields(self))

    def glob_pattern(self) -> str | None:
        """SQLite GLOB pattern for the absolute path: a pattern without a leading ``/`` or ``*``
        matches at any depth (``2023/*.jpg`` finds ``/home/me/Photos/2023/a.jpg``)."""
        if self.path_glob is None:
            return None
        glob = os.path.expanduser(self.path_glob)
        return glob if glob.startswith(("/", "*")) else "*/" + glob

    def prefix_path(self) -> str | None:
        if self.path_prefix is None:
            return None
        # os.path's expanduser, as for globs: '~nobody-here/x' stays as written (Path's raises).
        return str(Path(os.path.expanduser(self.path_prefix)).absolute())

    def conditions(self) -> ItemConditions:
        """The same filter as plain values for the metadata store's query."""
        return ItemConditions(
            path_glob=self.glob_pattern(), path_prefix=self.prefix_path(),
            mtime_from_ns=None if self.after is None else _ns(self.after),
            mtime_to_ns=None if self.before is None else _ns(self.before),
            min_width=self.min_width, max_width=self.max_width,
            min_height=self.min_height, max_height=self.max_height,
            min_bytes=self.min_bytes, max_bytes=self.max_bytes, orientation=self.orientation,
        )

    def key_conditions(self) -> ItemConditions:
        """The filter for a collection of precomputed vectors, whose paths are the user's keys:
        ``path_glob`` and ``path_prefix`` match the keys as given (nothing is made absolute).
        Its items have no dates, sizes or pixels, so a filter on those is refused, not left
        to match nothing."""
        unknown = sorted(set(self.to_dict()) - {"path_glob", "path_prefix"})
        if unknown:
            raise ValueError(f"this collection holds precomputed vectors, whose items have no dates, sizes or pixel "
                             f"dimensions: filter by key with path_glob or path_prefix, not {', '.join(unknown)}")
        return ItemConditions(path_glob=self.path_glob, path_prefix=self.path_prefix)


#: Dates whose nanoseconds since 1970 fit in 64 bits, whatever the time zone.
FIRST_YEAR, LAST_YEAR = 1678, 2261


def parse_date(value: dt.datetime | dt.date | str, name: str = "date") -> dt.datetime:
    """A date or date-time (naive = local time); strings: YYYY, YYYY-MM, YYYY-MM-DD or ISO.

    Times are compared as nanoseconds since the epoch in 64 bits, so dates must fall
    between 1678 and 2261 (:data:`FIRST_YEAR`, :data:`LAST_YEAR`)."""
    if isinstance(value, dt.datetime):
        when = value
    elif isinstance(value, dt.date):
        when = dt.datetime(value.year, value.month, value.day)
    elif not isinstance(value, str):
        raise ValueError(f"{name} must be a date, got {clip(repr(value))}")
    else:
        when = _parse_date_text(value, name)
    if not FIRST_YEAR <= when.year <= LAST_YEAR:
        raise ValueError(f"{name}: {when:%Y-%m-%d} is out of range: give a date from {FIRST_YEAR} to {LAST_YEAR}")
    return when


def _parse_date_text(value: str, name: str) -> dt.datetime:
    text = value.strip()
    try:
        if re.fullmatch(r"\d{4}", text):
            return dt.datetime(int(text), 1, 1)
        if re.fullmatch(r"\d{4}-\d{2}", text):
            return dt.datetime(int(text[:4]), int(text[5:]), 1)
        return dt.datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{name}: '{clip(value)}' is not a date (use YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDTHH:MM)") from None


def _ns(when: dt.datetime) -> int:
    """Nanoseconds since the epoch (naive = local time)."""
    return int(when.timestamp() * 1e9)


def parse_bytes(value: str | int) -> int:
    """``"2MB"``, ``"500k"``, ``"1.5 GiB"`` or a plain number of bytes -> bytes."""
    if isinstance(value, int):
        return value
    m = _SIZE.fullmatch(value)
    if m is None:
        raise ValueError(f"'{clip(value)}' is not a size (e.g. 500k, 2MB, 1.5GiB)")
    number, unit = float(m.group(1)), m.group(2).lower()
    power = "bkmgt".index(unit[0]) if unit and unit[0] != "i" else 0
    return int(number * (1024 if "i" in unit else 1000) ** power)


def _int(value: str, name: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{name} must be a whole number, got '{clip(value)}'") from None


def _storable(path: str) -> bool:
    """Whether ``path`` has bytes on disk (``os.fsencode``): text, or a name's undecodable bytes."""
    try:
        path.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return False
    return True
