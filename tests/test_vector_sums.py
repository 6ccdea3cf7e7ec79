"""The checksums file beside the vector file: a row whose bytes changed without its length (a flipped
sign bit) is found where it is read, left out like a row of the wrong length, and repaired; every
writer keeps the checksums in step, and a collection from before them opens as before and gets them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import glimpse
from glimpse.cli import app
from glimpse.storage.vectors import NO_SUM, DamagedVectorError, row_sums

DIM = 16


def _flip_signs(path: Path, rows: list[int], dim: int) -> None:
    """The sign bit of each row's largest component flipped in place: its length stays 1."""
    data = np.fromfile(path, np.float16).reshape(-1, dim)
    for row in rows:
        data[row, np.argmax(np.abs(data[row]))] *= -1
    data.tofile(path)


def _sums(path: Path) -> np.ndarray:
    return np.fromfile(path.with_suffix(".sums"), "<u8")


def _precomputed(path: Path, n: int = 300, seed: int = 0, **codes) -> np.ndarray:
    vectors = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    with glimpse.open(path, encoder="precomputed", dim=DIM) as col:
        col.add_vectors(vectors, [f"k{i}" for i in range(n)], batch_size=128)
        if codes:
            col.use_codes(**codes)
    return vectors


def test_a_change_within_any_word_of_a_row_changes_its_checksum():
    for dim in (16, 13, 1):  # a row of 26 or 2 bytes: the last word padded
        row = np.random.default_rng(dim).standard_normal((1, dim)).astype(np.float16)
        whole = row_sums(row)[0]
        for byte in range(2 * dim):
            for bit in range(8):
                changed = row.view(np.uint8).copy()
                changed[0, byte] ^= 1 << bit
                assert row_sums(changed.view(np.float16))[0] != whole, (dim, byte, bit)
    signs = np.random.default_rng(1).standard_normal((1, 64)).astype(np.float16)
    flipped = signs.copy()
    flipped[0, 1::2] *= -1  # every word's top bit: with 64-bit words, pairs of these cancel
    assert row_sums(flipped)[0] != row_sums(signs)[0]
    assert row_sums(np.zeros((2, DIM), np.float16)).tolist() == [NO_SUM, NO_SUM]  # a zero row checks nothing
    rows = np.random.default_rng(0).standard_normal((5, DIM)).astype(np.float16)
    assert np.array_equal(row_sums(rows), row_sums(rows.astype(np.float32)))  # float32 copies of the rows


@pytest.mark.parametrize("codes", [{}, {"binarizer": "itq", "bits": 16}, {"binarizer": "ivf-rabitq"}])
def test_a_flipped_sign_bit_is_left_out_of_results_with_one_warning(tmp_path, codes, caplog):
    vectors = _precomputed(tmp_path / "vec", **codes)
    _flip_signs(tmp_path / "vec" / "vectors.f16", [7], DIM)
    with glimpse.open(tmp_path / "vec") as col, caplog.at_level("WARNING"):
        for exact in (False, True):
            found = [hit.id for hit in col.search(vector=vectors[7], k=5, exact=exact)]
            assert 7 not in found and len(found) == 5
        with pytest.raises(DamagedVectorError, match=r"the vector of item #7 is damaged"):
            col.search(like=7, k=3)
        assert [hit.id for hit in col.search(vector=vectors[8], k=1)] == [8]  # the others as they were
    assert len([r for r in caplog.records if "damaged vectors found" in r.getMessage()]) == 1


def test_repair_finds_a_flipped_sign_bit_and_derives_the_image_again(tmp_path, image_dir):
    with glimpse.open(tmp_path / "col", encoder="hash") as col:
        col.add([image_dir])
        col._sync()
        before = col._read_vectors(np.arange(12))
    _flip_signs(tmp_path / "col" / "vectors.f16", [3], col.encoder.dim)
    done = CliRunner().invoke(app, ["repair", "-c", str(tmp_path / "col")])
    assert done.exit_code == 0, done.output
    assert "12 vectors checked: 1 damaged, 1 derived again from their images" in " ".join(done.output.split())
    with glimpse.open(tmp_path / "col") as col:
        col._sync()
        np.testing.assert_array_equal(col._read_vectors(np.arange(12)), before)
        assert col.repair().damaged == []


def test_repair_names_the_key_of_a_precomputed_vector_with_a_flipped_sign(tmp_path):
    _precomputed(tmp_path / "vec", n=50)
    _flip_signs(tmp_path / "vec" / "vectors.f16", [40], DIM)
    with glimpse.open(tmp_path / "vec") as col:
        report = col.repair()
    assert report.damaged == [40] and report.left == [(40, "k40")]


