"""A collection used after close(): one sentence of ours, not sqlite3's ProgrammingError."""

from __future__ import annotations

import numpy as np
import pytest

import glimpse

CLOSED = "^the collection is closed; open it again$"


def test_a_closed_collection_says_so(tmp_path, image_dir):
    col = glimpse.open(tmp_path / "col", encoder="hash")
    col.add([image_dir])
    query = next(image_dir.glob("*.png"))
    assert col.search(image=query, k=1)  # the index is loaded: closing must still stop it
    col.close()
    for use in (lambda: len(col), lambda: col.search(image=query, k=1), lambda: col.stats(),
                lambda: col.add([image_dir]), lambda: col.item(0)):
        with pytest.raises(ValueError, match=CLOSED):
            use()
    col.close()  # twice is fine


def test_closed_precomputed_vectors_say_so(tmp_path):
    with glimpse.open(tmp_path / "vec", encoder="precomputed", dim=4) as col:
        col.add_vectors(np.eye(4, dtype=np.float32), ["a", "b", "c", "d"])
    with pytest.raises(ValueError, match=CLOSED):
        col.add_vectors(np.eye(4, dtype=np.float32), ["e", "f", "g", "h"])
    with pytest.raises(ValueError, match=CLOSED):
        col.search(like=0, k=1)
