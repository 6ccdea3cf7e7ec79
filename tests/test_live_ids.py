"""The live ids as a collection loads them: every item and its vector row in one snapshot (read in
parts) or, for a process that follows another's commits, from the commits' log of added and removed
items; and the ids the loaded index holds, kept as one sorted array."""

from __future__ import annotations

import numpy as np
import pytest

import glimpse
from glimpse.collection.live import HeldIds, _Pending
from glimpse.storage.metadata import apply_changes


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


@pytest.mark.parametrize("bitmap_from", [1, 1 << 40])
def test_held_ids_by_bitmap_and_by_binary_search_agree(monkeypatch, bitmap_from):
    """Many ids tested against ids held densely go through a bitmap; against sparse ones, or few, a binary search."""
    monkeypatch.setattr("glimpse.collection.live.BITMAP_FROM", bitmap_from)
    rng = np.random.default_rng(5)
    dense = rng.permutation(np.arange(1000, 4000))[:2500]  # a loaded index's ids: list by list, not sorted
    dense = np.concatenate([dense, dense[:40]])  # and some twice
    held = HeldIds(dense)
    np.testing.assert_array_equal(held.ids(), np.unique(dense))
    asked = rng.integers(0, 5000, 3000)
    np.testing.assert_array_equal(held.holds(asked), np.isin(asked, dense))
    sparse = HeldIds(np.array([5, 1 << 40, 7, 3], np.int64))  # spread far wider than 8 per id: no bitmap
    np.testing.assert_array_equal(sparse.ids(), [3, 5, 7, 1 << 40])
    np.testing.assert_array_equal(sparse.holds(np.array([7, 6, 1 << 40])), [True, False, True])


def keys(start: int, stop: int) -> list[str]:
    return [f"k{i}" for i in range(start, stop)]


def test_the_log_holds_what_each_commit_added_and_removed_until_a_compaction_restarts_it(tmp_path):
    col = glimpse.open(tmp_path / "col", encoder="precomputed", dim=8)
    start = col._meta.generation()
    ids = col.add_vectors(np.random.default_rng(0).standard_normal((10, 8)), keys(0, 10), batch_size=4)
    _, changes = col._meta.changes_since(start)
    np.testing.assert_array_equal(changes, stored_pairs(col))  # three commits, in order
    added = col._meta.generation()
    col.remove(keys(2, 4))
    _, changes = col._meta.changes_since(added)
    np.testing.assert_array_equal(changes, [[ids[2], -1], [ids[3], -1]])
    assert col._meta.changes_since(col._meta.generation())[1].shape == (0, 2)
    assert len(col._meta.changes_since(start)[1]) == 12

    col.compact()  # rows move: no log tells that, so every process behind it reads a snapshot
    assert col._meta.changes_since(added)[1] is None
    assert col._meta.changes_since(col._meta.generation())[1].shape == (0, 2)
    assert col._meta._query("SELECT COUNT(*) FROM changes")[0][0] == 0


def test_the_log_keeps_so_many_commits_and_no_commit_it_missed(tmp_path, monkeypatch):
    monkeypatch.setattr("glimpse.storage.metadata.CHANGES_KEPT", 3)
    col = glimpse.open(tmp_path / "col", encoder="precomputed", dim=8)
    vectors = np.random.default_rng(0).standard_normal((5, 8))
    first = col._meta.generation()
    col.add_vectors(vectors, keys(0, 5), batch_size=1)  # five commits
    now = col._meta.generation()
    assert col._meta.changes_since(now - 4)[1] is None
    assert len(col._meta.changes_since(now - 3)[1]) == 3 and first == now - 5
    assert col._meta._query("SELECT COUNT(*) FROM changes")[0][0] == 3

    # A writer that keeps no log (an older glimpse) commits: nothing before it can be followed by the log.
    with col._meta._tx() as db:
        db.execute("UPDATE meta SET value = ? WHERE key = 'generation'", (str(now + 1),))
    assert col._meta.changes_since(now)[1] is None
    col.remove(keys(0, 1))
    assert col._meta.changes_since(now)[1] is None
    assert len(col._meta.changes_since(now + 1)[1]) == 1


