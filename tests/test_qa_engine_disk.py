"""A disk that fills up mid-write: a short write is finished or refused, never committed half-written."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np
import pytest

import glimpse
from glimpse.storage import VectorStore

_real_pwrite = os.pwrite


def filling_disk(room: int):
    """An os.pwrite that writes at most ``room`` bytes in all, then answers as a full disk does: the
    write that crosses the limit is short, the next one fails with ENOSPC."""
    left = [room]

    def pwrite(fd, data, offset):
        if left[0] <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        n = _real_pwrite(fd, bytes(data[: left[0]]), offset)
        left[0] -= n
        return n

    return pwrite


def test_a_short_vector_write_is_not_committed(tmp_path: Path, make_image, monkeypatch):
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(6):
        make_image(photos / f"p{i}.png", seed=i)
    col = glimpse.open(tmp_path / "col", encoder="hash")
    col.add([photos / "p0.png", photos / "p1.png"], batch_size=2)
    monkeypatch.setattr(os, "pwrite", filling_disk(64 * 2 * 3))  # room for 3 of the next 4 rows
    with pytest.raises(OSError, match="No space left"):  # it committed 4 rows of which one was never written
        col.add([photos], batch_size=4)
    monkeypatch.setattr(os, "pwrite", _real_pwrite)
    col.close()
    with glimpse.open(tmp_path / "col") as col:
        assert len(col) == 2 and len(col.search(text="a photo", k=10)) == 2
        col.add([photos], batch_size=4)
        assert len(col) == 6
        ids = np.array(col.item_ids())
        assert np.isfinite(col._read_vectors(ids)).all() and (np.abs(col._read_vectors(ids)).sum(axis=1) > 0).all()


def test_the_store_finishes_a_write_the_kernel_cut_short(tmp_path: Path, monkeypatch):
    calls = []

    def halves(fd, data, offset):  # a large write may be split (Linux caps one write near 2 GiB)
        calls.append(len(data))
        return _real_pwrite(fd, bytes(data[: max(1, len(data) // 2)]), offset)

    store = VectorStore(tmp_path / "v.f16", 4)
    x = np.arange(24, dtype=np.float32).reshape(6, 4)
    monkeypatch.setattr(os, "pwrite", halves)
    store.write(0, x)
    monkeypatch.setattr(os, "pwrite", _real_pwrite)
    assert len(calls) > 1 and np.array_equal(store.read(np.arange(6), 6), x)


def test_a_run_of_rows_is_read_in_place_and_other_ids_as_a_copy(tmp_path: Path):
    """Ascending ids of consecutive rows are a view of the map (an exact pass over every row scores
    them where they lie); any other ids a copy, and an id past the committed rows is refused."""
    store = VectorStore(tmp_path / "v.f16", 4)
    x = np.arange(24, dtype=np.float32).reshape(6, 4)
    store.write(0, x)
    run = store.read(np.arange(1, 5), 6, np.float16)
    assert np.shares_memory(run, store.view(6)) and np.array_equal(run, x[1:5]) and not run.flags.writeable
    for ids in ([4, 3, 2, 1], [1, 3, 2, 4], [1, 2, 2, 3], [0, 2, 3, 4]):
        got = store.read(np.array(ids), 6, np.float16)
        assert not np.shares_memory(got, store.view(6)) and np.array_equal(got, x[ids])
    assert np.array_equal(store.read(np.arange(6), 6), x) and store.read(np.arange(6), 6).dtype == np.float32
    with pytest.raises(IndexError):
        store.read(np.arange(4, 7), 6, np.float16)


def test_files_written_whole_get_the_permissions_of_the_collections_other_files(tmp_path: Path, monkeypatch):
    from glimpse import atomic
    from glimpse.atomic import write_atomic

    monkeypatch.setattr(atomic, "_UMASK", 0o022)  # as read at import
    old = os.umask(0o022)
    try:
        (tmp_path / "plain").write_bytes(b"x")
        write_atomic(tmp_path / "new.npz", b"data")  # was 0600: a server run by another user could not read it
        assert (tmp_path / "new.npz").stat().st_mode & 0o777 == (tmp_path / "plain").stat().st_mode & 0o777 == 0o644
        os.chmod(tmp_path / "new.npz", 0o640)
        write_atomic(tmp_path / "new.npz", b"again")  # a replaced file keeps its permissions
        assert (tmp_path / "new.npz").stat().st_mode & 0o777 == 0o640
    finally:
        os.umask(old)


def test_an_upgrades_map_and_order_renames_are_made_durable(tmp_path: Path, monkeypatch):
    # They were renamed into place without syncing the folder: a power cut could lose the new name
    # while the metadata commit that names the file survived.
    from glimpse import atomic
    from glimpse.upgrade.files import save_order
    from glimpse.upgrade.maps import SpaceMap

    synced = []
    real = atomic._sync_folder
    monkeypatch.setattr(atomic, "_sync_folder", lambda folder: (synced.append(Path(folder)), real(folder)))
    SpaceMap("ridge", np.eye(4, dtype=np.float32)).save(tmp_path / "map.npz")
    save_order(tmp_path / "order.npy", [np.arange(3), np.arange(3, 5)])
    assert synced == [tmp_path, tmp_path]
    assert SpaceMap.load(tmp_path / "map.npz").kind == "ridge"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["map.npz", "order.npy"]
