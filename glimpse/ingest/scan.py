"""Find image files under folders.

Rules of :func:`scan`
---------------------
* **Order** is deterministic: roots in the order given; inside a directory, its files
  first, then its subdirectories, each sorted by name (code-point order, as ``sorted``).
* **What is yielded**: regular files whose extension (case-insensitive) is in
  ``extensions`` (default :data:`IMAGE_EXTENSIONS`; ``None`` accepts any extension),
  that match ``include`` (if given) and do not match ``exclude``, and do not lie under a
  path in ``skip`` (absolute paths, e.g. what a user removed from a collection; such
  folders are not read). FIFOs, sockets and devices are never yielded nor opened (reading
  them could block): one that passes the filters is reported. A root that is itself a
  file is yielded as it is (no filters: the user named it), if it is a regular file. A
  root is scanned even when it lies under a ``skip`` path: naming it wins.
* **Hidden** files and directories (name starting with ``.``) are skipped unless
  ``include_hidden=True``: they are thumbnails caches (``.thumbnails``), VCS data, macOS
  ``._name.jpg`` resource forks (not images) and trash folders far more often than
  photos. A root given explicitly is scanned even when its own name is hidden.
* **Symlinks**: links to files are always yielded (under the link's path); links to
  directories are followed only with ``follow_symlinks=True``. Every directory is
  entered at most once per scan, keyed by ``(st_dev, st_ino)``, so a link to a parent
  directory cannot loop, and two links to the same folder (or overlapping roots) do not
  yield its files twice. A file named in ``roots`` is yielded once, at its place in
  ``roots``, even if a scanned folder also contains it.
* **Errors**: unreadable or vanished directories and files, symbolic-link loops, dangling
  links and special files are skipped; each skip is passed to ``on_error(path, reason)``
  with a one-line human reason (default: a ``logging`` warning). A root that does not
  exist is reported the same way and skipped.

Glob patterns (``include`` / ``exclude``)
-----------------------------------------
A pattern is matched, case-insensitively, against the path **relative to its root**
(``/``-separated, e.g. ``2023/trip/img.jpg``) **and** against the bare file name; either
match counts. In a pattern:

* ``*`` matches any run of characters except ``/``; ``?`` one character except ``/``;
  ``[abc]`` / ``[!abc]`` a character class;
* ``**`` as a whole path segment matches zero or more directories: ``**/raw/**`` matches
  ``raw/a.jpg`` and ``x/y/raw/a.jpg``; ``2023/**`` everything under ``2023``;
  ``**/*.png`` any PNG at any depth;
* a pattern without ``/`` therefore matches by name at any depth (``*.png``, ``IMG_*``).

``exclude`` patterns are also tested against each **directory** (its relative path and its
name); a matching directory is pruned without being read, e.g. ``exclude=["@eaDir"]``;
``thumbs/**`` and ``**/cache/**`` prune the ``thumbs`` / any ``cache`` directory too.
``include`` patterns never prune directories (``2023/*.jpg`` must look inside ``2023``).
"""

from __future__ import annotations

import errno
import logging
import os
import re
import stat as statmod
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (
    ".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff",
    ".heic", ".heif", ".avif",
)  # fmt: skip


@dataclass(frozen=True)
class FileEntry:
    path: Path  # absolute, symlinks not resolved (the path the user sees)
    size: int
    mtime_ns: int


def stat_entry(path: str | os.PathLike) -> FileEntry:
    """``FileEntry`` of one file (follows symlinks for size and mtime). Raises ``OSError``."""
    p = absolute(path)
    st = p.stat()
    return FileEntry(p, st.st_size, st.st_mtime_ns)


def absolute(path: str | os.PathLike) -> Path:
    """``~`` expanded, absolute, ``..`` collapsed (symlinks kept): one spelling per file."""
    raw = os.fspath(path)
    if not raw:  # else the current folder: `glimpse remove "$UNSET"` would forget everything under it
        raise ValueError("an empty path names no file or folder: give one (. for the current folder)")
    return Path(os.path.abspath(os.path.expanduser(raw)))


def _warn(path: Path, reason: str) -> None:
    log.warning("skipping %s: %s", path, reason)


def _os_reason(exc: OSError, link: bool = False) -> str:
    """One line saying why a path could not be scanned."""
    if exc.errno == errno.ELOOP:
        return "symbolic link loop (the link leads back to itself)"
    if exc.errno == errno.ENOENT:
        return "dangling symbolic link (its target does not exist)" if link else "no such file or folder"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    return f"cannot read: {exc.strerror or exc}"


def _special_reason(mode: int) -> str:
    """Why a path that is neither a file nor a folder is not read."""
    kind = ("a FIFO" if statmod.S_ISFIFO(mode) else "a socket" if statmod.S_ISSOCK(mode)
            else "a device" if statmod.S_ISCHR(mode) or statmod.S_ISBLK(mode) else "a special file")
    return f"not a regular file ({kind}: never opened)"


# --------------------------------------------------------------------------- globs


@lru_cache(maxsize=1024)
def _compile(pattern: str) -> re.Pattern[str]:
    """Glob -> regex with ``**`` segment semantics (see module docstring)."""
    parts = pattern.replace("\\", "/").strip("/").split("/")
    out: list[str] = []
    n = len(parts)
    for i, part in enumerate(parts):
        last = i == n - 1
        if part == "**":
            # zero or more whole segments; as the last segment: anything below
            out.append(".*" if last else "(?:[^/]*/)*")
            continue
        out.append(_segment(part))
        if not last:
            out.append("/")
    return re.compile("".join(out), re.IGNORECASE | re.DOTALL)


