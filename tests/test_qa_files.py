"""Collection files met damaged or replaced (qa-files): each is refused in one sentence naming it, or
repaired from the files that hold the truth; nothing outside the collection is ever written."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import glimpse
from glimpse.backends import BinaryIndex
from glimpse.codes import create_binarizer


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


def _flip(path: Path, count: int, seed: int) -> None:
    data = bytearray(path.read_bytes())
    for at in np.random.default_rng(seed).choice(len(data), count, replace=False):
        data[at] ^= 0xFF
    path.write_bytes(bytes(data))


def test_codes_damaged_in_place_are_rebuilt_not_scanned(tmp_path: Path):
    col, vectors = _precomputed(tmp_path / "col", n=3000, dim=64)
    col.use_codes("ivf-rabitq")
    queries = vectors[:100] + 0.3 * np.random.default_rng(5).standard_normal((100, 64)).astype(np.float32)
    before = [[r.id for r in col.search(vector=q, k=10)] for q in queries]
    col.close()
    (codes,) = (tmp_path / "col").glob("codes-*")
    _flip(codes, 16, seed=2)  # in the ids and the codes: images missed, one image held twice
    with glimpse.open(tmp_path / "col", create=False) as col:
        assert [[r.id for r in col.search(vector=q, k=10)] for q in queries] == before
        assert col.backend_info()["codes"] == 3000


def test_binary_codes_damaged_in_place_are_not_restored(tmp_path: Path):
    vectors = np.random.default_rng(0).standard_normal((500, 64)).astype(np.float32)
    binarizer = create_binarizer("sign", bits=64)
    binarizer.fit(vectors)
    index = BinaryIndex(binarizer)
    index.add(np.arange(500), vectors)
    index.persist(tmp_path, 1)
    assert BinaryIndex.restore(tmp_path, None, 64, binarizer=binarizer).count() == 500
    (codes,) = tmp_path.glob("codes-*")
    _flip(codes, 1, seed=0)
    assert BinaryIndex.restore(tmp_path, None, 64, binarizer=binarizer) is None


@pytest.mark.parametrize("scale", [1e-30, 1e30])
def test_a_query_vector_of_tiny_or_huge_numbers_scores_cosines(tmp_path: Path, scale: float):
    col, vectors = _precomputed(tmp_path / "col")
    with col:
        (best,) = col.search(vector=vectors[3] / np.abs(vectors[3]).max() * scale, k=1)
    assert best.id == 3 and best.score == pytest.approx(1.0, abs=1e-3)  # was 2.8e-18 and 0.0


@pytest.mark.parametrize("item_id", [True, "1", 1.0, -1])
def test_an_item_id_is_checked_as_search_checks_like(tmp_path: Path, item_id):
    col, _ = _precomputed(tmp_path / "col")
    with col:
        with pytest.raises(ValueError, match="an item id is a whole number"):  # True was item 1, "1" a TypeError
            col.item(item_id)
        with pytest.raises(ValueError, match="an item id is a whole number"):
            col.open_original(item_id)
        assert col.item(np.int64(1)).paths == ["k1"]


@pytest.mark.parametrize("call", ["use_codes", "adapt", "enrich"])
def test_a_progress_that_cannot_be_called_is_refused_before_any_work(tmp_path: Path, call: str):
    col = glimpse.open(tmp_path / "col", encoder="hash")
    with col:
        with pytest.raises(ValueError, match="progress must be a function"):
            {"use_codes": lambda: col.use_codes("sign", progress=3),
             "adapt": lambda: col.adapt(tmp_path / "none.tsv", progress=3),
             "enrich": lambda: col.enrich(ocr=True, progress=3)}[call]()
        assert col.settings().codes is None


@pytest.mark.parametrize("damage", ["emptied", "cut short", "a link"])
def test_a_damaged_cached_thumbnail_is_made_again(tmp_path: Path, damage: str):
    pytest.importorskip("fastapi")
    from glimpse.server.thumbnails import ThumbnailCache

    source = io.BytesIO()
    Image.new("RGB", (300, 200), (200, 30, 30)).save(source, "PNG")
    cache = ThumbnailCache(tmp_path, 10**8)
    made = cache.get(7, 128, source.getvalue)
    target = cache.path(7, 128)
    secret = tmp_path / "secret.txt"
    secret.write_text("not a thumbnail")
    if damage == "emptied":
        target.write_bytes(b"")
    elif damage == "cut short":
        target.write_bytes(made[: len(made) // 2])
    else:  # served whatever file the link led to
        target.unlink()
        target.symlink_to(secret)
    assert cache.get(7, 128, source.getvalue) == made
    assert not target.is_symlink() and secret.read_text() == "not a thumbnail"


def test_a_damaged_adaptation_stops_text_queries_alone(tmp_path: Path, make_image):
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(3):
        make_image(photos / f"p{i}.png", seed=i)
    col = glimpse.open(tmp_path / "col", encoder="hash")
    with col:
        col.add([photos])
        (tmp_path / "col" / "adapt-1.npz").write_bytes(b"PK damaged")
        col._meta.set_meta(adapt={"version": 1, "file": "adapt-1.npz", "kind": "ridge", "format": 1})
        assert len(col.search(image=photos / "p0.png", k=3)) == 3  # was the adaptation's error
        assert len(col.search(like=col.item_ids()[0], k=3)) == 2
        with pytest.raises(OSError, match="adapt-1.npz is damaged"):
            col.search(text="a photo", k=3)


def test_a_folder_in_place_of_the_metadata_is_named(tmp_path: Path):
    col, _ = _precomputed(tmp_path / "col")
    col.close()
    db = tmp_path / "col" / "metadata.sqlite"
    db.unlink()
    db.mkdir()
    with pytest.raises(ValueError, match="metadata.sqlite is not a file"):  # was "unable to open database file"
        glimpse.open(tmp_path / "col", create=False)


def test_a_damaged_zip_header_is_not_met_with_numpy_pickle_advice(tmp_path: Path):
    from glimpse.storage.arrays import DamagedFileError, read_arrays

    path = tmp_path / "adapt-1.npz"
    np.savez(path, matrix=np.eye(2))
    data = bytearray(path.read_bytes())
    data[2] ^= 0xFF  # "PK" stays: numpy took the rest for a pickle and advised allow_pickle
    path.write_bytes(bytes(data))
    with pytest.raises(DamagedFileError, match=r"adapt-1.npz is damaged \(not a numpy file\): run") as caught:
        read_arrays(path, ("matrix",), "run `glimpse adapt` again")
    assert "pickle" not in str(caught.value)
