"""scan(): recursion, order, filters, hidden files, symlinks (loop-safe), errors."""

from __future__ import annotations

import importlib
import os
from pathlib import Path

import pytest

from glimpse.ingest import FileEntry, glob_match, scan, stat_entry
scan_mod = importlib.import_module("glimpse.ingest.scan")  # the package re-exports a function named scan


def touch(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def rels(entries, root: Path) -> list[str]:
    return [e.path.relative_to(root).as_posix() for e in entries]


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "photos"
    for rel in [
        "b.jpg",
        "a.PNG",
        "notes.txt",
        "z/zz.webp",
        "sub/c.gif",
        "sub/deeper/d.tiff",
        "sub/deeper/e.heic",
        "raw/x.jpg",
        "2023/trip/t.jpeg",
        ".hidden.jpg",
        ".cache/thumb.jpg",
        "sub/._resource.jpg",
    ]:
        touch(root / rel)
    return root


def test_recursive_deterministic_order_files_before_subdirs(tree: Path):
    got = rels(scan([tree]), tree)
    assert got == [
        "a.PNG",  # extension match is case-insensitive
        "b.jpg",
        "2023/trip/t.jpeg",
        "raw/x.jpg",
        "sub/c.gif",
        "sub/deeper/d.tiff",
        "sub/deeper/e.heic",
        "z/zz.webp",
    ]
    assert got == rels(scan([tree]), tree)  # stable across runs


def test_entries_are_absolute_with_stat(tree: Path, monkeypatch):
    monkeypatch.chdir(tree.parent)
    entries = list(scan(["photos"]))
    e = entries[0]
    assert isinstance(e, FileEntry) and e.path.is_absolute()
    st = e.path.stat()
    assert (e.size, e.mtime_ns) == (st.st_size, st.st_mtime_ns)
    assert stat_entry(e.path) == e
    assert stat_entry("photos/a.PNG") == e  # relative paths become absolute


def test_hidden_skipped_by_default_and_optional(tree: Path):
    assert not any("/." in "/" + r for r in rels(scan([tree]), tree))
    with_hidden = rels(scan([tree], include_hidden=True), tree)
    assert {".hidden.jpg", ".cache/thumb.jpg", "sub/._resource.jpg"} <= set(with_hidden)
    # A hidden root given explicitly is still scanned.
    assert rels(scan([tree / ".cache"]), tree) == [".cache/thumb.jpg"]


def test_extensions_none_accepts_any(tree: Path):
    assert "notes.txt" in rels(scan([tree], extensions=None), tree)
    assert rels(scan([tree], extensions=[".TXT"]), tree) == ["notes.txt"]


@pytest.mark.parametrize(
    "include, exclude, expected",
    [
        (["*.jpg"], [], ["b.jpg", "raw/x.jpg"]),  # no "/": matches names at any depth
        (["**/*.gif"], [], ["sub/c.gif"]),
        (["sub/*"], [], ["sub/c.gif"]),  # "*" does not cross "/"
        (["sub/**"], [], ["sub/c.gif", "sub/deeper/d.tiff", "sub/deeper/e.heic"]),
        (["2023/**/*.jpeg"], [], ["2023/trip/t.jpeg"]),
        ([], ["raw"], ["a.PNG", "b.jpg", "2023/trip/t.jpeg", "sub/c.gif", "sub/deeper/d.tiff", "sub/deeper/e.heic", "z/zz.webp"]),
        ([], ["**/deeper/**", "*.png"], ["b.jpg", "2023/trip/t.jpeg", "raw/x.jpg", "sub/c.gif", "z/zz.webp"]),
        (["*.jpg", "*.jpeg"], ["raw/**"], ["b.jpg", "2023/trip/t.jpeg"]),
        (["*.txt"], [], []),  # include narrows; the extension filter still applies
    ],
)
def test_include_exclude_globs(tree: Path, include, exclude, expected):
    assert rels(scan([tree], include=include, exclude=exclude), tree) == expected


def test_glob_semantics():
    assert glob_match("**/*.png", "a.png", "a.png")  # ** matches zero directories
    assert glob_match("**/*.png", "x/y/a.png", "a.png")
    assert glob_match("*.PNG", "x/a.png", "a.png")  # case-insensitive, by name
    assert not glob_match("a/*.jpg", "a/b/c.jpg", "c.jpg")
    assert glob_match("a/**", "a/b/c.jpg", "c.jpg")
    assert not glob_match("a/**", "ab/c.jpg", "c.jpg")
    assert glob_match("img_[0-9]?.jpg", "x/img_12.jpg", "img_12.jpg")
    assert not glob_match("[!i]*.jpg", "img.jpg", "img.jpg")


@pytest.fixture
def scanned(monkeypatch) -> list[str]:
    """The names of the folders scan() lists, in order."""
    read: list[str] = []
    real = os.scandir

    def spy(path):
        read.append(Path(path).name)
        return real(path)

    monkeypatch.setattr(scan_mod.os, "scandir", spy)
    return read


def test_exclude_prunes_directories_without_reading_them(tree: Path, scanned: list[str]):
    got = rels(scan([tree], exclude=["sub/**"]), tree)
    assert not any(r.startswith("sub/") for r in got)
    assert "sub" not in scanned and "deeper" not in scanned


def test_symlink_loop_is_not_followed_forever(tmp_path: Path):
    root = tmp_path / "root"
    touch(root / "a.jpg")
    touch(root / "sub" / "b.jpg")
    (root / "sub" / "up").symlink_to(root, target_is_directory=True)  # loop to a parent
    (root / "sub" / "self").symlink_to(root / "sub", target_is_directory=True)
    followed = rels(scan([root], follow_symlinks=True), root)
    assert followed == ["a.jpg", "sub/b.jpg"]
    assert rels(scan([root]), root) == ["a.jpg", "sub/b.jpg"]


def test_symlinked_dirs_followed_only_on_request_and_once(tmp_path: Path):
    outside = tmp_path / "outside"
    touch(outside / "o.jpg")
    root = tmp_path / "root"
    touch(root / "a.jpg")
    (root / "link1").symlink_to(outside, target_is_directory=True)
    (root / "link2").symlink_to(outside, target_is_directory=True)
    (root / "file_link.jpg").symlink_to(outside / "o.jpg")
    (root / "broken.jpg").symlink_to(tmp_path / "missing.jpg")
    errors = []
    plain = rels(scan([root], on_error=lambda p, e: errors.append(p.name)), root)
    assert plain == ["a.jpg", "file_link.jpg"]  # file links always; dir links not followed
    assert errors == ["broken.jpg"]
    followed = rels(scan([root], follow_symlinks=True, on_error=lambda p, e: None), root)
    assert followed == ["a.jpg", "file_link.jpg", "link1/o.jpg"]  # the same folder only once


def test_unreadable_directory_is_skipped(tree: Path, monkeypatch):
    real = os.scandir
    bad = str(tree / "sub")

    def scandir(path):
        if str(path) == bad:
            raise PermissionError(13, "Permission denied", bad)
        return real(path)

    monkeypatch.setattr(scan_mod.os, "scandir", scandir)
    errors = []
    got = rels(scan([tree], on_error=lambda p, reason: errors.append((p, reason))), tree)
    assert got == ["a.PNG", "b.jpg", "2023/trip/t.jpeg", "raw/x.jpg", "z/zz.webp"]
    assert errors == [(tree / "sub", "cannot read folder: permission denied")]


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root ignores permissions")
def test_unreadable_directory_real_permissions(tree: Path):
    (tree / "sub").chmod(0)
    try:
        got = rels(scan([tree], on_error=lambda p, e: None), tree)
    finally:
        (tree / "sub").chmod(0o755)
    assert "sub/c.gif" not in got and "b.jpg" in got


def test_roots_files_missing_and_overlaps(tree: Path, caplog):
    missing = tree / "nope"
    got = list(scan([tree / "notes.txt", missing, tree / "sub", tree, tree / "sub" / "c.gif"]))
    paths = [e.path for e in got]
    # A file root is yielded as given (even without an image extension), once, at its place.
    assert paths[0] == tree / "notes.txt"
    assert paths.count(tree / "sub" / "c.gif") == 1 and paths[-1] == tree / "sub" / "c.gif"
    assert len(paths) == len(set(paths))  # overlapping roots yield no duplicates
    assert "nope" in caplog.text  # missing root reported (logging warning), not raised


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_fifo_is_never_yielded_but_reported(tmp_path: Path):
    touch(tmp_path / "a.jpg")
    os.mkfifo(tmp_path / "pipe.jpg")
    os.mkfifo(tmp_path / "pipe.txt")  # not an image name: not a candidate, not reported
    errors = []
    assert rels(scan([tmp_path], on_error=lambda p, r: errors.append((p.name, r))), tmp_path) == ["a.jpg"]
    assert errors == [("pipe.jpg", "not a regular file (a FIFO: never opened)")]
    errors.clear()
    assert list(scan([tmp_path / "pipe.jpg"], on_error=lambda p, r: errors.append(r))) == []  # named as a root
    assert errors == ["not a regular file (a FIFO: never opened)"]


def test_link_loops_and_dangling_links_are_reported_with_a_reason(tmp_path: Path):
    touch(tmp_path / "a.jpg")
    (tmp_path / "self.jpg").symlink_to(tmp_path / "self.jpg")
    (tmp_path / "b.png").symlink_to(tmp_path / "c.png")
    (tmp_path / "c.png").symlink_to(tmp_path / "b.png")
    (tmp_path / "dangling.jpg").symlink_to(tmp_path / "missing.jpg")
    (tmp_path / "dangling").symlink_to(tmp_path / "missing")  # no image name: not a candidate
    errors = {}
    assert rels(scan([tmp_path], on_error=lambda p, r: errors.update({p.name: r})), tmp_path) == ["a.jpg"]
    loop = "symbolic link loop (the link leads back to itself)"
    assert errors == {"self.jpg": loop, "b.png": loop, "c.png": loop,
                      "dangling.jpg": "dangling symbolic link (its target does not exist)"}


def test_skip_paths_are_left_out_unread_unless_named_as_roots(tree: Path, scanned: list[str]):
    got = rels(scan([tree], skip=[tree / "sub", tree / "b.jpg"]), tree)
    assert got == ["a.PNG", "2023/trip/t.jpeg", "raw/x.jpg", "z/zz.webp"]
    assert "sub" not in scanned and "deeper" not in scanned
    assert rels(scan([tree / "sub"], skip=[tree / "sub"]), tree) == ["sub/c.gif", "sub/deeper/d.tiff", "sub/deeper/e.heic"]


def test_deep_tree_no_recursion_limit(tmp_path: Path):
    d = tmp_path
    for i in range(60):
        d = d / "d"
    touch(d / "deep.jpg")
    assert [e.path.name for e in scan([tmp_path])] == ["deep.jpg"]
