"""write_atomic: the old file or the new one, never a torn one, and no temporary file left behind; file_fingerprint."""

from __future__ import annotations

import hashlib
import os

import pytest

from glimpse.atomic import file_fingerprint, write_atomic
from glimpse.eval import tasks


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


def test_one_fingerprint_streams_one_file_or_several_and_keeps_the_keys_made_before(tmp_path):
    """The ONNX graph cache (one checkpoint, 8 bytes) and the eval cache (a dataset's files read
    whole, 16 bytes) were keyed by two functions; their keys must not change under the one left."""
    first, second = tmp_path / "a.bin", tmp_path / "b.bin"
    first.write_bytes(os.urandom(3 << 20))  # over a read block: streamed
    second.write_bytes(b"second")
    assert file_fingerprint(first) == hashlib.blake2b(first.read_bytes(), digest_size=8).hexdigest()
    assert file_fingerprint(str(first)) == file_fingerprint([first])
    both = hashlib.blake2b(first.read_bytes() + second.read_bytes(), digest_size=16).hexdigest()
    assert file_fingerprint([first, second], size=16) == both
    assert not hasattr(tasks, "file_fingerprint")  # eval calls the engine's, not a copy of its own
