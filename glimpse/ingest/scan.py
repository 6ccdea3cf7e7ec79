"""Find image files under folders."""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".heic", ".heif")


@dataclass(frozen=True)
class FileEntry:
    path: Path  # absolute, symlinks not resolved (the path the user sees)
    size: int
    mtime_ns: int


def stat_entry(path: str | os.PathLike) -> FileEntry:
    p = Path(path).expanduser().absolute()
    st = p.stat()
    return FileEntry(p, st.st_size, st.st_mtime_ns)


def scan(
    roots: Iterable[str | os.PathLike],
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    follow_symlinks: bool = False,
) -> Iterator[FileEntry]:
    """Yield image files under ``roots`` (files given directly are yielded as they are).

    ``include``/``exclude`` are glob patterns matched against the path relative to its root
    and against the file name. Without ``include``, files with a known image extension match.
    """
    for root in roots:
        root = Path(root).expanduser().absolute()
        if root.is_file():
            yield stat_entry(root)
            continue
        for dirpath, dirnames, filenames in os.walk(root, followlinks=follow_symlinks):
            dirnames.sort()
            for name in sorted(filenames):
                path = Path(dirpath) / name
                rel = path.relative_to(root).as_posix()
                if not _wanted(rel, name, include, exclude):
                    continue
                try:
                    yield stat_entry(path)
                except OSError:
                    continue


def _wanted(rel: str, name: str, include: Sequence[str], exclude: Sequence[str]) -> bool:
    def matches(patterns: Sequence[str]) -> bool:
        return any(fnmatch.fnmatch(rel, p) or fnmatch.fnmatch(name, p) for p in patterns)

    if include:
        if not matches(include):
            return False
    elif not name.lower().endswith(IMAGE_EXTENSIONS):
        return False
    return not matches(exclude)