def test_a_collection_from_before_checksums_opens_as_before_and_gets_them(tmp_path):
    vectors = _precomputed(tmp_path / "vec", **{"binarizer": "itq", "bits": 16})
    sums = _sums(tmp_path / "vec" / "vectors.f16")
    assert len(sums) == 300 and NO_SUM not in sums
    (tmp_path / "vec" / "vectors.sums").unlink()
    with glimpse.open(tmp_path / "vec") as col:  # no checksums: lengths only, nothing called damaged
        assert [hit.id for hit in col.search(vector=vectors[7], k=1)] == [7]
        assert col.repair().damaged == []
    assert np.array_equal(_sums(tmp_path / "vec" / "vectors.f16"), sums)  # repair built them
    (tmp_path / "vec" / "vectors.sums").unlink()
    with glimpse.open(tmp_path / "vec") as col:  # so does the next write, before its own rows
        col.add_vectors(vectors[:1] + 1, ["new"])
    assert np.array_equal(_sums(tmp_path / "vec" / "vectors.f16")[:300], sums)
    _flip_signs(tmp_path / "vec" / "vectors.f16", [7], DIM)
    with glimpse.open(tmp_path / "vec") as col:
        assert 7 not in [hit.id for hit in col.search(vector=vectors[7], k=5)]


def test_compaction_carries_the_checksums_to_the_new_file_and_keeps_damage_found(tmp_path):
    vectors = _precomputed(tmp_path / "vec")
    _flip_signs(tmp_path / "vec" / "vectors.f16", [250], DIM)
    with glimpse.open(tmp_path / "vec") as col:
        col.remove([f"k{i}" for i in range(0, 200)])
        assert col.compact() == 200
        files = sorted(p.name for p in (tmp_path / "vec").glob("vectors*"))
        new = col._vectors.path
        assert files == sorted([new.name, new.with_suffix(".sums").name])  # the old pair is gone
        assert len(_sums(new)) == 100 and NO_SUM not in _sums(new)
        assert 250 not in [hit.id for hit in col.search(vector=vectors[250], k=5)]  # not laundered by the copy
        assert col.repair().damaged == [250]


def test_an_upgrade_and_its_abort_keep_the_checksums_in_step(tmp_path, image_dir, make_image):
    for finish in (True, False):
        with glimpse.open(tmp_path / f"col{finish}", encoder="hash") as col:
            col.add([image_dir])
            col.upgrade("hash", dim=32, seed=1, sample=6, backfill=0, batch_size=4)
            col.upgrade(backfill=4, finish=False, batch_size=4)  # rows rewritten in place, part of them
            col._sync()
            assert col._check_rows(col._live, col._read_stored(col._live)).all()  # what searches check
            if finish:
                assert col.upgrade(batch_size=4).phase == "finished"
            else:
                make_image(image_dir / "added.png", seed=99)  # mapped back into the old file's rows by the abort
                col.add([image_dir])
                assert col.upgrade(abort=True).phase == "aborted"
            assert col.repair().damaged == []
            path = col._vectors.path
            assert sorted(p.name for p in path.parent.glob("vectors*")) == sorted([path.name, path.with_suffix(".sums").name])
            assert NO_SUM not in _sums(path)


@pytest.mark.parametrize("damage", ["cut", "folder", "link"])
def test_a_checksums_file_cut_short_is_rebuilt_and_one_replaced_is_one_sentence(tmp_path, damage):
    vectors = _precomputed(tmp_path / "vec", n=50)
    path = tmp_path / "vec" / "vectors.sums"
    sums = _sums(tmp_path / "vec" / "vectors.f16")
    if damage == "cut":
        path.write_bytes(path.read_bytes()[: 8 * 20 + 3])  # rows 20 on: no checksum, lengths only
    else:
        path.rename(tmp_path / "aside.sums")
        path.mkdir() if damage == "folder" else path.symlink_to(tmp_path / "aside.sums")
    with glimpse.open(tmp_path / "vec") as col:
        if damage != "cut":
            said = {"folder": "is not a file: move it aside", "link": "is a symbolic link, which glimpse never makes"}
            with pytest.raises(OSError, match=said[damage]):
                col.search(vector=vectors[30], k=1)
            return
        assert [hit.id for hit in col.search(vector=vectors[30], k=1)] == [30]
        assert col.repair().damaged == []
    assert np.array_equal(_sums(tmp_path / "vec" / "vectors.f16"), sums)


def test_the_checksum_is_the_one_docs_storage_md_describes():
    """The file format: a change here makes every stored checksum fail."""
    row = (np.arange(1, 6, dtype=np.float16) / 8)[None]  # 10 bytes: three 32-bit words, the last padded
    words = np.pad(row.view(np.uint8), ((0, 0), (0, 2))).view("<u4")[0]
    splitmix64_seed_0 = [0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4 | 1, 0x06C45D188009454F | 1]
    assert int(row_sums(row)[0]) == sum(int(w) * c for w, c in zip(words, splitmix64_seed_0)) % 2**64