def test_a_follower_takes_the_log_and_finds_what_a_fresh_open_finds(tmp_path, monkeypatch):
    rng = np.random.default_rng(1)
    vectors = rng.standard_normal((400, 16)).astype(np.float32)
    writer = glimpse.open(tmp_path / "col", encoder="precomputed", dim=16)
    writer.add_vectors(vectors[:300], keys(0, 300), batch_size=100)
    follower = glimpse.open(tmp_path / "col")  # another process's view: its own SQLite connection
    follower.search(vector=vectors[0], k=5)  # its index is loaded

    def found(col):
        return [[r.path for r in col.search(vector=v, k=5)] for v in vectors[::23]]

    snapshots = []
    real = follower._meta.snapshot
    monkeypatch.setattr(follower._meta, "snapshot", lambda: snapshots.append(1) or real())
    writer.add_vectors(vectors[300:], keys(300, 400), batch_size=40)
    writer.remove(keys(0, 400, )[::7])  # old rows and rows just added
    assert found(follower) == found(glimpse.open(tmp_path / "col")) and not snapshots
    assert len(follower) == 400 - len(keys(0, 400)[::7])
    np.testing.assert_array_equal(follower._index_ids.ids(), stored_pairs(writer)[:, 0])

    writer.compact()  # moved rows: the follower reads a snapshot and still finds the same
    writer.remove(keys(1, 3))
    assert found(follower) == found(glimpse.open(tmp_path / "col")) and snapshots
    np.testing.assert_array_equal(follower._index_ids.ids(), stored_pairs(writer)[:, 0])


def test_logged_changes_keep_the_table_ascending_and_cancel_an_added_then_removed_id():
    table = np.array([[2, 0], [5, 1], [9, 2]], np.int64)
    changes = np.array([[12, 3], [7, 4], [5, -1], [12, -1], [13, 5]], np.int64)  # ids from content (Milvus): any order
    after, added, removed = apply_changes(table, changes)
    np.testing.assert_array_equal(after, [[2, 0], [7, 4], [9, 2], [13, 5]])
    np.testing.assert_array_equal(added, [7, 13])
    np.testing.assert_array_equal(removed, [5, 12])

    pending = _Pending(4, np.array([20, 21]), np.array([3])).then(np.array([22]), np.array([21, 8]))
    assert pending.since == 4
    np.testing.assert_array_equal(pending.added, [20, 22])
    np.testing.assert_array_equal(pending.removed, [3, 8])


def fresh_meta(col):
    """The collection's metadata as a new process opens it (no snapshot read yet)."""
    from glimpse.collection.layout import DB_NAME
    from glimpse.storage.metadata import Metadata

    return Metadata(col.path / DB_NAME)


def kept_files(col) -> list[str]:
    return sorted(p.name for p in col.path.glob("items-*.npz"))


def test_a_kept_snapshot_and_the_log_since_give_what_sqlite_holds(tmp_path):
    col = glimpse.open(tmp_path / "col", encoder="precomputed", dim=8)
    vectors = np.random.default_rng(0).standard_normal((60, 8)).astype(np.float32)
    col.add_vectors(vectors[:40], [f"k{i}" for i in range(40)], batch_size=16)
    fresh_meta(col).snapshot()
    assert len(kept_files(col)) == 1
    col.add_vectors(vectors[40:], [f"k{i}" for i in range(40, 60)])
    col.remove([f"k{i}" for i in range(0, 60, 7)])
    reader = fresh_meta(col)
    kept = reader._kept_snapshot()
    assert kept is not None  # the kept file and the log serve: SQLite's items are not read
    meta, table = reader._read_snapshot()
    assert kept[0]["generation"] == meta["generation"] and len(table) == 51
    np.testing.assert_array_equal(kept[1], table)
    np.testing.assert_array_equal(table, stored_pairs(col))


def test_a_snapshot_is_kept_from_kept_from_items_on(tmp_path, monkeypatch):
    monkeypatch.setattr("glimpse.storage.metadata.KEPT_FROM", 41)
    col = glimpse.open(tmp_path / "col", encoder="precomputed", dim=8)
    col.add_vectors(np.eye(8, dtype=np.float32).repeat(5, 0)[:40] + 0.1, [f"k{i}" for i in range(40)])
    fresh_meta(col).snapshot()
    assert kept_files(col) == []
    col.add_vectors(np.ones((1, 8), np.float32), ["k40"])
    fresh_meta(col).snapshot()
    assert len(kept_files(col)) == 1


@pytest.mark.parametrize("spoil", ["damaged", "another database", "ahead of the database", "rows moved", "too many changes",
                                   "unwritable"])
