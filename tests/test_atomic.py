"""write_atomic: the old file or the new one, never a torn one, and no temporary file left behind."""

from __future__ import annotations

import os

import pytest

from glimpse.atomic import write_atomic


def test_writes_bytes_or_through_a_writer_and_replaces_the_old_file(tmp_path):
    target = tmp_path / "sub" / "file.bin"
    assert write_atomic(target, b"old") == target and target.read_bytes() == b"old"
    write_atomic(target, lambda f: (f.write(b"new "), f.write(b"bytes")))
    assert target.read_bytes() == b"new bytes"
    assert sorted(p.name for p in target.parent.iterdir()) == ["file.bin"]


@pytest.mark.parametrize("fail", ["rename", "writer"])
def test_a_crash_before_the_rename_leaves_the_old_file_and_no_temporary_one(tmp_path, monkeypatch, fail):
    target = tmp_path / "file.bin"
    target.write_bytes(b"old")

    def crash(*args):
        raise OSError("killed")

    if fail == "rename":
        monkeypatch.setattr(os, "replace", crash)
        data = b"new"
    else:
        def data(f):
            f.write(b"half")
            crash()
    with pytest.raises(OSError, match="killed"):
        write_atomic(target, data)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["file.bin"]