def _segment(part: str) -> str:
    res: list[str] = []
    i, n = 0, len(part)
    while i < n:
        c = part[i]
        i += 1
        if c == "*":
            while i < n and part[i] == "*":  # "a**b" inside a segment is just "*"
                i += 1
            res.append("[^/]*")
        elif c == "?":
            res.append("[^/]")
        elif c == "[":
            j = i
            if j < n and part[j] in "!^":
                j += 1
            if j < n and part[j] == "]":
                j += 1
            while j < n and part[j] != "]":
                j += 1
            if j >= n:
                res.append("\\[")
            else:
                body = re.sub(r"([\\[&~|])", r"\\\1", part[i:j])  # literal members, never nested sets
                i = j + 1
                if body[0] in "!^":
                    body = "^" + body[1:]
                res.append(f"(?![/])[{body}]")
        else:
            res.append(re.escape(c))
    return "".join(res)


def glob_match(pattern: str, rel: str, name: str) -> bool:
    """Whether ``pattern`` matches the relative path ``rel`` or the file name ``name``."""
    rx = _compile(pattern)
    return rx.fullmatch(rel) is not None or rx.fullmatch(name) is not None


def _any(patterns: Sequence[str], rel: str, name: str) -> bool:
    return any(glob_match(p, rel, name) for p in patterns)


def _dir_excluded(patterns: Sequence[str], rel: str, name: str) -> bool:
    # "thumbs/**" should prune the directory "thumbs" itself: test rel + "/" too.
    return any(
        glob_match(p, rel, name) or _compile(p).fullmatch(rel + "/") is not None for p in patterns
    )


# --------------------------------------------------------------------------- scan


def scan(
    roots: Iterable[str | os.PathLike],
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    follow_symlinks: bool = False,
    *,
    include_hidden: bool = False,
    extensions: Sequence[str] | None = IMAGE_EXTENSIONS,
    skip: Iterable[str | os.PathLike] = (),
    on_error: Callable[[Path, str], None] | None = None,
) -> Iterator[FileEntry]:
    """Yield image files under ``roots``; see the module docstring for the exact rules."""
    if isinstance(include, str):
        include = (include,)
    if isinstance(exclude, str):
        exclude = (exclude,)
    exts = None if extensions is None else tuple(e.lower() for e in extensions)
    report = on_error or _warn
    skipped = {str(absolute(p)) for p in skip}
    visited_dirs: set[tuple[int, int]] = set()

    def wanted_file(rel: str, name: str) -> bool:
        if exts is not None and not name.lower().endswith(exts):
            return False
        if include and not _any(include, rel, name):
            return False
        return not (exclude and _any(exclude, rel, name))

    def walk(root: Path) -> Iterator[FileEntry]:
        # Iterative depth-first walk (no recursion limit on deep trees): a directory's
        # files, then its subdirectories in name order.
        stack: list[tuple[str, str]] = [(str(root), "")]
        while stack:
            directory, rel_dir = stack.pop()
            try:
                with os.scandir(directory) as it:
                    items = sorted(it, key=lambda e: e.name)
            except OSError as exc:
                report(Path(directory), f"cannot read folder: {_os_reason(exc)}")
                continue
            subdirs: list[tuple[str, str]] = []
            for item in items:
                name = item.name
                if not include_hidden and name.startswith("."):
                    continue
                rel = f"{rel_dir}/{name}" if rel_dir else name
                if skipped and item.path in skipped:
                    continue
                try:
                    is_dir = item.is_dir(follow_symlinks=True)
                    if is_dir and item.is_symlink() and not follow_symlinks:
                        continue
                    if is_dir:
                        if exclude and _dir_excluded(exclude, rel, name):
                            continue
                        st = item.stat(follow_symlinks=True)
                        key = (st.st_dev, st.st_ino)
                        if key in visited_dirs:
                            continue  # a loop, or a folder already scanned via another path
                        visited_dirs.add(key)
                        subdirs.append((item.path, rel))
                        continue
                    if not wanted_file(rel, name):
                        continue
                    st = item.stat(follow_symlinks=True)
                except OSError as exc:  # broken link, link loop, vanished, no permission
                    if exts is None or name.lower().endswith(exts):
                        report(Path(item.path), _os_reason(exc, link=item.is_symlink()))
                    continue
                if not statmod.S_ISREG(st.st_mode):
                    report(Path(item.path), _special_reason(st.st_mode))
                    continue
                path = Path(item.path)
                if path in explicit:
                    continue  # yielded at its own place in ``roots``
                yield FileEntry(path, st.st_size, st.st_mtime_ns)
            stack.extend(reversed(subdirs))

    # Files named directly are yielded at their place in ``roots`` and not again by a walk.
    resolved: list[tuple[Path, os.stat_result]] = []
    for raw in roots:
        root = absolute(raw)
        try:
            resolved.append((root, root.stat()))
        except OSError as exc:
            report(root, _os_reason(exc, link=root.is_symlink()))
    explicit = {root for root, st in resolved if statmod.S_ISREG(st.st_mode)}
    done: set[Path] = set()
    for root, st in resolved:
        if statmod.S_ISDIR(st.st_mode):
            key = (st.st_dev, st.st_ino)
            if key in visited_dirs:
                continue
            visited_dirs.add(key)
            yield from walk(root)
        elif statmod.S_ISREG(st.st_mode) and root not in done:
            done.add(root)
            yield FileEntry(root, st.st_size, st.st_mtime_ns)
        elif not statmod.S_ISREG(st.st_mode):
            report(root, _special_reason(st.st_mode))
