"""Collection files met damaged or replaced (qa-files): each is refused in one sentence naming it, or
repaired from the files that hold the truth; nothing outside the collection is ever written."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import glimpse


def _precomputed(path: Path, n: int = 40, dim: int = 16, seed: int = 0):
    col = glimpse.open(path, encoder="precomputed", dim=dim)
    vectors = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    col.add_vectors(vectors, [f"k{i}" for i in range(n)])
    return col, vectors


@pytest.mark.parametrize("name", ["write.lock", "vectors.f16"])
def test_a_collection_file_replaced_by_a_link_is_never_written_through(tmp_path: Path, name: str):
    col, vectors = _precomputed(tmp_path / "col")
    col.close()
    victim = tmp_path / "victim.bin"
    victim.write_bytes(b"keep me" * 10_000)  # larger than the vector file: its size check passes
    link = tmp_path / "col" / name
    if name == "vectors.f16":
        victim.write_bytes(link.read_bytes() + b"keep me" * 10_000)
    before = victim.read_bytes()
    link.unlink()
    link.symlink_to(victim)
    with glimpse.open(tmp_path / "col", create=False) as col:
        with pytest.raises(OSError, match="symbolic link"):
            col.add_vectors(vectors[:2] * -1, ["new0", "new1"])
    assert victim.read_bytes() == before  # the lock truncated it to a pid; vectors were written into it