def test_a_kept_snapshot_that_does_not_serve_is_not_used(tmp_path, monkeypatch, spoil):
    monkeypatch.setattr("glimpse.storage.metadata.Metadata.keep_items", lambda *args: None)  # writers would replace it
    col = glimpse.open(tmp_path / "col", encoder="precomputed", dim=8)
    vectors = np.random.default_rng(1).standard_normal((30, 8)).astype(np.float32)
    col.add_vectors(vectors[:20], [f"k{i}" for i in range(20)])
    fresh_meta(col).snapshot()
    (kept,) = col.path.glob("items-*.npz")
    if spoil == "damaged":
        data = bytearray(kept.read_bytes())
        data[len(data) // 2] ^= 0x01  # inside the items' array
        kept.write_bytes(bytes(data))
    elif spoil == "another database":  # a new collection where one was deleted, its kept file left behind
        other = glimpse.open(tmp_path / "other", encoder="precomputed", dim=8)
        other.add_vectors(vectors[:20], [f"k{i}" for i in range(20)])
        kept.rename(other.path / kept.name)
        col = other
    elif spoil == "ahead of the database":  # taken at a generation this database has not reached
        meta, table = fresh_meta(col)._read_snapshot()
        fresh_meta(col)._keep_snapshot({**meta, "generation": meta["generation"] + 100}, table)
    elif spoil == "rows moved":  # the log restarts: the file kept before cannot be brought up to date
        saved = kept.read_bytes()
        col.remove([f"k{i}" for i in range(12)])
        col.compact()
        for newer in col.path.glob("items-*.npz"):  # kept by the compacting process itself
            newer.unlink()
        kept.write_bytes(saved)
    elif spoil == "too many changes":
        monkeypatch.setattr("glimpse.storage.metadata.KEPT_CHANGES", 5)
    col.add_vectors(vectors[20:], [f"k{i}" for i in range(20, 30)])
    (col.path / ".items-1.npz.k1ll3d.tmp").write_bytes(b"half")  # a kept snapshot's write, killed
    reader = fresh_meta(col)
    if spoil == "unwritable":  # a reader that may not write the folder: no error, nothing kept
        def denied(*args):
            raise PermissionError(13, "Permission denied")

        monkeypatch.setattr("glimpse.storage.metadata.write_atomic", denied)
        for old in col.path.glob("items-*.npz"):
            old.unlink()
    else:
        assert reader._kept_snapshot() is None
    meta, table = reader.snapshot()
    np.testing.assert_array_equal(table, stored_pairs(col))
    if spoil == "unwritable":
        assert kept_files(col) == []
    else:  # read from SQLite and kept again, at the generation read; the others are gone, half-written ones too
        assert kept_files(col) == [f"items-{meta['generation']}.npz"] and not list(col.path.glob(".items-*"))
        assert fresh_meta(col)._kept_snapshot() is not None


def test_a_writer_keeps_the_items_where_the_next_snapshot_would_read_sqlite(tmp_path, monkeypatch):
    monkeypatch.setattr("glimpse.storage.metadata.KEPT_FROM", 41)
    monkeypatch.setattr("glimpse.storage.metadata.KEPT_CHANGES", 12)
    col = glimpse.open(tmp_path / "col", encoder="precomputed", dim=8)
    vectors = np.random.default_rng(2).standard_normal((80, 8)).astype(np.float32)
    col.add_vectors(vectors[:40], [f"k{i}" for i in range(40)])
    assert kept_files(col) == []  # under KEPT_FROM items
    col.add_vectors(vectors[40:50], [f"k{i}" for i in range(40, 50)], batch_size=4)
    generation = fresh_meta(col).generation()
    assert kept_files(col) == [f"items-{generation}.npz"]  # kept at the write's last commit
    col.add_vectors(vectors[50:55], [f"k{i}" for i in range(50, 55)])
    col.remove(["k3", "k4"])
    assert kept_files(col) == [f"items-{generation}.npz"]  # the log since serves: not written again
    col.add_vectors(vectors[55:80], [f"k{i}" for i in range(55, 80)])  # 32 changes since: more than 12
    assert kept_files(col) == [f"items-{fresh_meta(col).generation()}.npz"]

    def no_sqlite(self):
        raise AssertionError("the items were read from SQLite")

    monkeypatch.setattr("glimpse.storage.metadata.Metadata._read_snapshot", no_sqlite)
    reopened = glimpse.open(col.path)  # as a new process: its snapshot is the kept file and the log
    assert reopened.search(vector=vectors[60], k=1)[0].path == "k60"
    table = fresh_meta(col).snapshot()[1]
    monkeypatch.undo()
    np.testing.assert_array_equal(table, stored_pairs(col))
