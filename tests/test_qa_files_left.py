"""Collection files left open by the qa-files round: a collection's files without its database are
refused, not built over; damaged vector rows are found when read, left out, and re-derived."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import glimpse
from glimpse.cli import app


def _filled(path: Path, image_dir: Path, codes: bool) -> None:
    """Images (12, too few for codes), or vectors with codes and their binarizer."""
    if not codes:
        with glimpse.open(path, encoder="hash") as col:
            col.add([image_dir])
        return
    with glimpse.open(path, encoder="precomputed", dim=16) as col:
        vectors = np.random.default_rng(0).standard_normal((300, 16)).astype(np.float32)
        col.add_vectors(vectors, [f"k{i}" for i in range(300)])
        col.use_codes()


@pytest.mark.parametrize("codes", [False, True])
def test_a_collection_without_its_database_is_refused_not_started_over(tmp_path, image_dir, codes):
    col = tmp_path / "col"
    _filled(col, image_dir, codes)
    (col / "metadata.sqlite").unlink()
    before = sorted(p.name for p in col.iterdir())
    with pytest.raises(ValueError, match="but not its metadata.sqlite: restore that from a backup, or, to start over"):
        glimpse.open(col, encoder="hash")
    done = CliRunner().invoke(app, ["index", str(image_dir), "-c", str(col), "--encoder", "hash"])
    assert done.exit_code == 2, done.output
    said = "".join(done.output.split())  # rich wraps long paths anywhere
    assert "holdsthefilesofacollection(" in said and "vectors.f16" in said, said
    assert ("binarizer-" in said and "codes-" in said) == codes, (before, said)
    assert sorted(p.name for p in col.iterdir()) == before  # nothing made over them
    for name in before:  # the way out it names: move them aside
        if name != "write.lock":
            (col / name).rename(tmp_path / name)
    with glimpse.open(col, encoder="hash") as fresh:
        fresh.add([image_dir])
        assert len(fresh) == 12


def _damage_rows(path: Path, rows: list[int], dim: int, towards: np.ndarray | None = None) -> None:
    """Bytes of ``rows`` replaced in place: the high byte (sign, exponent) of two components of each,
    one made about 200, one's exponent bits flipped; or, ``towards`` a query, the whole row made 50
    times that query's direction (it would score 50, far above any whole row)."""
    data = bytearray(path.read_bytes())
    for row in rows:
        if towards is not None:
            data[row * dim * 2 : (row + 1) * dim * 2] = (50 * towards / np.linalg.norm(towards)).astype(np.float16).tobytes()
            continue
        data[(row * dim + 1) * 2 + 1] = 0x5A
        data[(row * dim + dim // 2) * 2 + 1] ^= 0x3C
    path.write_bytes(bytes(data))


def _results(col, image_dir: Path) -> list[tuple[int, float]]:
    return [(hit.id, round(hit.score, 4)) for q in sorted(image_dir.rglob("*.png"))[:4]
            for hit in col.search(image=q, k=12)]


def test_damaged_vector_rows_are_left_out_with_one_warning_and_repaired_from_the_images(tmp_path, image_dir, caplog):
    col = glimpse.open(tmp_path / "col", encoder="hash")
    col.add([image_dir])
    before = _results(col, image_dir)
    vectors = col._read_vectors(np.arange(12))
    col.close()
    _damage_rows(tmp_path / "col" / "vectors.f16", [0, 5], col.encoder.dim)
    with glimpse.open(tmp_path / "col") as col, caplog.at_level("WARNING"):
        damaged = _results(col, image_dir)
        warnings = [r.getMessage() for r in caplog.records if "damaged" in r.getMessage()]
        with pytest.raises(OSError, match=r"the vector of item #5 is damaged in .*: run `glimpse repair -c "):
            col.search(like=5, k=3)
    assert len(warnings) == 1 and "vectors.f16" in warnings[0] and "glimpse repair -c" in warnings[0], warnings
    assert not {0, 5} & {item for item, _ in damaged}  # left out, not scored from garbage
    kept = [(item, score) for item, score in before if item not in (0, 5)]
    assert [item for item, _ in damaged] == [item for item, _ in kept]  # a query of a damaged image is encoded anew:
    np.testing.assert_allclose([s for _, s in damaged], [s for _, s in kept], atol=1e-3)  # float32, not float16
    done = CliRunner().invoke(app, ["repair", "-c", str(tmp_path / "col")])
    assert done.exit_code == 0, done.output
    assert "12 vectors checked: 2 damaged, 2 derived again from their images" in " ".join(done.output.split())
    with glimpse.open(tmp_path / "col") as col:
        assert _results(col, image_dir) == before
        np.testing.assert_array_equal(col._read_vectors(np.arange(12)), vectors)
        assert col.repair().damaged == []


@pytest.mark.parametrize("codes", [{"binarizer": "itq", "bits": 16}, {"binarizer": "ivf-rabitq"}])
@pytest.mark.parametrize("stage", ["rerank", "exact", "filtered"])
def test_the_re_rank_leaves_damaged_rows_out_of_results(tmp_path, codes, stage, caplog):
    with glimpse.open(tmp_path / "vec", encoder="precomputed", dim=16) as col:
        vectors = np.random.default_rng(2).standard_normal((400, 16)).astype(np.float32)
        col.add_vectors(vectors, [f"key{i}" for i in range(400)])
        col.use_codes(**codes)
        assert col.backend_info()["kind"] != "flat"
    options = {"exact": stage == "exact", "filters": {"path_glob": "key1*"} if stage == "filtered" else None}
    query = vectors[7] + vectors[12]  # item 7 would be first: its row is damaged below
    with glimpse.open(tmp_path / "vec") as col:
        before = [(hit.id, round(hit.score, 4)) for hit in col.search(vector=query, k=5, oversample=50, **options)]
    assert before[0][0] in (7, 12)
    _damage_rows(tmp_path / "vec" / "vectors.f16", [7, 12], 16, towards=query)
    with glimpse.open(tmp_path / "vec") as col, caplog.at_level("WARNING"):
        after = [(hit.id, round(hit.score, 4)) for hit in col.search(vector=query, k=5, oversample=50, **options)]
        col.search(vector=query, k=5, **options)
    kept = [(item, score) for item, score in before if item not in (7, 12)]
    assert after[: len(kept)] == kept  # the rest as they were, then the next ones
    assert len(after) == 5 and not {7, 12} & {item for item, _ in after}
    assert len([r for r in caplog.records if "damaged" in r.getMessage()]) == 1


def test_damaged_precomputed_vectors_name_the_keys_to_add_again(tmp_path):
    with glimpse.open(tmp_path / "vec", encoder="precomputed", dim=16) as col:
        vectors = np.random.default_rng(1).standard_normal((50, 16)).astype(np.float32)
        col.add_vectors(vectors, [f"key{i}" for i in range(50)])
    _damage_rows(tmp_path / "vec" / "vectors.f16", [3, 40], 16)
    done = CliRunner().invoke(app, ["repair", "-c", str(tmp_path / "vec")])
    assert done.exit_code == 1, done.output
    said = " ".join(done.output.split())
    assert "50 vectors checked: 2 damaged, 0 derived again" in said and "#3 key3" in said and "#40 key40" in said
    with glimpse.open(tmp_path / "vec") as col:  # the way out it names
        col.add_vectors(vectors[[3, 40]], ["key3", "key40"])
        assert [hit.path for hit in col.search(vector=vectors[40], k=1)] == ["key40"]


@pytest.mark.parametrize("damage", ["cut", "missing", "folder", "link"])
def test_a_vector_file_cut_missing_or_replaced_is_one_sentence_and_repair_derives_it_again(tmp_path, image_dir, damage):
    with glimpse.open(tmp_path / "col", encoder="hash") as col:
        col.add([image_dir])
        before = _results(col, image_dir)
    path = tmp_path / "col" / "vectors.f16"
    if damage == "cut":
        os.truncate(path, path.stat().st_size // 3)
    else:
        path.rename(tmp_path / "aside.f16")
        if damage == "folder":
            path.mkdir()
        elif damage == "link":
            path.symlink_to(tmp_path / "aside.f16")
    said = {"cut": "the vector file was truncated or replaced: ", "missing": " is missing but the metadata references 12",
            "folder": " is not a file: move it aside, then restore", "link": " is a symbolic link, which glimpse never makes"}
    with glimpse.open(tmp_path / "col") as col:
        with pytest.raises(OSError, match=said[damage]):
            col.search(image=next(image_dir.glob("*.png")), k=3)
    done = CliRunner().invoke(app, ["search", "-c", str(tmp_path / "col"), "--image", str(next(image_dir.glob("*.png")))])
    assert done.exit_code == 2 and len(done.output.strip().splitlines()) <= 4, done.output  # one sentence, wrapped
    if damage in ("folder", "link"):
        with glimpse.open(tmp_path / "col") as col, pytest.raises(OSError, match=said[damage]):
            col.repair()  # never writes through the link or into the folder
        path.rmdir() if damage == "folder" else path.unlink()  # what the sentence asks: move it aside
    with glimpse.open(tmp_path / "col") as col:
        report = col.repair()
        assert (report.checked, len(report.repaired), report.left) == (12, len(report.damaged), [])
        assert _results(col, image_dir) == before


def test_a_vector_file_grown_past_its_rows_answers_as_before(tmp_path, image_dir):
    """Bytes past the committed rows are what a writer killed before its commit leaves: unreferenced,
    overwritten by the next write, never read (no error, nothing to repair)."""
    with glimpse.open(tmp_path / "col", encoder="hash") as col:
        col.add([image_dir])
        before = _results(col, image_dir)
    with open(tmp_path / "col" / "vectors.f16", "ab") as f:
        f.write(os.urandom(12345))
    with glimpse.open(tmp_path / "col") as col:
        assert _results(col, image_dir) == before
        assert col.repair().damaged == []


def test_repair_in_a_process_that_mapped_the_vector_file_before_it_was_deleted(tmp_path, image_dir):
    """Its old map still reads the deleted file's rows: repair must read the file that is there."""
    with glimpse.open(tmp_path / "col", encoder="hash") as col:
        col.add([image_dir])
        before = _results(col, image_dir)  # the file is mapped
        (tmp_path / "col" / "vectors.f16").unlink()
        report = col.repair()
        assert (len(report.damaged), len(report.repaired)) == (12, 12)
    with glimpse.open(tmp_path / "col") as col:
        assert _results(col, image_dir) == before
