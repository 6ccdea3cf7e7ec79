"""The live ids as a collection loads them: every item and its vector row in one snapshot (read in
parts), and the ids the loaded index holds, kept as one sorted array."""

from __future__ import annotations

import numpy as np
import pytest

import glimpse
from glimpse.collection.live import HeldIds


def stored_pairs(col) -> np.ndarray:
    rows = col._meta._query("SELECT id, COALESCE(row, id) FROM items ORDER BY id")
    return np.array(rows, np.int64).reshape(-1, 2)


@pytest.mark.parametrize("part", [1, 7, 1 << 20])
def test_a_snapshot_holds_every_item_and_its_row_whatever_the_part_size(tmp_path, monkeypatch, part):
    monkeypatch.setattr("glimpse.storage.metadata.SNAPSHOT_ITEMS", part)
    col = glimpse.open(tmp_path / "col", encoder="precomputed", dim=8)
    meta, table = col._meta.snapshot()
    assert table.shape == (0, 2) and table.dtype == np.int64 and "generation" in meta

    vectors = np.random.default_rng(0).standard_normal((40, 8)).astype(np.float32)
    col.add_vectors(vectors, [f"k{i}" for i in range(40)])
    col.remove([f"k{i}" for i in range(0, 40, 3)])  # gaps in the ids
    col.compact()  # and rows that are no longer the ids
    _, table = col._meta.snapshot()
    expected = stored_pairs(col)
    assert len(expected) == 26 and (expected[:, 0] != expected[:, 1]).any()
    np.testing.assert_array_equal(table, expected)
    assert col.search(vector=vectors[1], k=1)[0].path == "k1"  # the rows found through it are the right ones


def test_held_ids_add_remove_and_answer_membership():
    held = HeldIds([5, 3, 3, 9])
    np.testing.assert_array_equal(held.ids(), [3, 5, 9])
    held.update([10, 11])  # above every id held: appended
    held.update([4, 9])  # among them: merged, each once
    np.testing.assert_array_equal(held.ids(), [3, 4, 5, 9, 10, 11])
    held.difference_update([4, 7, 11])  # 7 was never held
    np.testing.assert_array_equal(held.ids(), [3, 5, 9, 10])
    assert 5 in held and 4 not in held and 100 not in held and -1 not in held
    np.testing.assert_array_equal(held.holds(np.array([10, 2, 3, 12])), [True, False, True, False])
    assert not HeldIds().holds(np.array([1])).any() and 0 not in HeldIds()


def test_held_ids_take_ids_spread_over_63_bits():
    big = np.array([(1 << 62) + 17, 12, (1 << 61) + 5], np.int64)  # Milvus-like ids: no bitmap could hold them
    held = HeldIds(big)
    np.testing.assert_array_equal(held.ids(), np.sort(big))
    held.difference_update([12])
    assert (1 << 62) + 17 in held and 12 not in held and len(held.ids()) == 2
