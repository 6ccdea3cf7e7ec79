"""The plain records the metadata store takes and returns: items, files, errors, filter conditions."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FileRecord:
    path: str
    item_id: int
    size: int
    mtime_ns: int
    hash: str


@dataclass(frozen=True)
class ErrorRecord:
    path: str
    reason: str
    size: int
    mtime_ns: int
    at: float


@dataclass(frozen=True)
class ItemInfo:
    """One item (a distinct content) and the files that show it."""

    id: int
    paths: list[str]  # sorted; the first is the one search results show
    width: int
    height: int
    bytes: int  # size of the first file
    mtime: float  # modification time of the first file, seconds since the epoch
    taken: float | None = None  # EXIF capture time, seconds since the epoch, if the image has one
    words: list | None = None  # the words read in it (glimpse.storage.words.Word); None: not read yet


@dataclass(frozen=True)
class ItemConditions:
    """What :meth:`Metadata.matching_items` checks; an item matches when one of its files does."""

    path_glob: str | None = None  # SQLite GLOB on the absolute path
    path_prefix: str | None = None  # a folder or a file
    mtime_from_ns: int | None = None  # inclusive; the capture time when known, else the file's mtime
    mtime_to_ns: int | None = None  # exclusive
    min_width: int | None = None
    max_width: int | None = None
    min_height: int | None = None
    max_height: int | None = None
    min_bytes: int | None = None
    max_bytes: int | None = None
    orientation: str | None = None  # landscape | portrait | square

    def bounds(self) -> list[tuple[str, str, int]]:
        """The numeric conditions set, as (field, operator, value); fields: ``date_ns`` (capture
        time, else modification time), ``width``, ``height``, ``bytes``. Each store maps the
        fields to its own columns."""
        return [(name, op, int(value)) for name, op, value in (
            ("date_ns", ">=", self.mtime_from_ns), ("date_ns", "<", self.mtime_to_ns),
            ("width", ">=", self.min_width), ("width", "<=", self.max_width),
            ("height", ">=", self.min_height), ("height", "<=", self.max_height),
            ("bytes", ">=", self.min_bytes), ("bytes", "<=", self.max_bytes),
        ) if value is not None]

    def shape(self) -> str | None:
        """The orientation as the comparison of width with height: ``>``, ``<`` or ``==``."""
        return None if self.orientation is None else {"landscape": ">", "portrait": "<", "square": "=="}[self.orientation]


@dataclass(frozen=True)
class NewItem:
    id: int
    hash: str
    width: int
    height: int
    taken: float | None = None
    row: int | None = None  # row in the vector file; None: the id


@dataclass(frozen=True)
class FileLink:
    path: str
    hash: str  # the item it shows, by content
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class FileError:
    path: str
    reason: str
    size: int
    mtime_ns: int
